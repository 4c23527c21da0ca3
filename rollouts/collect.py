"""Parallel, resumable rollout collection into HDF5 shards: the parent side.

Work is cut into shards of ``shard_episodes`` episodes. Each worker process (started with
``forkserver``/``spawn``: forking after rendering hangs) owns one env and one policy, records
whole episodes and writes whole shards; the parent only keeps the progress bar and meta.json.
Episode ``e`` is seeded from ``(seed, e)`` alone, so the data do not depend on how many workers
ran or how often the job was killed and resumed: a resumed run is byte-identical per episode
to an uninterrupted one. What a worker does is :mod:`latentplay.rollouts.worker`.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import queue as queue_mod
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from latentplay.rollouts.format import (
    FORMAT,
    FORMAT_VERSION,
    check_resume,
    read_sidecar,
    shard_name,
    split_lists,
)
from latentplay.rollouts.worker import CollectSpec, bound, make_env_and_policy, write_shard
from latentplay.utils.io import provenance, write_json_atomic
from latentplay.utils.progress import progress_bar

META_EVERY_S = 2.0  # meta.json rewrites while shards complete, at most this often

# Keys of the spec that must match when a run is resumed.
_RESUME_KEYS = (
    "env_id",
    "env_kwargs",
    "policy",
    "seed",
    "steps",
    "shard_episodes",
    "masks",
    "split_fractions",
)


# ---------------------------------------------------------------------------- local pool
_WORKER: dict[str, Any] = {}  # per pool process: its env, policy and progress queue


def _worker_init(spec: CollectSpec, queue: Any) -> None:
    env, policy = make_env_and_policy(spec)
    _WORKER.update(env=env, policy=policy, queue=queue)


def _write_shard(spec: CollectSpec, shard: int, shard_dir: str) -> dict[str, Any]:
    env, policy, queue = _WORKER["env"], _WORKER["policy"], _WORKER["queue"]
    return write_shard(env, policy, spec, shard, Path(shard_dir), queue.put)


# ---------------------------------------------------------------------------- parent side
@dataclass
class CollectResult:
    out: Path
    episodes: int
    frames: int
    seconds: float
    shards_written: int
    shards_reused: int

    @property
    def frames_per_second(self) -> float:
        return self.frames / max(self.seconds, 1e-9)


def _meta(spec: CollectSpec, shards: list[dict[str, Any]], extra: dict[str, Any]) -> dict[str, Any]:
    n = sum(s["episodes"] for s in shards)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        **spec.identity(),
        "episodes": spec.episodes,
        "complete": n == spec.episodes,
        "episodes_written": n,
        **extra,
        # Per-episode checksums stay in the sidecars: meta.json of 100k episodes stays small.
        "shards": [{k: v for k, v in s.items() if k != "episode_sha256"} for s in shards],
        "splits": split_lists(shards),
    }


def _env_description(spec: CollectSpec) -> dict[str, Any]:
    """Camera, resolution, fps, spaces and ground-truth keys, read from the env itself."""
    import gymnasium as gym

    import latentplay.envs  # noqa: F401

    env = gym.make(spec.env_id, obs_type="pixels_state", **spec.env_kwargs)
    try:
        obs, info = env.reset(seed=0)
        u = env.unwrapped
        limit = getattr(u, "time_limit", None)
        if limit is not None and spec.steps > limit:
            raise ValueError(
                f"steps={spec.steps} exceeds {spec.env_id}'s time_limit={limit}; pass "
                f"env.kwargs.time_limit={spec.steps} (or null)"
            )
        # Build the policy here too: a bad policy fails now, with its own error, not in a
        # worker process after meta.json was written.
        policy = bound(spec.policy_factory(action_space=env.action_space), env)
        policy.reset(np.random.default_rng(0), info)
        policy.act(obs, info)
        pixels = env.observation_space["pixels"]
        return {
            "camera": u.camera_name,
            "height": int(pixels.shape[0]),
            "width": int(pixels.shape[1]),
            "fps": env.metadata.get("render_fps"),
            "action_space": {
                "shape": list(env.action_space.shape),
                "low": env.action_space.low.tolist(),
                "high": env.action_space.high.tolist(),
            },
            "ground_truth_keys": sorted(u.ground_truth()),
            "state_keys": sorted(u.get_state().to_arrays()),
        }
    finally:
        env.close()


def collect(
    spec: CollectSpec,
    out: str | Path,
    workers: int = 1,
    resume: bool = False,
    start_method: str = "forkserver",
    progress: bool = True,
    config: dict[str, Any] | None = None,
    launcher: str = "local",
    ray_options: dict[str, Any] | None = None,
) -> CollectResult:
    """Collect ``spec.episodes`` episodes into the dataset folder ``out``.

    ``resume=True`` continues a killed run: complete shards (sidecar present, size and sha256
    right) are kept, anything partial or damaged is redone. Without it, a folder that already
    holds shards is an error, so nothing is overwritten by accident.

    ``launcher``: ``"local"`` (a process pool of ``workers`` processes) or ``"ray"`` (one Ray
    task per shard, :mod:`latentplay.rollouts.ray_launcher`; ``ray_options``: ``address``,
    ``shared_fs``, ...). Both write the same shards, names and meta.json.
    """
    if launcher not in ("local", "ray"):
        raise ValueError(f"launcher={launcher!r}; expected 'local' or 'ray'")
    if workers < 1:
        raise ValueError(f"workers={workers}; expected >= 1")
    if start_method not in ("forkserver", "spawn"):
        raise ValueError(
            f"start_method={start_method!r}; expected 'forkserver' or 'spawn' (forking after "
            "MuJoCo rendered hangs)"
        )
    out = Path(out)
    shard_dir = out / "shards"
    shard_dir.mkdir(parents=True, exist_ok=True)
    identity = spec.identity()
    check_resume(out, {k: identity[k] for k in _RESUME_KEYS}, resume)
    done: dict[int, dict[str, Any]] = {}
    for s in range(spec.n_shards):
        info = read_sidecar(shard_dir / f"{shard_name(s)}.json")
        if info is not None and info["episode_index"] == list(spec.shard_range(s)):
            done[s] = info
    todo = [s for s in range(spec.n_shards) if s not in done]
    for stale in shard_dir.glob(".*.tmp"):  # temporary files of a killed run
        stale.unlink(missing_ok=True)

    extra = {
        **_env_description(spec),
        **provenance(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": config or {},
    }
    write_json_atomic(out / "meta.json", _meta(spec, [done[s] for s in sorted(done)], extra))

    frames_total = sum(len(spec.shard_range(s)) for s in todo) * (spec.steps + 1)
    bar = progress_bar(
        total=frames_total,
        unit="frame",
        desc=f"collect {spec.env_id} ({launcher})",
        disable=not progress,
    )
    t0 = time.perf_counter()
    if todo:
        if launcher == "local":
            finished = _run_local(spec, todo, shard_dir, workers, start_method, bar)
        else:
            from latentplay.rollouts.ray_launcher import run_ray

            finished = run_ray(spec, todo, shard_dir, workers, ray_options or {}, bar)
        # meta.json grows with the shards: rewriting it after each of 4000 shards (100k
        # episodes) would cost O(n^2). It is a progress record between rewrites at most
        # META_EVERY_S apart, complete at the end; resuming trusts the sidecars, not it.
        last_meta = time.monotonic()
        with contextlib.closing(finished):  # on any error: stop the pool or cancel the tasks
            for s, info in finished:  # as shards complete, in any order
                done[s] = info
                if time.monotonic() - last_meta >= META_EVERY_S:
                    write_json_atomic(
                        out / "meta.json", _meta(spec, [done[k] for k in sorted(done)], extra)
                    )
                    last_meta = time.monotonic()
        write_json_atomic(out / "meta.json", _meta(spec, [done[k] for k in sorted(done)], extra))
    seconds = time.perf_counter() - t0
    bar.close()
    written = sum(len(spec.shard_range(s)) for s in todo)
    return CollectResult(
        out=out,
        episodes=sum(d["episodes"] for d in done.values()),
        frames=written * (spec.steps + 1),
        seconds=seconds,
        shards_written=len(todo),
        shards_reused=spec.n_shards - len(todo),
    )


def _run_local(
    spec: CollectSpec,
    todo: list[int],
    shard_dir: Path,
    workers: int,
    start_method: str,
    bar: Any,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Shards on a local process pool: yields ``(shard, sidecar)`` as each completes."""
    ctx = mp.get_context(start_method)
    queue = ctx.Queue()
    with ProcessPoolExecutor(
        max_workers=min(workers, len(todo)),
        mp_context=ctx,
        initializer=_worker_init,
        initargs=(spec, queue),
    ) as pool:
        pending = {pool.submit(_write_shard, spec, s, str(shard_dir)): s for s in todo}
        while pending:
            finished, _ = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            _drain(queue, bar)
            for fut in finished:
                yield pending.pop(fut), fut.result()  # a worker's exception surfaces here
        _drain(queue, bar)


def _drain(queue: Any, bar: Any) -> None:
    n = 0
    while True:
        try:
            n += queue.get_nowait()
        except queue_mod.Empty:
            break
    if n:
        bar.update(n)
