"""Gymnasium registration of every latentplay environment (string entry points, versioned ids)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

_ARM = "latentplay.envs.arm"
_DMC = "latentplay.envs.dmc"

# id -> (entry point, time_limit, default kwargs). The envs count steps themselves
# (``time_limit``) instead of Gymnasium's TimeLimit wrapper, whose counter set_state cannot reach.
_SPECS: dict[str, tuple[str, int, dict[str, Any]]] = {
    "latentplay/Reach-v0": (f"{_ARM}:ReachEnv", 100, {}),
    "latentplay/Push-v0": (f"{_ARM}:PushEnv", 100, {}),
    "latentplay/PushMulti-v0": (f"{_ARM}:PushMultiEnv", 100, {}),
    "latentplay/DMC-reacher-easy-v0": (
        f"{_DMC}:DMCEnv",
        100,
        {"domain": "reacher", "task": "easy"},
    ),
    "latentplay/DMC-manipulator-bring_ball-v0": (
        f"{_DMC}:DMCEnv",
        100,
        {"domain": "manipulator", "task": "bring_ball"},
    ),
}
ENV_IDS: tuple[str, ...] = tuple(_SPECS)
ARM_ENV_IDS: tuple[str, ...] = tuple(k for k, v in _SPECS.items() if v[0].startswith(_ARM))


def register_envs() -> None:
    """Register every id in :data:`ENV_IDS` (idempotent)."""
    for env_id, (entry, steps, kwargs) in _SPECS.items():
        if env_id not in gym.registry:
            kw = {**kwargs, "time_limit": steps}
            gym.register(env_id, entry_point=entry, kwargs=kw)


def make(env_id: str, **kwargs: Any) -> gym.Env:
    """``gymnasium.make`` with a clear error for an unknown id."""
    if env_id not in gym.registry:
        known = ", ".join(sorted(k for k in gym.registry if k.startswith("latentplay/")))
        raise ValueError(f"unknown env id {env_id!r}; latentplay registers: {known}")
    return gym.make(env_id, **kwargs)
