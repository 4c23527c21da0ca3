"""The collection spec of the session's Push dataset (tests/conftest.py ``push_dataset``)."""

from __future__ import annotations

import functools
from typing import Any

from latentplay.agents.policies import ScriptedPushPolicy
from latentplay.rollouts.worker import CollectSpec


def push_spec(**overrides: Any) -> CollectSpec:
    """6 scripted Push-v0 episodes of 12 steps at 32x32 with segmentation masks, seed 5, in 3
    shards of 2 episodes; ``overrides`` replace any of these."""
    base: dict[str, Any] = dict(
        env_id="latentplay/Push-v0",
        policy_factory=functools.partial(ScriptedPushPolicy),
        episodes=6,
        steps=12,
        shard_episodes=2,
        seed=5,
        env_kwargs={"width": 32, "height": 32},
        masks=True,
    )
    base.update(overrides)
    return CollectSpec(**base)
