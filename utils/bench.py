"""Benchmarks measured side by side with their anchors in one run (scripts/benchmark.py).

Each figure is the median of several repeats; ratios are taken against anchors measured in the
same process, so machine speed cancels out. Results print as a table and go to JSON with the
machine, versions and environment they were measured under.
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from latentplay.utils.io import provenance, write_json_atomic


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
    from latentplay.rollouts.collect import CollectSpec, collect

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


def bench_torchrun(
    procs: Sequence[int] = (1, 2),
    model: str = "glass",
    size: str = "s",
    batch: int = 16,
    steps: int = 40,
    skip: int = 20,
    repeats: int = 3,
    image_size: int = 64,
) -> list[dict[str, Any]]:
    """Training samples/s of ``scripts/train.py`` in one plain process and under
    ``torchrun --nproc_per_node=n`` (DDP, gloo), same global batch, on a synthetic dataset of
    ``image_size`` frames. Rates come from the run's own metrics.jsonl (training compute time,
    excluding start-up, checkpoints and samples) over steps ``skip..steps``, identical steps in
    every row (GLASS's curriculum changes the cost per step)."""
    import json
    import shutil
    import subprocess
    import sys

    from latentplay.rollouts.toy import make_toy_dataset

    root = Path(__file__).resolve().parents[1]
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    rows = []
    with tempfile.TemporaryDirectory(prefix="lp-bench-ddp-") as tmp:
        data = make_toy_dataset(Path(tmp) / "toy", episodes=32, steps=16, size=image_size)
        env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
        runs = [("python, 1 process", [sys.executable], 1)]
        runs += [
            (
                f"torchrun, {n} process{'es' if n > 1 else ''}",
                [torchrun, "--standalone", f"--nproc_per_node={n}"],
                n,
            )
            for n in procs
        ]
        for label, launcher, n in runs:
            rates = []
            for r in range(repeats):
                out = Path(tmp) / f"run-{n}-{len(rows)}-{r}"
                cmd = [
                    *launcher,
                    str(root / "scripts" / "train.py"),
                    f"model={model}",
                    f"model.size={size}",
                    f"data={data}",
                    f"out={out}",
                    f"trainer.batch_size={batch}",
                    f"trainer.max_steps={steps}",
                    "trainer.max_minutes=null",
                    "trainer.log_every=1",
                    "trainer.sample_every=1000000",
                    "trainer.progress=false",
                ]
                subprocess.run(cmd, check=True, capture_output=True, env=env, timeout=1800)
                log = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
                by_step = {row["step"]: row["elapsed_s"] for row in log}
                seconds = by_step[steps] - by_step[skip]
                rates.append((steps - skip) * batch / seconds)
            rows.append(
                {
                    "name": f"{model} {size} {image_size}x{image_size}, {label}",
                    "processes": n,
                    "samples_per_s": statistics.median(rates),
                    "min": min(rates),
                    "max": max(rates),
                    "global_batch": batch,
                    "steps_timed": steps - skip,
                    "threads_per_process": os.cpu_count() if n == 1 else 1,
                    "repeats": repeats,
                }
            )
    base = rows[0]["samples_per_s"]
    for r in rows:
        r["x_one_process"] = r["samples_per_s"] / base
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


def bench_glass(
    sizes: Sequence[str] = ("s", "paper"),
    batch: int = 16,
    seq_len: int = 8,
    steps: int = 3,
    repeats: int = 3,
    image_size: int = 64,
) -> list[dict[str, Any]]:
    """Training transitions/s (GMA + LMA, forward, backward, Adam) per GLASS size, on random
    64x64 clips, channels_last, in this process. Median over repeats of ``steps`` steps."""
    import torch

    from latentplay.world_models.glass import Glass
    from latentplay.world_models.glass.model import describe
    from latentplay.world_models.glass.train import GlassObjective, GlassSchedule

    objective = GlassObjective(
        GlassSchedule(gma_warmup_steps=0, seq_len_start=seq_len, seq_len_end=seq_len)
    )
    rows = []
    for size in sizes:
        torch.manual_seed(0)
        model = Glass(size=size, image_size=image_size).to(memory_format=torch.channels_last)
        opt = torch.optim.Adam(model.parameters(), lr=4e-4)
        clip = torch.rand(batch, seq_len, 3, image_size, image_size)

        def step(model: Any = model, opt: Any = opt, clip: Any = clip) -> None:
            loss, _ = objective(model, clip, 10_000)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        step()  # warm-up: allocator, mkldnn primitives
        rates = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            rates.append(steps * batch * (seq_len - 1) / (time.perf_counter() - t0))
        rows.append(
            {
                "name": f"GLASS size={size}",
                "params": describe(model)["params"]["total"],
                "masker_params": describe(model)["params"]["masker"],
                "transitions_per_s": statistics.median(rates),
                "min": min(rates),
                "max": max(rates),
                "batch": batch,
                "seq_len": seq_len,
                "repeats": repeats,
            }
        )
    base = rows[0]["transitions_per_s"]
    for r in rows:
        r["x_first"] = r["transitions_per_s"] / base
    return rows


def bench_yoda(
    settings: Sequence[tuple[str, str, int]] = (
        ("s", "euler", 1),
        ("s", "euler", 3),  # the default
        ("s", "euler", 5),
        ("s", "euler", 10),
        ("s", "heun", 5),
        ("s", "euler", 20),
        ("xs", "euler", 3),
        ("m", "euler", 3),
    ),
    repeats: int = 5,
    image_size: int = 64,
    checkpoint: str | None = None,
    batch: int = 16,
) -> list[dict[str, Any]]:
    """Seconds per generated frame (batch 1, a random poke) per YODA size, solver and ODE steps,
    median over ``repeats``, beside the issue's 0.3 s target and what YODA's own sampler
    (100 RK4 steps = 400 network evaluations) would cost at the same per-evaluation time. Also
    the training samples/s (forward, backward, Adam at ``batch``) per size. ``checkpoint``:
    time that model's size (weights do not change the cost; the default is random weights)."""
    import torch

    from latentplay.evaluation.poke import step_times
    from latentplay.world_models.yoda import Yoda
    from latentplay.world_models.yoda.train import YodaObjective

    rows, train_rate = [], {}
    for size, solver, steps in settings:
        torch.manual_seed(0)
        model = Yoda(size=size, image_size=image_size, solver=solver, sample_steps=steps).eval()
        times = step_times(model, "cpu", repeats)
        evals = steps if solver == "euler" else 2 * steps - 1
        sec = statistics.median(times)
        if size not in train_rate:
            tm = Yoda(size=size, image_size=image_size).train()
            tm.to(memory_format=torch.channels_last)
            opt = torch.optim.Adam(tm.parameters(), lr=1e-4)
            clip = torch.rand(batch, 8, 3, image_size, image_size)
            obj = YodaObjective()
            rates = []
            for i in range(1 + repeats):
                t0 = time.perf_counter()
                loss, _ = obj(tm, clip, i)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if i:  # the first is warm-up
                    rates.append(batch / (time.perf_counter() - t0))
            train_rate[size] = statistics.median(rates)
        rows.append(
            {
                "name": f"YODA size={size} {solver} {steps} steps",
                "params": sum(p.numel() for p in model.parameters()),
                "evaluations": evals,
                "s_per_frame": sec,
                "min": min(times),
                "max": max(times),
                "x_target": sec / 0.3,
                "paper_sampler_s": sec / evals * 400,
                "train_samples_per_s": train_rate[size],
                "repeats": repeats,
            }
        )
    return rows


def bench_plan(
    repeats: int = 3,
    samples: int = 300,
    horizon: int = 5,
    iterations: int = 10,
    checkpoint: str | None = None,
    image_size: int = 64,
    full: bool = True,
) -> list[dict[str, Any]]:
    """Milliseconds per CEM replan (``samples`` x ``horizon`` x ``iterations`` imagined
    transitions, goal-image cost) per world model, median over ``repeats`` replans: GLASS
    size s rolled out with its GMA alone (``GlassGlobal``; cost on decoded frames, and in its
    state, the mask centroid) and in full (GMA + LMA, unless ``full=False``), and the true
    simulator (Push-v0, env actions, true-position cost). Without ``checkpoint`` an untrained
    size-s GLASS is timed (speed does not depend on the weights)."""
    import torch

    from latentplay.agents.mpc import OracleController
    from latentplay.agents.planners import CEM
    from latentplay.agents.planners.costs import GoalImageCost
    from latentplay.agents.simulator import SimulatorModel
    from latentplay.envs.arm import PushEnv
    from latentplay.world_models.glass import Glass
    from latentplay.world_models.glass.global_model import GlassGlobal

    if checkpoint:
        from latentplay.world_models.checkpoint import load_model

        glass = load_model(checkpoint)[0]
    else:
        torch.manual_seed(0)
        glass = Glass(size="s", image_size=image_size).eval()
    env = PushEnv(width=image_size, height=image_size, time_limit=None)
    env.reset(seed=0)
    frame = torch.from_numpy(env.render_rgb()).permute(2, 0, 1)
    goal = torch.from_numpy(env.render_goal()).permute(2, 0, 1)
    settings = {"horizon": horizon, "samples": samples, "elites": 30, "iterations": iterations}

    def timed(plan_once: Callable[[], Any]) -> list[float]:
        plan_once()  # warm-up
        out = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            plan_once()
            out.append(1e3 * (time.perf_counter() - t0))
        return out

    rows = []
    runs = [
        ("GLASS s, GMA rollout (GlassGlobal), goal-image cost", GlassGlobal(glass), "pixels"),
        ("GLASS s, GMA rollout (GlassGlobal), state cost", GlassGlobal(glass), "state"),
    ]
    if full:
        runs.append(("GLASS s, full rollout (GMA + LMA), goal-image cost", glass, "pixels"))
    for name, model, space in runs:
        planner = CEM(model.action_spec, **settings)
        with torch.inference_mode():
            ms = timed(
                lambda m=model, p=planner, s=space: p.plan(
                    GoalImageCost(m, frame[None, None], goal, space=s)
                )
            )
        rows.append({"name": name, "ms": ms})
    oracle = OracleController(
        lambda: PushEnv(width=image_size, height=image_size, time_limit=None),
        CEM(SimulatorModel.action_spec, **settings),
    )
    oracle.reset(env)
    rows.append(
        {"name": "true simulator (Push-v0)", "ms": timed(lambda: oracle.act([], env.get_state()))}
    )
    env.close()
    for r in rows:
        ms = r.pop("ms")
        r.update(
            ms_per_replan=statistics.median(ms),
            min=min(ms),
            max=max(ms),
            x_target_1s=statistics.median(ms) / 1000.0,
            transitions=samples * horizon * iterations,
            repeats=repeats,
        )
    return rows


def machine() -> dict[str, Any]:
    import gymnasium
    import mujoco

    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "mujoco": mujoco.__version__,
        "gymnasium": gymnasium.__version__,
        "MUJOCO_GL": os.environ.get("MUJOCO_GL"),
        "LP_NUM_THREADS": os.environ.get("LP_NUM_THREADS"),
        **provenance(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> str:
    """Markdown table: columns are (key, header, format spec)."""
    head = "| " + " | ".join(h for _, h, _ in columns) + " |"
    sep = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(columns))) + "|"
    body = [
        "| " + " | ".join(format(r[k], f) if f else str(r[k]) for k, _, f in columns) + " |"
        for r in rows
    ]
    return "\n".join([head, sep, *body])


def save(path: str | Path, kind: str, rows: list[dict[str, Any]], command: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(
        path, {"benchmark": kind, "command": command, "machine": machine(), "rows": rows}
    )
    return path
