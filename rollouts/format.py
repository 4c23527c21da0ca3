"""On-disk episode format: HDF5 shards of frames with ground truth apart, indexed by meta.json.

Layout of a dataset folder::

    meta.json                 env, camera, resolution, fps, policy, seed, provenance, shards
                              (file, episodes, sha256, bytes), splits
    shards/shard-00000.h5     /frames/<episode>           (T+1, H, W, 3) uint8, one chunk per
                                                          episode, compressed
                              /gt/<episode>/actions       (T, A) float32 env actions (absent
                                                          from imported videos: gt/ holds only
                                                          what a source really has)
                              /gt/<episode>/rewards       (T,)
                              /gt/<episode>/<key>         (T+1, ...) ground truth per frame
                              /gt/<episode>/reward_*      (T,) reward terms
                              /gt/<episode>/state/<key>   (T+1, ...) full env state per frame
                              /gt/<episode>/masks         (T+1, H, W) uint8 (optional)
    shards/shard-00000.json   sidecar (episodes, sha256 and size of the file, sha256 of each
                              episode's arrays, provenance): written just before the shard is
                              renamed into place; with it, marks the shard complete

Episodes are named by their global index (``000123``); attributes hold length, split, and the
env seed and policy (collected) or the source file and first frame (imported). Frames are what
models learn from; everything under ``gt/`` is for evaluation only. ``meta.json``'s
``ground_truth_keys`` lists what ``gt/`` holds per episode of an imported dataset
(:meth:`EpisodeReader.missing_ground_truth`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from latentplay.utils.io import atomic_path, sha256_file, write_json_atomic

FORMAT = "latentplay-rollouts"
FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")


class DatasetError(RuntimeError):
    """A dataset folder or shard that cannot be read as it should."""


class CorruptShardError(DatasetError):
    """A shard that is missing, truncated or fails its checksum. Names the file."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)


def episode_digest(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over an episode's arrays (name, dtype, shape, bytes, in name order): computed
    from memory when written, from the file when a shard fails its checksum, so the damaged
    episodes can be named."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _episode_arrays(ep: Episode) -> dict[str, np.ndarray]:
    out = {"frames": ep.frames, "gt/actions": ep.actions, "gt/rewards": ep.rewards}
    out = {k: v for k, v in out.items() if v is not None}  # imported: what the source has
    out.update({f"gt/{k}": v for k, v in {**ep.per_frame, **ep.per_step}.items()})
    out.update({f"gt/state/{k}": v for k, v in ep.state.items()})
    if ep.masks is not None:
        out["gt/masks"] = ep.masks
    return out


def stored_arrays(f: h5py.File, key: str) -> dict[str, np.ndarray]:
    out = {"frames": f["frames"][key][()]}
    if key not in f.get("gt", {}):  # an imported episode without ground truth
        return out
    f["gt"][key].visititems(
        lambda name, obj: (
            out.__setitem__(f"gt/{name}", obj[()]) if isinstance(obj, h5py.Dataset) else None
        )
    )
    return out


def episode_digests(path: Path, shard: dict[str, Any]) -> list[str] | None:
    """The per-episode sha256 of shard ``path`` as written: from its entry ``shard`` or, as
    meta.json leaves them out (its size stays small), from the shard's sidecar when that
    describes the same file (same sha256); None when neither has them."""
    if shard.get("episode_sha256") is not None:
        return shard["episode_sha256"]
    try:
        sidecar = json.loads(path.with_suffix(".json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return sidecar.get("episode_sha256") if sidecar.get("sha256") == shard["sha256"] else None


def damaged_episodes(path: Path, shard: dict[str, Any]) -> str:
    """Which episodes of a shard that failed its checksum are damaged, as a sentence."""
    keys = [episode_key(i) for i in shard["episode_index"]]
    digests = episode_digests(path, shard)
    try:
        f = h5py.File(path, "r")
    except OSError:
        return f"the file cannot be opened, so all its episodes {', '.join(keys)} are lost"
    bad = []
    with f:
        for i, key in enumerate(keys):
            try:
                arrays = stored_arrays(f, key)
            except Exception as e:  # h5py raises many kinds on damaged metadata
                bad.append(f"{key} (unreadable: {type(e).__name__})")
                continue
            if digests is not None and episode_digest(arrays) != digests[i]:
                bad.append(f"{key} (content changed)")
    if bad:
        return f"damaged episode(s): {', '.join(bad)}"
    if digests is None:
        return f"it holds episodes {', '.join(keys)} (no per-episode checksums to tell which)"
    return f"every episode ({', '.join(keys)}) reads intact: the damage is in HDF5 metadata"


def episode_key(index: int) -> str:
    return f"{index:06d}"


def shard_name(index: int) -> str:
    return f"shard-{index:05d}"


def split_of(episode: int, seed: int, fractions: tuple[float, float, float]) -> str:
    """Deterministic split of an episode: a hash of (seed, episode), not its position."""
    return _split_at(np.random.default_rng([seed, episode, 0x5EED]).random(), fractions)


def _split_at(u: float, fractions: tuple[float, float, float]) -> str:
    """The split a uniform draw ``u`` in [0, 1) falls in, by cumulative ``fractions``."""
    edges = np.cumsum(fractions)
    return SPLITS[int(np.searchsorted(edges, u, side="right").clip(0, 2))]


def split_of_name(name: str, seed: int, fractions: tuple[float, float, float]) -> str:
    """Deterministic split of an imported item (a video, a Minari episode) by a hash of
    (seed, its name): adding files to a folder moves no other file between splits."""
    digest = hashlib.sha256(f"{seed}|{name}".encode()).digest()
    return _split_at(int.from_bytes(digest[:8], "big") / 2**64, fractions)


def split_lists(shards: list[dict[str, Any]]) -> dict[str, list[int]]:
    """meta.json's ``splits``: the episode indices of each split, from the shards' sidecars."""
    splits: dict[str, list[int]] = {k: [] for k in SPLITS}
    for s in shards:
        for idx, sp in zip(s["episode_index"], s["splits"], strict=True):
            splits[sp].append(idx)
    return {k: sorted(v) for k, v in splits.items()}


@dataclass
class Episode:
    """One episode in memory (what a collection worker or an import hands to
    :class:`ShardWriter`). Collected episodes have every field; imported ones have frames,
    and actions and rewards only where the source has them."""

    index: int
    split: str
    frames: np.ndarray  # (T+1, H, W, 3) uint8
    seed: int | None = None  # env reset seed (collected)
    policy: str | None = None
    actions: np.ndarray | None = None  # (T, A) float32
    rewards: np.ndarray | None = None  # (T,)
    per_frame: dict[str, np.ndarray] = field(default_factory=dict)  # (T+1, ...) ground truth
    per_step: dict[str, np.ndarray] = field(default_factory=dict)  # (T, ...) reward terms
    state: dict[str, np.ndarray] = field(default_factory=dict)  # (T+1, ...) env state arrays
    masks: np.ndarray | None = None  # (T+1, H, W) uint8
    attrs: dict[str, Any] = field(default_factory=dict)  # more per-episode attributes (source)


class ShardWriter:
    """Writes episodes into ``<dir>/<name>.h5`` atomically, then its sidecar ``<name>.json``.

    Until :meth:`close` the data lives in a hidden temporary file; a crash leaves no visible
    shard. A shard counts as complete when its file and its sidecar (episode list, sha256,
    size) agree.
    """

    def __init__(
        self,
        directory: Path,
        index: int,
        compression: str | None = "gzip",
        compression_level: int | None = 1,
        chunk_frames: int | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.chunk_frames = chunk_frames  # None: one chunk per episode
        self.index = index
        self.path = self.directory / f"{shard_name(index)}.h5"
        self.sidecar = self.directory / f"{shard_name(index)}.json"
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        self._file = h5py.File(self._tmp, "w")
        self._file.attrs.update({"format": FORMAT, "format_version": FORMAT_VERSION})
        self._frames = self._file.create_group("frames")
        self._gt = self._file.create_group("gt")
        self.compression = compression
        self.compression_opts = compression_level if compression == "gzip" else None
        self.episodes: list[dict[str, Any]] = []

    def add(self, ep: Episode) -> None:
        key = episode_key(ep.index)
        t1 = ep.frames.shape[0]
        ds = self._frames.create_dataset(
            key,
            data=ep.frames,
            chunks=(min(t1, self.chunk_frames or t1), *ep.frames.shape[1:]),
            compression=self.compression,
            compression_opts=self.compression_opts,
        )
        attrs = {"seed": ep.seed, "length": t1 - 1, "split": ep.split, "policy": ep.policy}
        attrs = {k: v for k, v in {**attrs, **ep.attrs}.items() if v is not None}  # HDF5: no None
        ds.attrs.update(attrs)
        arrays = _episode_arrays(ep)
        self.episodes.append(
            {
                "index": ep.index,
                "length": t1 - 1,
                "split": ep.split,
                "sha256": episode_digest(arrays),
            }
        )
        if len(arrays) == 1:  # frames alone (imported videos): no gt/ group
            return
        g = self._gt.create_group(key)
        g.attrs.update(attrs)
        for name, arr in (("actions", ep.actions), ("rewards", ep.rewards)):
            if arr is not None:
                g.create_dataset(name, data=arr)
        for name, arr in {**ep.per_frame, **ep.per_step}.items():
            g.create_dataset(name, data=arr)
        sg = g.create_group("state")
        for name, arr in ep.state.items():
            sg.create_dataset(name, data=arr)
        if ep.masks is not None:
            g.create_dataset(
                "masks",
                data=ep.masks,
                chunks=ep.masks.shape,
                compression="gzip",
                compression_opts=1,
            )

    def close(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Finish the shard: write its sidecar (with ``extra``, e.g. provenance), then rename
        the shard into place. A visible shard file therefore always has its sidecar; a sidecar
        without its shard (killed in between) is ignored. Returns the sidecar."""
        self._file.close()
        info = {
            "file": f"shards/{self.path.name}",
            "episodes": len(self.episodes),
            "episode_index": [e["index"] for e in self.episodes],
            "lengths": [e["length"] for e in self.episodes],
            "splits": [e["split"] for e in self.episodes],
            "episode_sha256": [e["sha256"] for e in self.episodes],
            "sha256": sha256_file(self._tmp),
            "bytes": self._tmp.stat().st_size,
            **(extra or {}),
        }
        write_json_atomic(self.sidecar, info)
        self._atomic.__exit__(None, None, None)  # fsync + rename
        return info

    def abort(self) -> None:
        try:
            self._file.close()
        finally:
            self._atomic.__exit__(RuntimeError, RuntimeError("aborted"), None)


def read_sidecar(path: Path) -> dict[str, Any] | None:
    """The sidecar of a complete shard whose file has its size and checksum; else None."""
    try:
        info = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    h5 = path.with_suffix(".h5")
    if not h5.is_file() or h5.stat().st_size != info.get("bytes"):
        return None
    if sha256_file(h5) != info.get("sha256"):
        return None
    return info


def verify_shard(root: Path, shard: dict[str, Any]) -> Path:
    """Check a shard listed in meta.json exists, has its size and checksum; return its path."""
    path = root / shard["file"]
    if not path.is_file():
        raise CorruptShardError(path, "listed in meta.json but missing")
    size = path.stat().st_size
    if size != shard["bytes"]:
        raise CorruptShardError(
            path,
            f"truncated or changed: {size} bytes, expected {shard['bytes']}; "
            + damaged_episodes(path, shard),
        )
    digest = sha256_file(path)
    if digest != shard["sha256"]:
        raise CorruptShardError(
            path,
            f"checksum mismatch: sha256 {digest}, expected {shard['sha256']}; "
            + damaged_episodes(path, shard),
        )
    return path


def check_resume(out: Path, identity: dict[str, Any], resume: bool) -> None:
    """Before writing into dataset folder ``out``: without ``resume``, a folder that already
    holds a dataset is an error (nothing is overwritten by accident); with it, every key of
    ``identity`` must match the stored meta.json's, else an error names what differs."""
    meta_path = out / "meta.json"
    has_shards = any((out / "shards").glob("shard-*.h5"))
    if not meta_path.is_file():
        if has_shards:
            raise FileExistsError(
                f"{out}/shards holds shards but no meta.json: which run made them cannot be "
                "told; choose another out"
            )
        return
    if not resume:
        raise FileExistsError(
            f"out={str(out)!r} already holds a dataset; pass resume=true to continue it, or "
            "choose another out"
        )
    try:
        old = json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"cannot resume: {meta_path} is not valid JSON ({e})") from e

    def norm(x: Any) -> Any:
        return json.loads(json.dumps(x, default=str, sort_keys=True))

    diff = {k: (old.get(k), v) for k, v in identity.items() if norm(old.get(k)) != norm(v)}
    if diff:
        lines = ", ".join(f"{k}: stored {a!r} vs now {b!r}" for k, (a, b) in diff.items())
        raise ValueError(f"cannot resume {out}: the run differs from the stored one ({lines})")


def load_meta(root: str | Path) -> dict[str, Any]:
    root = Path(root)
    path = root / "meta.json"
    if not path.is_file():
        raise DatasetError(f"{root} is not a latentplay dataset: no meta.json (collect one first)")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: not valid JSON ({e})") from e
    if meta.get("format") != FORMAT:
        raise DatasetError(f"{path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise DatasetError(
            f"{path}: format_version {meta['format_version']} is newer than this latentplay "
            f"reads ({FORMAT_VERSION}); upgrade latentplay"
        )
    return meta


def imported_kind(meta: dict[str, Any]) -> str | None:
    """What a dataset's meta.json says it was imported from (``videos``, ``minari``); None
    for a dataset collected from an env."""
    return (meta.get("source") or {}).get("kind")


def open_shard(path: Path) -> h5py.File:
    """Open a shard read-only; a truncated or non-HDF5 file raises CorruptShardError."""
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise CorruptShardError(path, f"cannot be opened as HDF5 ({e})") from e


class EpisodeReader:
    """Random access to the episodes of a dataset folder (frames, and ground truth on request).

    Checksums of every shard are verified when the reader is made (``verify=True``); file
    handles are opened lazily and per process, so a reader can go to DataLoader workers.
    """

    def __init__(self, root: str | Path, verify: bool = True) -> None:
        self.root = Path(root)
        self.meta = load_meta(self.root)
        self._paths: list[Path] = []
        self.episodes: list[tuple[int, str, int, str]] = []  # (shard, key, length, split)
        for s, shard in enumerate(self.meta["shards"]):
            path = verify_shard(self.root, shard) if verify else self.root / shard["file"]
            self._paths.append(path)
            for idx, length, split in zip(
                shard["episode_index"], shard["lengths"], shard["splits"], strict=True
            ):
                self.episodes.append((s, episode_key(idx), int(length), split))
        self._files: dict[int, h5py.File] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.episodes)

    def _file(self, shard: int) -> h5py.File:
        if self._pid != os.getpid():  # forked into a worker: never share HDF5 handles
            self._files, self._pid = {}, os.getpid()
        if shard not in self._files:
            self._files[shard] = open_shard(self._paths[shard])
        return self._files[shard]

    def indices(self, split: str | None = None) -> list[int]:
        if split is not None and split not in SPLITS:
            raise ValueError(f"split={split!r}; expected one of {list(SPLITS)} or None")
        return [i for i, e in enumerate(self.episodes) if split is None or e[3] == split]

    def frames(self, i: int, sl: slice | np.ndarray = slice(None)) -> np.ndarray:
        """Frames of episode i, ``(T+1, H, W, 3) uint8`` (or the selected ones)."""
        shard, key, *_ = self.episodes[i]
        try:
            return self._file(shard)["frames"][key][sl]
        except (OSError, KeyError) as e:
            raise CorruptShardError(self._paths[shard], f"episode {key}: {e}") from e

    @property
    def imported(self) -> str | None:
        """What an imported dataset came from (``videos``, ``minari``); None when collected."""
        return imported_kind(self.meta)

    def missing_ground_truth(self, keys: Any) -> list[str]:
        """Which of ``keys`` the episodes' ``gt/`` lacks: none for a collected dataset (its env
        recorded everything), all but what its source had for an imported one."""
        if self.imported is None:
            return []
        return sorted(set(keys) - set(self.meta.get("ground_truth_keys", [])))

    def ground_truth(self, i: int) -> dict[str, Any]:
        """Everything under ``gt/<episode>``, loaded: evaluation only, never training input.
        An imported episode without any holds only its ``attrs``."""
        shard, key, *_ = self.episodes[i]
        try:
            f = self._file(shard)
            if self.imported is not None and key not in f["gt"]:
                return {"state": {}, "attrs": dict(f["frames"][key].attrs)}
            g = f["gt"][key]
            out: dict[str, Any] = {k: g[k][()] for k in g if k != "state"}
            out["state"] = {k: v[()] for k, v in g["state"].items()} if "state" in g else {}
            out["attrs"] = dict(g.attrs)
        except (OSError, KeyError) as e:
            raise CorruptShardError(self._paths[shard], f"episode {key} ground truth: {e}") from e
        return out

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_files"] = {}
        return state
