"""Planning benchmark: MPC episodes of a learned model's planner in the real env, beside the
random-action and true-simulator (oracle) baselines, on the same seeds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from latentplay.agents.mpc import Controller, EpisodeResult, run_episode
from latentplay.envs.arm import ArmEnv


def run_controller(
    name: str,
    make_env: Callable[[], ArmEnv],
    controller: Controller,
    seeds: list[int],
    max_steps: int,
    progress: bool = True,
) -> dict[str, Any]:
    """Episodes on ``seeds``; success rate, distances (cm) and replanning latency (ms)."""
    env = make_env()
    results: list[EpisodeResult] = []
    try:
        for seed in tqdm(seeds, desc=name, disable=not progress, leave=False):
            results.append(run_episode(env, controller, seed=seed, max_steps=max_steps))
    finally:
        env.close()
    lat = np.concatenate([r.replan_ms for r in results]) if results else np.zeros(0)
    return summarize_episodes(name, results, lat)


def summarize_episodes(
    name: str, results: list[EpisodeResult], latencies_ms: np.ndarray
) -> dict[str, Any]:
    final = np.array([r.final_distance_m for r in results])
    start = np.array([r.start_distance_m for r in results])
    return {
        "controller": name,
        "episodes": len(results),
        "success_rate": float(np.mean([r.success for r in results])),
        "final_distance_cm_median": float(100 * np.median(final)),
        "final_distance_cm_mean": float(100 * final.mean()),
        "start_distance_cm_mean": float(100 * start.mean()),
        "replan_ms_median": float(np.median(latencies_ms)) if latencies_ms.size else float("nan"),
        "replan_ms_p90": float(np.percentile(latencies_ms, 90))
        if latencies_ms.size
        else float("nan"),
        "per_episode": [{k: v for k, v in asdict(r).items() if k != "replan_ms"} for r in results],
    }


PLAN_COLUMNS = (
    ("controller", "controller"),
    ("success_rate", "success"),
    ("final_distance_cm_median", "final dist. (cm, median)"),
    ("start_distance_cm_mean", "start dist. (cm, mean)"),
    ("replan_ms_median", "ms / replan (median)"),
)


def planning_table(rows: list[dict[str, Any]]) -> str:
    head = "| " + " | ".join(label for _, label in PLAN_COLUMNS) + " |"
    lines = [head, "|" + "---|" * len(PLAN_COLUMNS)]
    for r in rows:
        cells = [f"{r[k]:.3g}" if isinstance(r[k], float) else str(r[k]) for k, _ in PLAN_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
