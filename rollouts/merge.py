"""One dataset from several: every episode of each source, renumbered in order, splits kept.

Use it to train on a mixture (e.g. scenes of 1 to 3 objects plus more 3-object scenes). The
sources must share what a model sees and what evaluation reads (env, camera, resolution, fps,
action space, ground-truth keys, episode length); each episode's arrays are copied as stored
(no recompression) under its new index, its content digest goes into the new shard's
sidecar, and each shard is written atomically. ``meta.json`` lists the sources (folder, env
settings, policy, seed, episodes, first new index); ``env_kwargs`` is kept only where the
sources agree on it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import h5py
from tqdm import tqdm

from latentplay.rollouts.format import (
    FORMAT,
    FORMAT_VERSION,
    DatasetError,
    check_resume,
    episode_digest,
    episode_digests,
    episode_key,
    imported_kind,
    load_meta,
    shard_name,
    split_lists,
    stored_arrays,
    verify_shard,
)
from latentplay.utils.io import atomic_path, provenance, sha256_file, write_json_atomic

# What every source must agree on: what a model sees and what evaluation reads.
SHARED_KEYS = (
    "env_id",
    "camera",
    "height",
    "width",
    "fps",
    "action_space",
    "ground_truth_keys",
    "state_keys",
    "steps",
)


def _identity(meta: dict[str, Any]) -> dict[str, Any]:
    """What a source must share with the others: the keys above, and collected or imported
    (an imported dataset's gt/ holds only what its source had)."""
    return {**{k: meta.get(k) for k in SHARED_KEYS}, "source": imported_kind(meta) or "collected"}


def _check_sources(sources: list[Path]) -> list[dict[str, Any]]:
    if len(sources) < 2:
        raise ValueError(f"sources={[str(s) for s in sources]}: give at least two dataset folders")
    if len({s.resolve() for s in sources}) < len(sources):
        raise ValueError(f"sources={[str(s) for s in sources]}: a folder is listed twice")
    metas = [load_meta(s) for s in sources]
    for s, m in zip(sources, metas, strict=True):
        if not m.get("complete", False):
            raise DatasetError(
                f"{s}: incomplete ({m.get('episodes_written')} of {m.get('episodes')} episodes); "
                "finish it with scripts/collect.py resume=true first"
            )
    first = _identity(metas[0])
    for s, m in zip(sources[1:], metas[1:], strict=True):
        other = _identity(m)
        differ = [f"{k}: {first[k]!r} vs {other[k]!r}" for k in first if other[k] != first[k]]
        if differ:
            raise DatasetError(
                f"{sources[0]} and {s} cannot be merged: they differ in {', '.join(differ)}"
            )
    return metas


def _copy_shard(src_path: Path, shard: dict[str, Any], first_index: int, path: Path) -> dict:
    """Copy the episodes of verified shard ``src_path`` (its meta.json entry ``shard``) under
    indices shifted by ``first_index`` into shard ``path``; its sidecar."""
    digests = episode_digests(src_path, shard)
    if digests is None:  # a sidecar without them: hash the stored arrays
        with h5py.File(src_path, "r") as src:
            digests = [
                episode_digest(stored_arrays(src, episode_key(i))) for i in shard["episode_index"]
            ]
    new_index = [first_index + i for i in shard["episode_index"]]
    with atomic_path(path) as tmp:
        with h5py.File(src_path, "r") as src, h5py.File(tmp, "w") as dst:
            dst.attrs.update({"format": FORMAT, "format_version": FORMAT_VERSION})
            frames, gt = dst.create_group("frames"), dst.create_group("gt")
            for old, new in zip(shard["episode_index"], new_index, strict=True):
                key = episode_key(old)
                src.copy(src["frames"][key], frames, name=episode_key(new))
                if key in src.get("gt", {}):
                    src.copy(src["gt"][key], gt, name=episode_key(new))
        info = {
            "file": f"shards/{path.name}",
            "episodes": len(new_index),
            "episode_index": new_index,
            "lengths": list(shard["lengths"]),
            "splits": list(shard["splits"]),
            "episode_sha256": list(digests),
            "sha256": sha256_file(tmp),
            "bytes": tmp.stat().st_size,
            "merged_from": str(src_path),
            **provenance(),
        }
        write_json_atomic(path.with_suffix(".json"), info)  # the sidecar first, as ShardWriter
    return info


def merge_datasets(sources: list[str | Path], out: str | Path, progress: bool = True) -> Path:
    """Write ``out``: the episodes of ``sources`` in order (source 0's first), each source's
    indices shifted past the ones before; splits as each source drew them. Sources are
    verified (checksums) before anything is written; ``out`` must not hold a dataset."""
    srcs, out = [Path(s) for s in sources], Path(out)
    metas = _check_sources(srcs)
    check_resume(out, {}, resume=False)
    verified = [
        [verify_shard(s, sh) for sh in m["shards"]] for s, m in zip(srcs, metas, strict=True)
    ]
    (out / "shards").mkdir(parents=True, exist_ok=True)
    shards, described, first = [], [], 0
    total = sum(sh["episodes"] for m in metas for sh in m["shards"])
    bar = tqdm(total=total, desc=f"merge -> {out}", unit="ep", disable=not progress)
    for src, meta, paths in zip(srcs, metas, verified, strict=True):
        for shard, src_path in zip(meta["shards"], paths, strict=True):
            path = out / "shards" / f"{shard_name(len(shards))}.h5"
            shards.append(_copy_shard(src_path, shard, first, path))
            bar.update(shard["episodes"])
        described.append(
            {
                "path": str(src),
                "env_kwargs": meta.get("env_kwargs"),
                "policy": meta.get("policy"),
                "seed": meta.get("seed"),
                "episodes": sum(sh["episodes"] for sh in meta["shards"]),
                "first_index": first,
            }
        )
        first += 1 + max((i for s in meta["shards"] for i in s["episode_index"]), default=-1)
    bar.close()
    kwargs = [m.get("env_kwargs") for m in metas]
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        **{k: metas[0].get(k) for k in SHARED_KEYS},
        **({"env_kwargs": kwargs[0]} if all(k == kwargs[0] for k in kwargs) else {}),
        # an imported kind stays one, so readers keep asking which ground truth it lacks
        **({"source": {"kind": imported_kind(metas[0])}} if imported_kind(metas[0]) else {}),
        "episodes": total,
        "complete": True,
        "episodes_written": total,
        "merged": described,
        **provenance(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "shards": [{k: v for k, v in s.items() if k != "episode_sha256"} for s in shards],
        "splits": split_lists(shards),
    }
    write_json_atomic(out / "meta.json", meta)
    return out
