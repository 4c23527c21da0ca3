"""Bad input fails fast and names what is wrong: configs, paths, frame sizes, actions, data.

(Env actions: tests/test_envs.py and the properties in tests/test_properties.py; damaged
shards and full disks: tests/test_faults.py.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

from latentplay.agents.planners import CEM, MPPI
from latentplay.cli.config import require_complete
from latentplay.rollouts import ClipDataset, DatasetError
from latentplay.world_models.checkpoint import CheckpointMismatchError, load_model
from latentplay.world_models.glass import Glass
from latentplay.world_models.glass.global_model import GlassGlobal
from latentplay.world_models.protocol import Actions, ActionSpec

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


@pytest.fixture(scope="module")
def toy(toy_dataset) -> Path:
    return toy_dataset(episodes=12, steps=8, size=32)


def _compose(name: str, *overrides: str):
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        return compose(name, overrides=list(overrides))


# ---------------------------------------------------------------------------- configs
@pytest.mark.parametrize(
    "name, override, words",
    [
        ("collect", "episodes=ten", ["'ten'", "Integer", "full_key: episodes"]),
        ("collect", "launcher=slurm", ["'slurm'", "[local, ray]", "full_key: launcher"]),
        ("collect", "epsiodes=3", ["Key 'epsiodes' not in 'CollectConfig'"]),
        ("collect", "ray.max_retries=often", ["'often'", "full_key: ray.max_retries"]),
        ("collect", "start_method=fork", ["'fork'", "[forkserver, spawn]"]),
        ("collect", "masks=perhaps", ["'perhaps'", "full_key: masks"]),
        ("train", "trainer.batch_size=big", ["'big'", "full_key: trainer.batch_size"]),
        ("train", "trainer.lrr=0.1", ["Key 'lrr' not in 'TrainerConfig'"]),
        ("train", "trainer.max_minutes=soon", ["'soon'", "full_key: trainer.max_minutes"]),
        (
            "plan",
            "model_view=globl",
            ["'globl'", "[full, ee_poke, global]", "full_key: model_view"],
        ),
        (
            "plan",
            "grounding.kind=svm",
            ["'svm'", "[linear, mlp, rollout]", "full_key: grounding.kind"],
        ),
        ("plan", "episodes=many", ["'many'", "full_key: episodes"]),
        ("evaluate", "horizon=long", ["'long'", "full_key: horizon"]),
        ("evaluate", "vidoe=false", ["Key 'vidoe' not in 'EvaluateConfig'"]),
        ("counterfactual", "videos=some", ["'some'", "full_key: videos"]),
        (
            "counterfactual",
            "action_source=guess",
            ["'guess'", "[latent, grounded]", "full_key: action_source"],
        ),
        ("counterfactual", "model_view=side", ["'side'", "full_key: model_view"]),
        ("poke", "steps=many", ["'many'", "full_key: steps"]),
        ("poke", "pointt=[1,2]", ["Key 'pointt' not in 'PokeConfig'"]),
        ("export", "format=parquet", ["'parquet'", "[minari]", "full_key: format"]),
        ("export", "split=holdout", ["'holdout'", "[train, val, test]", "full_key: split"]),
        ("train_policy", "algo=DQN2", ["'DQN2'", "full_key: algo"]),
        ("train_policy", "n_envs=two", ["'two'", "full_key: n_envs"]),
    ],
)
def test_typed_config_schemas_fail_at_parse_time_naming_the_key(
    name: str, override: str, words: list[str]
) -> None:
    with pytest.raises(ConfigCompositionException) as err:
        _compose(name, override, "out=x", "data=x")
    text = f"{err.value} {err.value.__cause__}"
    for w in words:
        assert w in text, f"{w!r} not in {text!r}"


def test_good_overrides_still_compose_and_keep_their_types() -> None:
    cfg = _compose("collect", "episodes=12", "launcher=ray", "ray.address=auto", "out=x")
    require_complete(cfg)
    assert cfg.episodes == 12 and cfg.launcher == "ray" and cfg.ray.address == "auto"
    cfg = _compose("train", "data=x", "trainer.max_steps=5", "trainer.max_minutes=null")
    assert cfg.trainer.max_steps == 5 and cfg.trainer.max_minutes is None
    cfg = _compose("plan", "checkpoint=c", "model_view=ee_poke", "grounding.labels=[0,10]")
    assert cfg.model_view == "ee_poke" and list(cfg.grounding.labels) == [0, 10]


def test_the_command_line_reports_a_bad_value_and_exits_non_zero(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "collect.py"), "steps=-", f"out={tmp_path}/d"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0 and "full_key: steps" in run.stderr
    assert not (tmp_path / "d").exists(), "a refused command wrote something"


# ---------------------------------------------------------------------------- paths
def test_missing_or_wrong_data_paths_are_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"nowhere is not a latentplay dataset: no meta\.json"):
        ClipDataset(tmp_path / "nowhere")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "meta.json").write_text("{not json")
    with pytest.raises(DatasetError, match=r"junk/meta\.json: not valid JSON"):
        ClipDataset(tmp_path / "junk")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "meta.json").write_text(json.dumps({"format": "minari"}))
    with pytest.raises(DatasetError, match=r"format 'minari', expected 'latentplay-rollouts'"):
        ClipDataset(tmp_path / "other")


def test_missing_checkpoint_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"checkpoint '.*missing\.pt' does not exist"):
        load_model(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointMismatchError, match=r"junk\.pt: not a readable checkpoint"):
        load_model(junk)


# ---------------------------------------------------------------------------- frame sizes
def test_a_dataset_of_another_resolution_than_the_checkpoint_is_refused(
    toy: Path, toy_dataset, tmp_path: Path
) -> None:
    from latentplay.evaluation.world_model import evaluate

    small = toy_dataset(episodes=4, steps=8, size=16)
    model = Glass(size="xs", image_size=32, num_actions=3).eval()
    with pytest.raises(
        CheckpointMismatchError, match=r"size16_steps8: frames are 16x16, the model takes"
    ):
        evaluate(model, str(small), horizon=4, max_episodes=2, device="cpu")


def test_sample_steps_for_a_model_that_does_not_sample_is_refused(tmp_path: Path) -> None:
    from latentplay.evaluation.counterfactual.run import answerer
    from latentplay.world_models.checkpoint import save_checkpoint

    path = save_checkpoint(
        tmp_path / "glass.pt", model=Glass(size="xs", image_size=32, num_actions=3), step=0
    )
    with pytest.raises(ValueError, match="sample_steps=3: a Glass model does not sample"):
        answerer(str(path), "auto", None, 10, torch.device("cpu"), sample_steps=3)


def test_a_counterfactual_grounding_is_checked_before_any_query(tmp_path: Path) -> None:
    from latentplay.evaluation.counterfactual.run import answerer

    with pytest.raises(ValueError, match=r"grounding='fancy'; expected one of \('linear'"):
        answerer("keypoints_mixed", grounding="fancy")
    with pytest.raises(ValueError, match="a saved grounding is a state-conditioned one"):
        answerer("keypoints_mixed", grounding="linear", grounding_file="keypoints_mixed")
    with pytest.raises(ValueError, match="this model's are"):  # fit through another model
        answerer("keypoints_pushmulti", grounding="rollout", grounding_file="keypoints_mixed")


# ---------------------------------------------------------------------------- actions
@pytest.fixture(scope="module")
def glass() -> Glass:
    torch.manual_seed(0)
    return Glass(size="xs", image_size=32, num_actions=3).eval()


@pytest.mark.parametrize(
    "continuous, discrete, match",
    [
        (torch.full((2, 2), float("nan")), torch.zeros(2, dtype=torch.long), "NaN or inf"),
        (torch.full((2, 2), float("inf")), torch.zeros(2, dtype=torch.long), "NaN or inf"),
        (torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), r"shape \(2, 3\); expected \(B, 2\)"),
        (torch.zeros(2, 2), torch.tensor([0, 3]), r"ids in \[0, 3\]; expected ids in \[0, 3\)"),
        (torch.zeros(2, 2), torch.tensor([-1, 0]), r"expected ids in \[0, 3\)"),
        (
            torch.zeros(2, 2),
            torch.tensor([0.5, 1.0]),
            r"whole ids; got 1 fractional, e\.g\. \[0\.5\]",
        ),
        (
            torch.zeros(2, 2),
            torch.zeros(2, 1, dtype=torch.long),
            r"shape \(2, 1\); expected \(B,\)",
        ),
        (torch.zeros(3, 2), torch.zeros(3, dtype=torch.long), r"batch size: \[2, 3\]"),
    ],
)
def test_glass_refuses_bad_actions(glass: Glass, continuous, discrete, match: str) -> None:
    with torch.no_grad():
        state = glass.encode(torch.rand(2, 2, 3, 32, 32))
        with pytest.raises(ValueError, match=match):
            glass.step(state, Actions(continuous, discrete))


def test_glass_global_view_refuses_bad_actions(glass: Glass) -> None:
    view = GlassGlobal(glass)
    with torch.no_grad():
        state = view.encode(torch.rand(2, 2, 3, 32, 32))
        with pytest.raises(ValueError, match="NaN or inf"):
            view.step(state, Actions(torch.tensor([[0.0, float("nan")]] * 2)))
        with pytest.raises(ValueError, match=r"shape \(2, 3\)"):
            view.step(state, Actions(torch.zeros(2, 3)))


@pytest.mark.parametrize("planner", [CEM, MPPI])
def test_planners_refuse_bad_settings_and_survive_costs_that_reject_everything(planner) -> None:
    spec = ActionSpec(continuous=2, discrete=3)
    with pytest.raises(ValueError, match=r"std_init=nan"):
        planner(spec, std_init=float("nan"))
    with pytest.raises(ValueError, match=r"elites=40, samples=30"):
        planner(spec, samples=30, elites=40)
    p = planner(spec, horizon=3, samples=16, elites=4, iterations=2)

    def rejects_everything(actions: Actions) -> torch.Tensor:
        return torch.full((actions.continuous.shape[0],), float("nan"))

    plan = p.plan(rejects_everything)
    assert torch.isfinite(plan.actions.continuous).all()
    assert plan.actions.discrete.min() >= 0 and plan.actions.discrete.max() < 3
    assert plan.cost == float("inf")  # a rejected plan says so

    def wrong_shape(actions: Actions) -> torch.Tensor:
        return torch.zeros(3)

    with pytest.raises(ValueError, match=r"cost returned shape \(3,\); expected \(16,\)"):
        p.plan(wrong_shape)


# ---------------------------------------------------------------------------- empty data
def test_empty_datasets_and_splits_are_refused(toy: Path, tmp_path: Path) -> None:
    import shutil

    empty = tmp_path / "empty"  # a run killed before its first shard: meta.json lists none
    shutil.copytree(toy, empty)
    meta = json.loads((empty / "meta.json").read_text())
    meta.update(shards=[], episodes_written=0, complete=False)
    (empty / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"empty: no clip of 4 frames .* \(0 episodes\)"):
        ClipDataset(empty, clip_length=4)
    with pytest.raises(ValueError, match=r"no clip of 40 frames"):
        ClipDataset(toy, clip_length=40)
    from latentplay.rollouts.worker import CollectSpec

    with pytest.raises(ValueError, match=r"episodes=0; expected a positive integer"):
        CollectSpec(env_id="latentplay/Push-v0", policy_factory=None, episodes=0, steps=5)


def test_a_weight_average_for_glass_is_refused(toy: Path, tmp_path: Path) -> None:
    from latentplay.world_models.glass.train import glass_training
    from latentplay.world_models.settings import TrainerSettings
    from latentplay.world_models.train import train_model

    settings = TrainerSettings(max_steps=1, ema_decay=0.999, device="cpu", progress=False)
    with pytest.raises(ValueError, match=r"trainer\.ema_decay=0\.999 with model=glass"):
        train_model(partial(glass_training, size="xs"), toy, settings, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before anything was written
