"""Import speed: frames/s from a folder of mp4 videos to a 64x64 dataset, beside decoding
alone (ffmpeg to RGB) and decoding with the resize, in the same run."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def make_videos(folder: Path, videos: int, frames: int, size: int, seed: int = 0) -> list[Path]:
    """``videos`` mp4 (H.264) files of ``frames`` frames at ``size`` x ``size``: Push-v0
    episodes under random actions, rendered at that size (what a user's camera might give)."""
    import gymnasium as gym

    import latentplay.envs  # noqa: F401
    from latentplay.rollouts.video import write_video

    env = gym.make("latentplay/Push-v0", width=size, height=size, time_limit=None)
    rng = np.random.default_rng(seed)
    paths = []
    try:
        for v in range(videos):
            obs, _ = env.reset(seed=seed + v)
            out = [obs]
            for _ in range(frames - 1):
                obs, *_ = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
                out.append(obs)
            paths.append(write_video(np.stack(out), folder / f"video{v:03d}.mp4", fps=20))
    finally:
        env.close()
    return paths


def bench_import(
    videos: int = 16, frames: int = 200, source_size: int = 256, size: int = 64, repeats: int = 3
) -> list[dict[str, Any]]:
    """Median frames/s over ``repeats`` runs of: ffmpeg decoding alone, decoding and the
    resize to ``size``, and the whole import (shards, checksums, meta.json)."""
    from latentplay.rollouts.importing import ImportSpec, import_dataset
    from latentplay.rollouts.sources import FrameTransform, list_items, read_item

    with tempfile.TemporaryDirectory(prefix="lp-bench-import-") as tmp:
        src = Path(tmp) / "videos"
        make_videos(src, videos, frames, source_size)
        items = list_items(src)
        total = videos * frames

        def decode(transform: Any) -> float:
            t0 = time.perf_counter()
            for it in items:
                read_item(it, transform)
            return total / (time.perf_counter() - t0)

        def whole(r: int) -> float:
            spec = ImportSpec(str(src), size=size)
            t0 = time.perf_counter()
            import_dataset(spec, Path(tmp) / f"ds{r}", progress=False)
            return total / (time.perf_counter() - t0)

        identity = FrameTransform(source_size)  # already that size: passes untouched
        runs = {
            f"ffmpeg decode only ({source_size}x{source_size} H.264 -> RGB)": [
                decode(identity) for _ in range(repeats)
            ],
            f"decode + centre crop and resize to {size}x{size}": [
                decode(FrameTransform(size)) for _ in range(repeats)
            ],
            "scripts/import.py: decode, resize, gzip shards, checksums, meta.json": [
                whole(r) for r in range(repeats)
            ],
        }
    anchor = statistics.median(next(iter(runs.values())))
    return [
        {
            "name": name,
            "frames_per_s": statistics.median(v),
            "min": min(v),
            "max": max(v),
            "x_decode": statistics.median(v) / anchor,
            "videos": f"{videos} x {frames} frames",
        }
        for name, v in runs.items()
    ]
