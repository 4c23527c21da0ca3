"""Learned plans as a collection policy (policy=planner): bound to the env it records, the
shipped keypoint model's plans take the paddle to the box."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gymnasium import spaces
from hydra.utils import instantiate
from omegaconf import OmegaConf

from latentplay.agents.plan_policy import PlannerPolicy
from latentplay.rollouts import EpisodeReader
from latentplay.rollouts.collect import collect
from latentplay.rollouts.worker import CollectSpec

ROOT = Path(__file__).resolve().parents[1]


def _config(**overrides) -> dict:
    c = OmegaConf.load(ROOT / "configs" / "policy" / "planner.yaml")
    c.planner.samples, c.planner.elites, c.planner.iterations = 32, 4, 2  # a quick planner
    c.imagination = "eager"
    for k, v in overrides.items():
        c[k] = v
    return c


def test_plans_recorded_by_collection_take_the_paddle_to_the_box(tmp_path: Path) -> None:
    spec = CollectSpec(
        env_id="latentplay/Push-v0",
        policy_factory=instantiate(_config(ensemble=[], ensemble_groundings=[])),
        episodes=2,
        steps=12,
        shard_episodes=1,
        seed=3,
        env_kwargs={"width": 64, "height": 64},
    )
    collect(spec, tmp_path / "plans", workers=1, progress=False)
    reader = EpisodeReader(tmp_path / "plans")
    for i in range(2):
        gt = reader.ground_truth(i)
        gap = np.linalg.norm(gt["ee_pos"][:, :2] - gt["object_pos"][:, 0, :2], axis=-1)
        assert gap[-1] < 0.7 * gap[0], f"episode {i}: paddle to box {gap.round(3)} m"
    reader.close()


def test_bad_set_ups_are_refused_by_name() -> None:
    box = spaces.Box(-1, 1, (3,), np.float32)
    c = _config()
    with pytest.raises(ValueError, match=r"ensemble=\['keypoints_pushmulti'\].*one saved"):
        instantiate(c, ensemble=["keypoints_pushmulti"])(action_space=box)
    policy = instantiate(c)(action_space=box)
    with pytest.raises(RuntimeError, match=r"bind\(env\)"):
        policy.reset(np.random.default_rng(0), {})
    assert isinstance(policy, PlannerPolicy)
