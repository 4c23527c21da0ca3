"""A known-answer toy dataset: a sprite moved by true global and local actions.

A square sprite on a fixed striped background is translated each step by a true global action
(integer pixel shift in [-max_shift, max_shift]^2, reflected at the borders) and takes the
colour of the true local action of the step (one of ``num_local``). A model
that learns from these frames alone should recover both: its global shifts map linearly onto
the true shifts, and its local actions match the true ones up to relabelling. Written in the
dataset format of :mod:`latentplay.rollouts.format` (ground truth under ``gt/``: ``shift``
(T, 2) px, ``local`` (T,), ``center`` (T+1, 2) px).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from latentplay.rollouts.format import FORMAT, FORMAT_VERSION, Episode, ShardWriter, split_of
from latentplay.utils.io import provenance, write_json_atomic

LIGHTS = np.array([[230, 40, 40], [40, 200, 60], [50, 90, 240], [240, 220, 40]], np.uint8)


def _background(size: int) -> np.ndarray:
    y, x = np.mgrid[:size, :size]
    bg = np.empty((size, size, 3), np.uint8)
    bg[..., 0] = 90 + 40 * ((x // 4) % 2)
    bg[..., 1] = 110 + 30 * ((y // 4) % 2)
    bg[..., 2] = 120
    return bg


def _draw(bg: np.ndarray, center: np.ndarray, local: int, sprite: int) -> np.ndarray:
    img = bg.copy()
    r = sprite // 2
    cx, cy = int(center[0]), int(center[1])
    img[cy - r : cy + r, cx - r : cx + r] = LIGHTS[local]  # the local action sets the colour
    img[cy - 1 : cy + 1, cx - 1 : cx + 1] = (250, 250, 250)  # a white core
    return img


def make_toy_dataset(
    root: str | Path,
    episodes: int = 64,
    steps: int = 16,
    size: int = 32,
    sprite: int = 8,
    max_shift: int = 2,
    num_local: int = 3,
    seed: int = 0,
) -> Path:
    if not 1 <= num_local <= len(LIGHTS):
        raise ValueError(f"num_local={num_local}; expected 1..{len(LIGHTS)}")
    root = Path(root)
    (root / "shards").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    bg = _background(size)
    lo, hi = sprite // 2, size - sprite // 2
    writer = ShardWriter(root / "shards", 0)
    fractions = (0.7, 0.15, 0.15)
    for e in range(episodes):
        center = rng.integers(lo, hi, 2).astype(np.int64)
        local = int(rng.integers(num_local))
        frames, centers, shifts, locals_ = (
            [_draw(bg, center, local, sprite)],
            [center.copy()],
            [],
            [],
        )
        for _ in range(steps):
            shift = rng.integers(-max_shift, max_shift + 1, 2)
            new = center + shift
            for d in range(2):  # reflect at the borders
                if not lo <= new[d] < hi:
                    shift[d] = -shift[d]
                    new[d] = center[d] + shift[d]
            center, local = new, int(rng.integers(num_local))
            frames.append(_draw(bg, center, local, sprite))
            centers.append(center.copy())
            shifts.append(shift.astype(np.float64))
            locals_.append(local)
        writer.add(
            Episode(
                index=e,
                seed=seed,
                split=split_of(e, seed, fractions),
                policy="toy",
                frames=np.stack(frames),
                actions=np.concatenate(
                    [np.stack(shifts), np.array(locals_)[:, None]], axis=1
                ).astype(np.float32),
                rewards=np.zeros(steps),
                per_frame={"center": np.stack(centers).astype(np.float64)},
                per_step={"shift": np.stack(shifts), "local": np.array(locals_)},
                state={},
            )
        )
    shard = writer.close()
    splits = {
        s: [i for i, sp in zip(shard["episode_index"], shard["splits"], strict=True) if sp == s]
        for s in ("train", "val", "test")
    }
    write_json_atomic(
        root / "meta.json",
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "env_id": "toy/sprite",
            "env_kwargs": {
                "size": size,
                "sprite": sprite,
                "max_shift": max_shift,
                "num_local": num_local,
            },
            "seed": seed,
            "steps": steps,
            "episodes": episodes,
            "complete": True,
            "width": size,
            "height": size,
            "fps": 10,
            "camera": "fixed",
            **provenance(),
            "shards": [shard],
            "splits": splits,
        },
    )
    return root
