"""Collection speed: frames/s written to disk by whole runs (local pool, Ray), beside
Gymnasium's AsyncVectorEnv stepping alone."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def bench_collect(
    env_id: str = "latentplay/Push-v0",
    workers: Sequence[int] = (1, 2),
    episodes: int = 400,
    steps: int = 50,
    repeats: int = 3,
    shard_episodes: int = 25,
    policy: str = "scripted",
    launcher: str = "local",
) -> list[dict[str, Any]]:
    """Frames/s written to disk by whole ``collect`` runs (process start-up included), per
    worker count; the median of ``repeats`` runs into fresh temporary folders.

    ``launcher="ray"``: a local Ray of ``w`` CPUs is started once per worker count (its
    start-up, ``ray_startup_s``, is reported apart: a cluster pays it once per job) and each
    run's ``collect()`` schedules one task per shard on it; the Ray worker processes keep
    their env between runs, as they do between the shards of one run."""
    import functools

    from latentplay.agents.policies import RandomPolicy, ScriptedPushPolicy
    from latentplay.rollouts.collect import collect
    from latentplay.rollouts.worker import CollectSpec

    factory = {"scripted": ScriptedPushPolicy, "random": RandomPolicy}[policy]
    spec = CollectSpec(
        env_id=env_id,
        policy_factory=functools.partial(factory),
        episodes=episodes,
        steps=steps,
        shard_episodes=shard_episodes,
    )
    rows = []
    for w in workers:
        rates, sizes = [], []
        startup = None
        if launcher == "ray":
            from latentplay.rollouts.ray_launcher import import_ray

            ray = import_ray()
            t0 = time.perf_counter()
            ray.init(num_cpus=w, include_dashboard=False, log_to_driver=False)
            startup = time.perf_counter() - t0
        try:
            for _ in range(repeats):
                with tempfile.TemporaryDirectory(prefix="lp-bench-") as tmp:
                    t0 = time.perf_counter()
                    res = collect(
                        spec, Path(tmp) / "ds", workers=w, progress=False, launcher=launcher
                    )
                    wall = time.perf_counter() - t0
                    rates.append(res.frames / wall)
                    sizes.append(sum(p.stat().st_size for p in (Path(tmp) / "ds").rglob("*.h5")))
        finally:
            if launcher == "ray":
                ray.shutdown()
        label = "" if launcher == "local" else f" on Ray (start-up {startup:.1f} s apart)"
        rows.append(
            {
                "name": f"{env_id} collect{label}, {w} worker{'s' if w > 1 else ''}",
                "launcher": launcher,
                "ray_startup_s": startup,
                "workers": w,
                "frames_per_s": statistics.median(rates),
                "min": min(rates),
                "max": max(rates),
                "frames": episodes * (steps + 1),
                "bytes_per_frame": statistics.median(sizes) / (episodes * (steps + 1)),
                "repeats": repeats,
            }
        )
    base = rows[0]["frames_per_s"]
    for r in rows:
        r["x_one_worker"] = r["frames_per_s"] / base
    return rows


def _vector_rate(env_id: str, n: int, steps: int) -> float:
    import gymnasium as gym
    from gymnasium.vector import AsyncVectorEnv

    import latentplay.envs  # noqa: F401

    def make() -> Any:

        return gym.make(env_id, obs_type="pixels_state")

    envs = AsyncVectorEnv([make] * n, context="forkserver")
    try:
        envs.reset(seed=0)
        acts = np.random.default_rng(0).uniform(-1, 1, (steps, n, 3)).astype(np.float32)
        for a in acts[:20]:
            envs.step(a)
        t0 = time.perf_counter()
        for a in acts:
            envs.step(a)
        return steps * n / (time.perf_counter() - t0)
    finally:
        envs.close()


def bench_vector_env(
    env_id: str = "latentplay/Push-v0",
    workers: Sequence[int] = (1, 2),
    steps: int = 2000,
    repeats: int = 3,
) -> list[dict[str, Any]]:
    """The design alternative: Gymnasium ``AsyncVectorEnv`` stepping with pixels and ground
    truth sent to the parent each step, nothing written (an upper bound for collecting that
    way). Compare with :func:`bench_collect`, which includes writing."""
    rows = []
    for n in workers:
        rates = [_vector_rate(env_id, n, steps) for _ in range(repeats)]
        rows.append(
            {
                "name": f"{env_id} AsyncVectorEnv({n}), stepping only",
                "workers": n,
                "frames_per_s": statistics.median(rates),
                "min": min(rates),
                "max": max(rates),
                "frames": steps * n,
                "bytes_per_frame": 0,
                "repeats": repeats,
            }
        )
    base = rows[0]["frames_per_s"]
    for r in rows:
        r["x_one_worker"] = r["frames_per_s"] / base
    return rows
