"""``ClipDataset``: fixed-length clips of frames for training world models (torch Dataset)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from latentplay.rollouts.format import EpisodeReader


class ClipDataset(Dataset):
    """Clips of ``clip_length`` frames from one split of a collected dataset.

    A clip starting at frame ``s`` holds frames ``s, s + frame_skip, ..., s + (clip_length - 1)
    * frame_skip``; clip starts are ``stride`` frames apart. Items are ``frames: (T, 3, H, W)
    uint8`` tensors: frames only, as world models must learn without labels. Ground truth comes
    only when asked for (``with_gt=True``, for evaluation): items are then ``(frames, gt)`` with
    ``gt`` holding every per-frame array at the clip's frames, and ``actions`` /
    ``rewards`` / ``reward_*`` of the steps between consecutive clip frames as
    ``(T - 1, frame_skip, ...)``. ``cache=True`` keeps the split's frames in memory.
    """

    def __init__(
        self,
        root: str | Path,
        split: str | None = "train",
        clip_length: int = 8,
        stride: int = 1,
        frame_skip: int = 1,
        with_gt: bool = False,
        verify: bool = True,
        cache: bool = False,
    ) -> None:
        for name, v in (
            ("clip_length", clip_length),
            ("stride", stride),
            ("frame_skip", frame_skip),
        ):
            if not isinstance(v, int | np.integer) or v < 1:
                raise ValueError(f"{name}={v!r}; expected a positive integer")
        self.reader = EpisodeReader(root, verify=verify)
        if with_gt and self.reader.missing_ground_truth(["actions"]):
            raise ValueError(
                f"{root} holds imported {self.reader.imported} without recorded actions; "
                "with_gt=True needs a dataset with ground truth (a collected one)"
            )
        self.split, self.clip_length = split, clip_length
        self.stride, self.frame_skip, self.with_gt = stride, frame_skip, with_gt
        span = (clip_length - 1) * frame_skip + 1
        index = []
        for ep in self.reader.indices(split):
            n_frames = self.reader.episodes[ep][2] + 1
            index.extend((ep, s) for s in range(0, n_frames - span + 1, stride))
        if not index:
            raise ValueError(
                f"{root}: no clip of {clip_length} frames with frame_skip={frame_skip} fits in "
                f"split {split!r} ({len(self.reader.indices(split))} episodes)"
            )
        self.index = np.asarray(index, np.int64)
        # cache=True: decompress every episode of the split once and keep it (training speed).
        self._cache: dict[int, np.ndarray] = {}
        if cache:
            for ep in np.unique(self.index[:, 0]):
                self._cache[int(ep)] = self.reader.frames(int(ep))

    def __len__(self) -> int:
        return len(self.index)

    def spread(self, n: int) -> list[int]:
        """Indices of ``n`` clips (at most all) spread evenly over the dataset, the first and
        the last included: the same every time (calibrations and statistics of resumable
        runs draw nothing at random)."""
        count = min(len(self), n)
        return np.linspace(0, len(self) - 1, count).round().astype(int).tolist()

    def episode_frames(self, ep: int) -> np.ndarray:
        """Every frame of episode ``ep`` ``(T, H, W, 3)`` uint8 (from the cache when kept)."""
        return self._cache[ep] if ep in self._cache else self.reader.frames(ep)

    def frame_ids(self, start: int) -> np.ndarray:
        return start + self.frame_skip * np.arange(self.clip_length)

    def __getitem__(self, i: int) -> torch.Tensor | tuple[torch.Tensor, dict[str, Any]]:
        ep, start = (int(x) for x in self.index[i])
        ids = self.frame_ids(start)
        sl = slice(ids[0], ids[-1] + 1, self.frame_skip)
        frames = self._cache[ep][sl] if ep in self._cache else self.reader.frames(ep, sl)
        clip = torch.from_numpy(np.ascontiguousarray(frames.transpose(0, 3, 1, 2)))
        if not self.with_gt:
            return clip
        return clip, self._gt(ep, ids)

    def _gt(self, ep: int, ids: np.ndarray) -> dict[str, Any]:
        gt = self.reader.ground_truth(ep)
        n_steps = len(gt["actions"])
        out: dict[str, Any] = {"episode": ep, "frame_ids": ids}
        steps = ids[:-1, None] + np.arange(self.frame_skip)  # (T-1, frame_skip)
        for k, v in gt.items():
            if k == "attrs":
                continue
            if k == "state":
                out["state"] = {sk: sv[ids] for sk, sv in v.items()}
            elif len(v) == n_steps:  # per step: actions, rewards, reward terms
                out[k] = v[steps]
            else:  # per frame
                out[k] = v[ids]
        return out


class EpisodeCache:
    """Per-frame tensors computed once for every episode of a :class:`ClipDataset` (``fn``:
    an episode's frames ``(T, H, W, 3)`` uint8 -> ``(T, ...)``, e.g. a frozen encoder's
    output), and clips of them drawn as the dataset draws its clips (same starts, length and
    frame skip). :meth:`draw` uses torch's generator, which the trainer checkpoints, so a
    resumed run draws what the uninterrupted one would. Training then costs no pass of the
    frozen part over images."""

    def __init__(self, dataset: ClipDataset, fn: Any) -> None:
        self.per_episode: dict[int, torch.Tensor] = {}
        for ep in np.unique(dataset.index[:, 0]).tolist():
            frames = dataset.episode_frames(ep)
            out = fn(frames)
            if len(out) != len(frames):
                raise ValueError(
                    f"episode {ep}: the cached function gave {len(out)} rows for "
                    f"{len(frames)} frames; expected one per frame"
                )
            self.per_episode[ep] = out
        self.index = torch.from_numpy(dataset.index)
        self.offsets = torch.from_numpy(dataset.frame_ids(0))

    @classmethod
    def of_frames(
        cls, dataset: ClipDataset, encode: Any, device: torch.device, chunk: int = 256
    ) -> EpisodeCache:
        """The cache of a frozen ``encode``: frames ``(N, 3, H, W)`` uint8 on ``device`` ->
        ``(N, ...)``, run in chunks of ``chunk`` frames without gradients and in fp32 even
        inside the trainer's bf16 autocast (what it makes are training targets)."""

        @torch.no_grad()
        def fn(frames: np.ndarray) -> torch.Tensor:
            x = torch.from_numpy(frames).permute(0, 3, 1, 2)
            with torch.autocast(device.type, enabled=False):
                parts = [encode(x[i : i + chunk].to(device)) for i in range(0, len(x), chunk)]
            return torch.cat(parts).float()

        return cls(dataset, fn)

    def draw(self, batch: int) -> torch.Tensor:
        """``batch`` random clips: ``(batch, 2)`` rows of (episode, first frame)."""
        return self.index[torch.randint(len(self.index), (batch,))]

    def clips(self, picks: torch.Tensor) -> torch.Tensor:
        """The cached rows of clips ``picks`` (from :meth:`draw`): ``(batch, T, ...)``, in the
        cache's dtype also inside the trainer's autocast (CPU autocast refuses to stack
        float16 rows)."""
        rows = [self.per_episode[ep][start + self.offsets] for ep, start in picks.tolist()]
        with torch.autocast(rows[0].device.type, enabled=False):
            return torch.stack(rows)
