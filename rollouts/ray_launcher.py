"""Collection on Ray: one task per shard, the same shards, names and meta.json as the local pool.

``python scripts/collect.py ... launcher=ray`` starts a local Ray with ``workers`` CPUs;
``ray.address=auto`` (or ``ray://host:10001``) joins a running cluster, where Ray schedules the
tasks over every node. A task builds its env and policy once per Ray worker process (kept for
the next task of the same spec), records the shard's episodes and writes the shard with the
same atomic protocol as a local worker. Two ways for a shard to reach the dataset folder:

- ``ray.shared_fs=true`` (default): the folder is on a file system every node mounts (a local
  Ray, NFS, Lustre); the task writes there itself.
- ``ray.shared_fs=false``: the task writes into a temporary folder of its node and returns the
  shard's bytes through Ray's object store; the driver checks them against the sidecar's sha256
  and lands them atomically.

Shard names come from their index, so tasks never collide, and a retried task (a node lost:
``ray.max_retries``) rewrites the same shard. Resuming works as for the local pool: complete
shards are kept, the rest are scheduled again. Ray is an optional dependency:
``pip install latentplay[distributed]``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from latentplay.rollouts.format import shard_name
from latentplay.rollouts.worker import CollectSpec, make_env_and_policy, write_shard
from latentplay.utils.io import atomic_path, sha256_file, write_json_atomic


@dataclass
class RayOptions:
    """``ray.*`` of ``configs/collect.yaml`` (also its typed schema, cli/schemas.py)."""

    address: str | None = None  # None: a local Ray with `workers` CPUs; "auto": a cluster
    shared_fs: bool = True  # tasks write into the dataset folder themselves
    cpus_per_task: float = 1.0
    max_retries: int = 2  # re-run a task whose worker or node died (system failures only)
    log_to_driver: bool = False  # worker stdout/stderr on the driver's console


CANCEL_WAIT_S = 30.0  # how long a failed run waits for its cancelled tasks to stop
_WORKER: dict[str, Any] = {}  # per Ray worker process: the env and policy of one spec


def import_ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise ImportError(
            "launcher=ray needs Ray: pip install 'latentplay[distributed]' (or pip install ray)"
        ) from e
    return ray


def _spec_key(spec: CollectSpec) -> str:
    return json.dumps(spec.identity(), sort_keys=True, default=str)


def _record_shard(spec: CollectSpec, shard: int, shard_dir: str | None) -> Any:
    """Ray task body: the shard's sidecar (``shared_fs``), or ``(sidecar, bytes)``."""
    key = _spec_key(spec)
    if _WORKER.get("key") != key:
        if "env" in _WORKER:
            _WORKER["env"].close()
        env, policy = make_env_and_policy(spec)
        _WORKER.update(key=key, env=env, policy=policy)
    env, policy = _WORKER["env"], _WORKER["policy"]
    if shard_dir is not None:
        return write_shard(env, policy, spec, shard, Path(shard_dir))
    with tempfile.TemporaryDirectory(prefix="latentplay-shard-") as tmp:
        info = write_shard(env, policy, spec, shard, Path(tmp))
        return info, (Path(tmp) / f"{shard_name(shard)}.h5").read_bytes()


def land_shard(shard_dir: Path, shard: int, info: dict[str, Any], data: bytes) -> None:
    """Write a shard that came through the object store: check it against its sidecar, then
    sidecar and shard atomically, in the order a worker uses (sidecar first, shard renamed)."""
    path = shard_dir / f"{shard_name(shard)}.h5"
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
        if tmp.stat().st_size != info["bytes"] or sha256_file(tmp) != info["sha256"]:
            raise OSError(
                f"{path}: the shard that came back from its Ray task does not match its own "
                f"sidecar ({len(data)} bytes, expected {info['bytes']}); nothing was written"
            )
        write_json_atomic(path.with_suffix(".json"), info)


def _check_visible(shard_dir: Path, shard: int, info: dict[str, Any]) -> None:
    """With ``shared_fs``, the shard a task wrote must be on the driver's file system too."""
    path = shard_dir / f"{shard_name(shard)}.h5"
    if not path.is_file() or path.stat().st_size != info["bytes"]:
        raise FileNotFoundError(
            f"{path}: its Ray task reports it written ({info['bytes']} bytes) but the driver "
            "does not see it: the nodes do not share this folder; use a folder every node "
            "mounts, or ray.shared_fs=false"
        )


def run_ray(
    spec: CollectSpec,
    todo: list[int],
    shard_dir: Path,
    workers: int,
    options: dict[str, Any],
    bar: Any,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Run the shards ``todo`` as Ray tasks; yields ``(shard, sidecar)`` as each completes."""
    known = sorted(f.name for f in fields(RayOptions))
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"unknown ray option(s) {unknown}; expected some of {known}")
    opts = RayOptions(**options)
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        env_vars = {k: os.environ[k] for k in ("MUJOCO_GL", "LP_NUM_THREADS") if k in os.environ}
        kwargs: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": bool(opts.log_to_driver),
            "runtime_env": {"env_vars": env_vars} if env_vars else None,
        }
        if opts.address:
            ray.init(address=opts.address, **kwargs)
        else:
            ray.init(num_cpus=workers, **kwargs)
        started = True
    task = ray.remote(num_cpus=opts.cpus_per_task, max_retries=opts.max_retries)(_record_shard)
    target = str(shard_dir.resolve()) if opts.shared_fs else None  # workers' cwd may differ
    refs = {task.remote(spec, s, target): s for s in todo}
    try:
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=0.5)
            for ref in ready:
                s = refs.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as e:  # the task's own exception, or a worker,
                    # node or object lost after max_retries: named with the shard either way
                    cause = getattr(e, "cause", None) or e  # the traceback stays in __cause__
                    raise RuntimeError(
                        f"Ray task of shard {shard_name(s)} (episodes {spec.shard_range(s).start}"
                        f"-{spec.shard_range(s).stop - 1}) failed: {type(cause).__name__}: {cause}"
                    ) from e
                if target is None:
                    info, data = result
                    land_shard(shard_dir, s, info, data)
                else:
                    info = result
                    _check_visible(shard_dir, s, info)
                bar.update(info["episodes"] * (spec.steps + 1))
                yield s, info
    finally:
        for ref in refs:  # interrupted or failed: stop what is still running
            ray.cancel(ref, force=True)
        if refs:  # and wait until it has stopped: nothing may still write once we return
            _, running = ray.wait(list(refs), num_returns=len(refs), timeout=CANCEL_WAIT_S)
            if running:
                names = sorted(shard_name(refs[r]) for r in running)
                print(
                    f"warning: cancelled Ray tasks of shards {names} had not stopped after "
                    f"{CANCEL_WAIT_S:.0f} s; resume=true redoes anything they leave partial"
                )
        if started:
            ray.shutdown()
