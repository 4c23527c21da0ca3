"""Import videos from outside the simulator as a latentplay dataset (``scripts/import.py``).

Items (:mod:`latentplay.rollouts.sources`: video files, folders of frames, Minari episodes)
become episodes, each item one episode or, with ``episode_frames``, consecutive episodes of
that many frames. The split of an item is a seeded hash of its name, and every episode cut
from one item shares it (no video leaks between train and test). Shards of ``shard_items``
items are written as collection writes them (hidden until complete, a sidecar each), one after
another, so episode indices follow the items' order and a killed import resumes (``resume``)
by keeping the complete shards. Nothing is invented: ``gt/`` is absent for videos and holds a
Minari dataset's actions and rewards.

A bad item (unreadable, empty, an unsupported codec, frames of different sizes, too short) is
skipped with its reason, printed and listed in meta.json's ``skipped``; the rest are imported.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from latentplay.rollouts.format import (
    FORMAT,
    FORMAT_VERSION,
    Episode,
    ShardWriter,
    check_resume,
    read_sidecar,
    shard_name,
    split_lists,
    split_of_name,
)
from latentplay.rollouts.sources import (
    Clip,
    FrameTransform,
    Item,
    MinariSource,
    SourceError,
    list_items,
    read_item,
)
from latentplay.utils.io import provenance, write_json_atomic
from latentplay.utils.progress import progress_bar, write_line

FORMATS = ("videos", "minari")
CHUNK_FRAMES = 64  # HDF5 chunk of a long video: a clip read decompresses ~64 frames, not all


@dataclass(frozen=True)
class ImportSpec:
    """What to import and how; the keys a resumed import must share with the first run are
    those of :meth:`identity`."""

    source: str  # a folder or video file (videos), or a Minari dataset id (minari)
    format: str = "videos"
    size: int = 64
    crop: str = "center"
    every: int = 1  # keep every n-th frame
    episode_frames: int | None = None  # cut items into episodes of this many frames
    min_frames: int = 2  # shorter items (or last pieces) are skipped
    seed: int = 0
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    shard_items: int = 16
    minari_path: str | None = None  # Minari datasets root (MINARI_DATASETS_PATH)
    pixels_key: str = "pixels"
    compression: str | None = "gzip"
    compression_level: int | None = 1
    transform: FrameTransform = field(init=False)

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"format={self.format!r}; expected one of {list(FORMATS)}")
        for name in ("every", "min_frames", "shard_items"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}={v!r}; expected a positive integer")
        if self.min_frames < 2:
            raise ValueError(f"min_frames={self.min_frames}; expected >= 2 (a step needs 2)")
        if self.episode_frames is not None and self.episode_frames < self.min_frames:
            raise ValueError(
                f"episode_frames={self.episode_frames}; expected null or >= min_frames "
                f"({self.min_frames})"
            )
        f = self.split_fractions
        if len(f) != 3 or min(f) < 0 or abs(sum(f) - 1) > 1e-6:
            raise ValueError(
                f"split_fractions={list(f)}; expected three non-negative fractions (train, val, "
                "test) summing to 1"
            )
        object.__setattr__(self, "transform", FrameTransform(self.size, self.crop))

    def identity(self, items: list[Item], source: dict[str, Any]) -> dict[str, Any]:
        listing = "\n".join(it.fingerprint() for it in items)
        keys = ("size", "crop", "every", "episode_frames", "min_frames", "seed")
        return {
            "source": source,
            "source_format": self.format,
            **{k: getattr(self, k) for k in keys},
            "split_fractions": list(self.split_fractions),
            "shard_items": self.shard_items,
            "items_sha256": hashlib.sha256(listing.encode()).hexdigest(),
        }


@dataclass
class ImportResult:
    out: Path
    episodes: int
    frames: int  # frames written by this run
    seconds: float
    shards_written: int
    shards_kept: int
    skipped: list[dict[str, str]]
    splits: dict[str, int]  # episodes per split

    @property
    def frames_per_second(self) -> float:
        return self.frames / max(self.seconds, 1e-9)


def _pieces(clip: Clip, episode_frames: int | None, min_frames: int) -> list[tuple[int, int]]:
    """(start, stop) frame ranges of the episodes cut from a clip."""
    n = len(clip.frames)
    step = episode_frames or n
    return [(s, min(s + step, n)) for s in range(0, n, step) if min(s + step, n) - s >= min_frames]


class _Reader:
    """Reads items of either format through the spec's transform."""

    def __init__(self, spec: ImportSpec) -> None:
        self.spec = spec
        self.minari = (
            MinariSource(spec.source, spec.minari_path, spec.pixels_key)
            if spec.format == "minari"
            else None
        )

    def items(self) -> list[Item]:
        return self.minari.items() if self.minari else list_items(self.spec.source)

    def read(self, item: Item) -> Clip:
        if self.minari is not None:
            return self.minari.read(item, self.spec.transform, self.spec.every)
        return read_item(item, self.spec.transform, self.spec.every)

    def describe(self, n_items: int) -> dict[str, Any]:
        if self.minari is None:
            return {
                "kind": "videos",
                "path": str(Path(self.spec.source).resolve()),
                "items": n_items,
            }
        return {
            "kind": "minari",
            "dataset_id": self.spec.source,
            "path": self.minari.datasets_path,
            "pixels_key": self.spec.pixels_key,
            "items": n_items,
        }


def _write_shard(
    spec: ImportSpec,
    reader: _Reader,
    shard: int,
    items: list[Item],
    first_index: int,
    shard_dir: Path,
    bar: Any,
) -> dict[str, Any]:
    """Read ``items``, write their episodes (indices from ``first_index``) as one shard;
    returns its sidecar (with the items, the skipped ones and their reasons)."""
    writer = ShardWriter(
        shard_dir, shard, spec.compression, spec.compression_level, chunk_frames=CHUNK_FRAMES
    )
    skipped, fps, frames = [], [], 0
    index = first_index
    try:
        for item in items:
            try:
                clip = reader.read(item)
                pieces = _pieces(clip, spec.episode_frames, spec.min_frames)
                if not pieces:
                    raise SourceError(
                        f"{len(clip.frames)} frame(s) after every={spec.every}; fewer than "
                        f"min_frames={spec.min_frames}"
                    )
            except Exception as e:  # one bad item is listed and skipped, never sinks the rest
                reason = str(e) if isinstance(e, SourceError) else f"{type(e).__name__}: {e}"
                skipped.append({"item": item.name, "reason": reason})
                write_line(f"skipped {item.name}: {reason}")
                bar.update(1)
                continue
            split = split_of_name(item.name, spec.seed, spec.split_fractions)
            for start, stop in pieces:
                writer.add(_episode(index, split, item, clip, start, stop, spec.every))
                index += 1
                frames += stop - start
            if clip.fps is not None:
                fps.append(round(clip.fps, 3))
            bar.update(1)
            bar.set_postfix(frames=frames, refresh=False)
        return writer.close(
            {"items": [it.name for it in items], "skipped": skipped, "fps": fps, "frames": frames}
        )
    except BaseException:
        writer.abort()
        raise


def _episode(
    index: int, split: str, item: Item, clip: Clip, start: int, stop: int, every: int
) -> Episode:
    steps = slice(start, stop - 1)
    return Episode(
        index=index,
        split=split,
        frames=clip.frames[start:stop],
        actions=None if clip.actions is None else clip.actions[steps].astype(np.float32),
        rewards=None if clip.rewards is None else clip.rewards[steps],
        attrs={
            "source": item.name,
            "source_start_frame": start * every,  # in the source's own frame numbering
            "source_every": every,
            "source_width": clip.source_size[0],
            "source_height": clip.source_size[1],
            "source_fps": clip.fps,
        },
    )


def import_dataset(
    spec: ImportSpec,
    out: str | Path,
    resume: bool = False,
    progress: bool = True,
    config: dict[str, Any] | None = None,
) -> ImportResult:
    """Import ``spec.source`` into the dataset folder ``out`` (see the module doc)."""
    out = Path(out)
    reader = _Reader(spec)
    items = reader.items()
    identity = spec.identity(items, reader.describe(len(items)))
    check_resume(out, identity, resume)
    shard_dir = out / "shards"
    shard_dir.mkdir(parents=True, exist_ok=True)
    for stale in shard_dir.glob(".*.tmp"):  # temporary files of a killed run
        stale.unlink(missing_ok=True)
    plan = [items[i : i + spec.shard_items] for i in range(0, len(items), spec.shard_items)]
    extra = {
        "transform": {
            **spec.transform.describe(),
            "every": spec.every,
            "episode_frames": spec.episode_frames,
            "min_frames": spec.min_frames,
            **(
                {"minari_every": "rewards summed between kept frames; actions dropped"}
                if spec.format == "minari" and spec.every > 1
                else {}
            ),
        },
        "height": spec.size,
        "width": spec.size,
        "action_space": reader.minari.action_space if reader.minari and spec.every == 1 else None,
        **provenance(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": config or {},
    }
    bar = progress_bar(
        total=len(items), unit="item", desc=f"import {spec.source}", disable=not progress
    )
    done: list[dict[str, Any]] = []
    if not resume:  # a meta.json before the first shard: a run killed at any point resumes
        write_json_atomic(out / "meta.json", _meta(identity, extra, done, len(plan)))
    kept = written = frames = first = 0  # first: the next shard's first episode index
    reuse = resume
    t0 = time.perf_counter()
    try:
        for s, part in enumerate(plan):
            side = read_sidecar(shard_dir / f"{shard_name(s)}.json") if reuse else None
            if (
                side is not None
                and side.get("items") == [it.name for it in part]
                and (side["episode_index"][:1] in ([], [first]))
            ):
                done.append(side)
                kept += 1
                first += side["episodes"]
                bar.update(len(part))
                continue
            reuse = False  # the shards after a rewritten one are rewritten (indices follow)
            side = _write_shard(spec, reader, s, part, first, shard_dir, bar)
            done.append(side)
            written += 1
            first += side["episodes"]
            frames += side["frames"]
            write_json_atomic(out / "meta.json", _meta(identity, extra, done, len(plan)))
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    meta = _meta(identity, extra, done, len(plan))
    write_json_atomic(out / "meta.json", meta)
    if meta["episodes_written"] == 0:  # nothing to keep: leave no dataset that blocks a rerun
        for s in done:
            (out / s["file"]).unlink(missing_ok=True)
            (out / s["file"]).with_suffix(".json").unlink(missing_ok=True)
        (out / "meta.json").unlink(missing_ok=True)
        reasons = "; ".join(f"{s['item']}: {s['reason']}" for s in meta["skipped"][:5])
        raise ValueError(f"{spec.source}: no item could be imported ({reasons})")
    splits = {k: len(v) for k, v in meta["splits"].items()}
    n = meta["episodes_written"]
    return ImportResult(out, n, frames, seconds, written, kept, meta["skipped"], splits)


def _meta(
    identity: dict[str, Any], extra: dict[str, Any], shards: list[dict[str, Any]], n_shards: int
) -> dict[str, Any]:
    n = sum(s["episodes"] for s in shards)
    fps = Counter(f for s in shards for f in s.get("fps", []))
    keys = set()
    if identity["source"]["kind"] == "minari":  # what the episodes' gt/ holds
        keys = {"rewards"} if identity["every"] > 1 else {"actions", "rewards"}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        **identity,
        **extra,
        "ground_truth_keys": sorted(keys),
        "fps": fps.most_common(1)[0][0] if fps else None,
        "fps_seen": {str(k): v for k, v in sorted(fps.items())},
        "episodes": n,
        "complete": len(shards) == n_shards,
        "episodes_written": n,
        "skipped": [sk for s in shards for sk in s.get("skipped", [])],
        "shards": [
            {k: v for k, v in s.items() if k not in ("episode_sha256", "fps", "skipped")}
            for s in shards
        ],
        "splits": split_lists(shards),
    }
