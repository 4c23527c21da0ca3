"""Env speed: steps/s with a frame per step, ours beside Gymnasium's Pusher-v5."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def _step_rate(env: Any, steps: int, seed: int, render: bool) -> float:
    """Steps/s over ``steps`` timed steps (resets are not timed), with a frame each step."""
    rng = np.random.default_rng(seed)
    acts = rng.uniform(-1, 1, (steps, *env.action_space.shape)).astype(np.float32)
    env.reset(seed=seed)
    spent = 0.0
    for a in acts:
        t0 = time.perf_counter()
        _, _, terminated, truncated, _ = env.step(a)
        if render:
            env.render()
        spent += time.perf_counter() - t0
        if terminated or truncated:
            env.reset()
    return steps / spent


def measure(
    name: str,
    make: Callable[[], Any],
    steps: int,
    repeats: int,
    render: bool = False,
    warmup: int = 20,
) -> dict[str, Any]:
    """Median steps/s of a freshly made env over ``repeats`` runs of ``steps`` steps."""
    env = make()
    try:
        _step_rate(env, warmup, seed=0, render=render)  # GL context, caches
        rates = [_step_rate(env, steps, seed=r + 1, render=render) for r in range(repeats)]
    finally:
        env.close()
    return {
        "name": name,
        "steps_per_s": statistics.median(rates),
        "min": min(rates),
        "max": max(rates),
        "repeats": repeats,
        "steps": steps,
    }


def _pusher(size: int, tuned: bool) -> Any:
    import gymnasium as gym

    env = gym.make("Pusher-v5", render_mode="rgb_array", width=size, height=size)
    if tuned:  # before the first render: the GL context sizes its buffers from these
        q = env.unwrapped.model.vis.quality
        q.shadowsize, q.offsamples = 0, 0
    return env


def bench_envs(
    env_ids: Sequence[str],
    size: int = 64,
    steps: int = 2000,
    repeats: int = 5,
    anchor_steps: int = 60,
) -> list[dict[str, Any]]:
    """Steps/s with a ``size`` x ``size`` frame per step: our envs and Gymnasium Pusher-v5 as
    shipped and with shadows and multisampling off. Pusher renders through ``env.render()``;
    ours return the frame as the observation."""
    import gymnasium as gym

    import latentplay.envs  # noqa: F401

    rows = [
        measure(
            "Pusher-v5 (shipped)",
            lambda: _pusher(size, False),
            anchor_steps,
            3,
            render=True,
            warmup=5,
        ),
        measure(
            "Pusher-v5 (no shadows, no MSAA)",
            lambda: _pusher(size, True),
            steps // 4,
            repeats,
            render=True,
        ),
    ]
    for env_id in env_ids:
        make = lambda env_id=env_id: gym.make(env_id, width=size, height=size)  # noqa: E731
        rows.append(measure(env_id, make, steps, repeats))
    shipped, tuned = rows[0]["steps_per_s"], rows[1]["steps_per_s"]
    for r in rows:
        r["x_pusher_shipped"] = r["steps_per_s"] / shipped
        r["x_pusher_tuned"] = r["steps_per_s"] / tuned
    return rows
