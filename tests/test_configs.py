"""Every config composes, and every part it names is built the way the scripts build it: with
``hydra.utils.instantiate`` on its ``_target_`` (lightning-hydra-template style)."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

import latentplay.envs  # noqa: F401  (registers the env ids)
from latentplay.agents.policies import Policy
from latentplay.cli.config import ConfigError, plain, require_complete
from latentplay.cli.schemas import SCHEMAS

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ENVS = sorted(p.stem for p in (CONFIGS / "env").glob("*.yaml"))
POLICIES = sorted(p.stem for p in (CONFIGS / "policy").glob("*.yaml"))
MODELS = sorted(p.stem for p in (CONFIGS / "model").glob("*.yaml"))
PLANNERS = sorted(p.stem for p in (CONFIGS / "planner").glob("*.yaml"))
SCRIPTS = sorted(p.stem for p in CONFIGS.glob("*.yaml"))
# what each script's config needs on the command line (its ??? values)
REQUIRED = {
    "collect": [],
    "counterfactual": ["checkpoint=oracle"],
    "evaluate": ["checkpoint=c.pt", "data=d"],
    "export": ["data=d", "dataset_id=a/b-v0"],
    "import": ["source=s", "out=o"],
    "merge": ["sources=[a,b]", "out=o"],
    "plan": ["checkpoint=c.pt"],
    "poke": ["checkpoint=c.pt"],
    "train": ["data=d"],
    "train_policy": [],
}


def _compose(*overrides: str, name: str = "collect"):
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        return compose(name, overrides=list(overrides))


def test_every_script_config_has_a_typed_schema_and_composes() -> None:
    assert set(SCRIPTS) == set(SCHEMAS) == set(REQUIRED)
    for name in SCRIPTS:
        cfg = _compose(*REQUIRED[name], name=name)
        c = plain(cfg)  # complete, interpolations resolved, choices as strings
        assert OmegaConf.get_type(cfg) is SCHEMAS[name], name
        assert all(not isinstance(v, type) for v in c.values())


def test_the_schemas_view_choices_are_the_libraries() -> None:
    from latentplay.agents.views import VIEWS
    from latentplay.cli.schemas import CounterfactualView, ModelView

    assert {v.value for v in ModelView} == set(VIEWS)
    assert {v.value for v in CounterfactualView} == {"auto", *VIEWS}


def test_the_schemas_grounding_kinds_are_the_planners() -> None:
    from latentplay.agents.state_grounding import GROUNDINGS
    from latentplay.cli.schemas import GroundingKind

    assert {v.value for v in GroundingKind} == set(GROUNDINGS)


def test_importing_the_config_glue_does_not_import_torch() -> None:
    """Parsing a command line must not pay for torch (every script imports the glue first)."""
    import subprocess
    import sys

    code = (
        "import sys; import latentplay.cli.config, latentplay.cli.schemas; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("env", ENVS)
def test_train_policy_config_composes(env: str) -> None:
    c = plain(_compose(f"env={env}", name="train_policy"))
    assert c["out"] == f"runs/{env}_{c['algo']}" == f"runs/{env}_PPO"


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
    assert {"glass", "keypoints", "yoda"} <= set(MODELS) and {"cem", "mppi"} <= set(PLANNERS)


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
    factory = instantiate(plain(cfg)["policy"])
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
    flat = plain(_compose())
    assert "fps" not in flat and "action_dim" not in flat and "obs_shape" not in flat


@pytest.mark.parametrize("size", ["xs", "s", "m", "paper"])
def test_glass_config_builds_every_size(size: str, toy_dataset) -> None:
    from latentplay.world_models.glass import Glass, LossWeights
    from latentplay.world_models.glass.train import GlassObjective
    from latentplay.world_models.settings import TrainerSettings

    data = toy_dataset(episodes=4, steps=8, size=32)
    c = plain(_compose(f"data={data}", f"model.size={size}", name="train"))
    run = instantiate(c["model"])(data=c["data"], split=c["split"])
    assert isinstance(run.model, Glass) and run.model.model_args()["size"] == size
    assert run.model.image_size == 32  # from the data, not the config
    assert isinstance(run.objective, GlassObjective)
    assert run.objective.schedule.gma_warmup_steps == c["model"]["schedule"]["gma_warmup_steps"]
    assert run.objective.weights == LossWeights()
    assert run.dataset.clip_length == c["model"]["schedule"]["seq_len_end"]
    TrainerSettings(**c["trainer"])


def test_a_loss_weight_override_reaches_the_objective(toy_dataset) -> None:
    data = toy_dataset(episodes=4, steps=8, size=32)
    c = plain(
        _compose(f"data={data}", "model.size=xs", "+model.loss.mask_size_target=0.3", name="train")
    )
    run = instantiate(c["model"])(data=c["data"], split="train")
    assert run.objective.weights.mask_size_target == 0.3


@pytest.mark.parametrize("size", ["xs", "s", "m"])
def test_yoda_config_builds_every_size(size: str, toy_dataset) -> None:
    from latentplay.world_models.yoda import Yoda

    data = toy_dataset(episodes=4, steps=8, size=32)
    c = plain(_compose(f"data={data}", "model=yoda", f"model.size={size}", name="train"))
    run = instantiate(c["model"])(data=c["data"], split=c["split"])
    assert isinstance(run.model, Yoda) and run.model.model_args()["size"] == size
    assert run.model.image_size == 32 and run.dataset.clip_length == 8
    bad = {**c["model"], "colour": 1}
    with pytest.raises(TypeError, match="colour"):
        instantiate(bad)(data=c["data"], split="train")


def test_keypoints_config_builds_the_model_its_schedule_and_its_background(toy_dataset) -> None:
    from latentplay.world_models.keypoints import Keypoints

    data = toy_dataset(episodes=4, steps=8, size=32)
    c = plain(_compose(f"data={data}", "model=keypoints", "model.clip_length=4", name="train"))
    run = instantiate(c["model"])(data=c["data"], split=c["split"])
    assert isinstance(run.model, Keypoints) and run.model.image_size == 32
    assert run.model.num_keypoints == c["model"]["num_keypoints"]
    assert run.objective.schedule.perception_steps == c["model"]["schedule"]["perception_steps"]
    assert run.dataset.clip_length == c["model"]["clip_length"]
    assert float(run.model.background.max()) > 0  # the median of the training frames
    bad = {**c["model"], "colour": 1}
    with pytest.raises(TypeError, match="colour"):
        instantiate(bad)(data=c["data"], split="train")


def test_train_and_evaluate_configs_name_what_is_missing() -> None:
    with pytest.raises(ConfigError, match="data"):
        require_complete(_compose(name="train"))
    with pytest.raises(ConfigError, match="checkpoint, data"):
        require_complete(_compose(name="evaluate"))


@pytest.mark.parametrize("planner", PLANNERS)
def test_planner_configs_build_their_planner(planner: str) -> None:
    from latentplay.world_models.protocol import ActionSpec

    c = plain(_compose("checkpoint=x.pt", f"planner={planner}", name="plan"))
    p = instantiate(c["planner"])(ActionSpec(continuous=2, discrete=4), device="cpu")
    assert p.name == planner
    assert (p.samples, p.horizon, p.iterations) == (300, 5, 10)  # the latency setting
    assert {k: v for k, v in c["planner"].items() if not k.startswith("_")} == {
        k: v for k, v in p.settings.items() if k != "name"
    }


def test_plan_and_counterfactual_configs_name_what_is_missing() -> None:
    with pytest.raises(ConfigError, match="checkpoint"):
        require_complete(_compose(name="plan"))
    with pytest.raises(ConfigError, match="checkpoint"):
        require_complete(_compose(name="counterfactual"))
    cfg = _compose("checkpoint=oracle", name="counterfactual")
    require_complete(cfg)
    assert cfg.queries == "all"


def test_a_tasks_planning_set_up_comes_from_its_env_config_and_yields_to_overrides() -> None:
    push = plain(_compose("checkpoint=x.pt", "env=push", name="plan"))
    assert (push["max_steps"], push["execute"], push["repeat"], push["cost"]) == (80, 2, 2, "push")
    reach = plain(_compose("checkpoint=x.pt", "env=reach", name="plan"))
    assert (reach["max_steps"], reach["execute"], reach["repeat"], reach["cost"]) == (
        30,
        3,
        1,
        "goal",
    )
    other = plain(_compose("checkpoint=x.pt", "env=dmc_reacher", name="plan"))  # no plan: block
    assert (other["max_steps"], other["execute"], other["repeat"], other["cost"]) == (
        40,
        1,
        1,
        "goal",
    )
    mine = plain(_compose("checkpoint=x.pt", "env=push", "repeat=3", "cost=goal", name="plan"))
    assert (mine["repeat"], mine["cost"], mine["max_steps"]) == (3, "goal", 80)
    with pytest.raises(Exception, match="cost"):
        plain(_compose("checkpoint=x.pt", "cost=nearest", name="plan"))
