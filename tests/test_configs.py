"""Every config composes, and every part it names can be built (lightning-hydra-template style)."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

import latentplay.envs  # noqa: F401  (registers the env ids)
from latentplay.agents.policies import Policy
from latentplay.utils.config import ConfigError, require_complete

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ENVS = sorted(p.stem for p in (CONFIGS / "env").glob("*.yaml"))
POLICIES = sorted(p.stem for p in (CONFIGS / "policy").glob("*.yaml"))


def _compose(*overrides: str, name: str = "collect"):
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        return compose(name, overrides=list(overrides))


@pytest.mark.parametrize("env", ENVS)
def test_train_policy_config_composes(env: str) -> None:
    cfg = _compose(f"env={env}", name="train_policy")
    require_complete(cfg)
    assert cfg.out == f"runs/{env}_{cfg.algo}"


def test_export_config_names_what_is_missing() -> None:
    cfg = _compose(name="export")
    with pytest.raises(ConfigError, match="data, dataset_id"):
        require_complete(cfg)
    require_complete(_compose("data=x", "dataset_id=a/b-v0", name="export"))


def test_poke_config_names_what_is_missing() -> None:
    with pytest.raises(ConfigError, match="checkpoint"):
        require_complete(_compose(name="poke"))
    require_complete(_compose("checkpoint=x.pt", name="poke"))


def test_config_groups_are_found() -> None:
    assert {"reach", "push", "push_multi"} <= set(ENVS)
    assert {"random", "scripted", "sb3", "mixture"} <= set(POLICIES)


@pytest.mark.parametrize("env", ENVS)
def test_env_configs_make_their_env(env: str) -> None:
    cfg = _compose(f"env={env}")
    assert cfg.out == f"data/{env}"
    e = gym.make(cfg.env.id, **OmegaConf.to_container(cfg.env.kwargs))
    try:
        obs, _ = e.reset(seed=0)
        assert obs.shape == (cfg.env.kwargs.height, cfg.env.kwargs.width, 3)
    finally:
        e.close()


@pytest.mark.parametrize("policy", [p for p in POLICIES if p != "sb3"])
def test_policy_configs_build_policies(policy: str) -> None:
    cfg = _compose(f"policy={policy}")
    factory = instantiate(cfg.policy)
    p = factory(action_space=gym.spaces.Box(-1, 1, (3,)))
    assert isinstance(p, Policy)


def test_sb3_policy_needs_a_path() -> None:
    cfg = _compose("policy=sb3")
    with pytest.raises(ConfigError, match=r"policy\.path"):
        require_complete(cfg)
    cfg = _compose("policy=sb3", "policy.path=/nonexistent/model.zip")
    with pytest.raises(FileNotFoundError, match=r"model\.zip"):
        instantiate(cfg.policy)(action_space=gym.spaces.Box(-1, 1, (3,)))


def test_collect_config_has_no_derived_values() -> None:
    """Frame size, fps and spaces are read from the env, never written into the config."""
    cfg = _compose()
    flat = OmegaConf.to_container(cfg, resolve=True)
    assert "fps" not in flat and "action_dim" not in flat and "obs_shape" not in flat


@pytest.mark.parametrize("size", ["xs", "s", "m", "paper"])
def test_train_config_builds_every_size(size: str) -> None:
    from latentplay.world_models.glass import SIZES, Glass, LossWeights
    from latentplay.world_models.glass.train import GlassSchedule
    from latentplay.world_models.train import TrainerSettings

    cfg = _compose("data=x", f"model.size={size}", name="train")
    require_complete(cfg)
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    GlassSchedule(**model_cfg.pop("schedule"))
    LossWeights(**model_cfg.pop("loss"))
    assert model_cfg.pop("name") == "glass" and model_cfg["size"] in SIZES
    Glass(image_size=64, **model_cfg)
    TrainerSettings(**OmegaConf.to_container(cfg.trainer, resolve=True))


@pytest.mark.parametrize("size", ["xs", "s", "m"])
def test_yoda_train_config_builds_every_size(size: str, tmp_path: Path) -> None:
    from latentplay.rollouts.toy import make_toy_dataset
    from latentplay.world_models.factory import build_training
    from latentplay.world_models.yoda import Yoda

    data = make_toy_dataset(tmp_path / "toy", episodes=4, steps=8, size=32)
    cfg = _compose(f"data={data}", "model=yoda", f"model.size={size}", name="train")
    require_complete(cfg)
    run = build_training(
        OmegaConf.to_container(cfg.model, resolve=True),
        str(data),
        "train",
        OmegaConf.to_container(cfg.trainer, resolve=True),
    )
    assert isinstance(run.model, Yoda) and run.model.model_args()["size"] == size
    assert run.model.image_size == 32 and run.dataset.clip_length == cfg.model.schedule.clip_length
    with pytest.raises(TypeError, match="colour"):
        build_training({**OmegaConf.to_container(cfg.model), "colour": 1}, str(data), "train", {})


def test_train_and_evaluate_configs_name_what_is_missing() -> None:
    with pytest.raises(ConfigError, match="data"):
        require_complete(_compose(name="train"))
    with pytest.raises(ConfigError, match="checkpoint, data"):
        require_complete(_compose(name="evaluate"))


PLANNERS = sorted(p.stem for p in (CONFIGS / "planner").glob("*.yaml"))


@pytest.mark.parametrize("planner", PLANNERS)
def test_planner_configs_build_their_planner(planner: str) -> None:
    from latentplay.agents.planners import PLANNERS as BUILD
    from latentplay.world_models.protocol import ActionSpec

    cfg = _compose("checkpoint=x.pt", f"planner={planner}", name="plan")
    require_complete(cfg)
    kw = OmegaConf.to_container(cfg.planner)
    p = BUILD[kw.pop("name")](ActionSpec(continuous=2, discrete=4), **kw)
    assert (p.samples, p.horizon, p.iterations) == (300, 5, 10)  # the latency setting


def test_plan_and_counterfactual_configs_name_what_is_missing() -> None:
    with pytest.raises(ConfigError, match="checkpoint"):
        require_complete(_compose(name="plan"))
    with pytest.raises(ConfigError, match="checkpoint"):
        require_complete(_compose(name="counterfactual"))
    cfg = _compose("checkpoint=oracle", name="counterfactual")
    require_complete(cfg)
    assert cfg.queries == "all"
