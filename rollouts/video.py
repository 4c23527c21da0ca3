"""Preview videos and contact sheets for eyes (the data stay raw uint8 arrays)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from latentplay.utils.io import atomic_path


def tile(frames: Sequence[np.ndarray], cols: int | None = None, pad: int = 2) -> np.ndarray:
    """Episodes side by side: ``[(T, H, W, 3)] * N`` -> ``(T, rows*(H+pad), cols*(W+pad), 3)``.

    Shorter episodes hold their last frame; empty cells are black.
    """
    if not frames:
        raise ValueError("tile() needs at least one episode")
    n = len(frames)
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    t = max(len(f) for f in frames)
    h, w = frames[0].shape[1:3]
    grid = np.zeros((t, rows * (h + pad) + pad, cols * (w + pad) + pad, 3), np.uint8)
    for k, ep in enumerate(frames):
        r, c = divmod(k, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        idx = np.minimum(np.arange(t), len(ep) - 1)
        grid[:, y : y + h, x : x + w] = ep[idx]
    return grid


def upscale(frames: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling of ``(..., H, W, 3)`` frames (crisp pixels for viewing)."""
    if factor <= 1:
        return frames
    return frames.repeat(factor, axis=-3).repeat(factor, axis=-2)


def draw_keypoints(frames: np.ndarray, points: np.ndarray, scale: int = 4) -> np.ndarray:
    """``(T, H, W, 3) uint8`` frames and ``(T, K, 2)`` pixel points -> frames ``scale`` times
    larger with each keypoint a coloured dot (one colour per keypoint)."""
    import cv2

    k = points.shape[1]
    hues = (np.arange(k) * 180 // max(k, 1)).astype(np.uint8)
    colours = cv2.cvtColor(
        np.stack([hues, np.full(k, 255), np.full(k, 255)], -1)[None].astype(np.uint8),
        cv2.COLOR_HSV2RGB,
    )[0]
    out = []
    for f, pts in zip(frames, points, strict=True):
        big = np.ascontiguousarray(upscale(f, scale))
        for c, (x, y) in zip(colours, pts, strict=True):
            centre = (round((x + 0.5) * scale - 0.5), round((y + 0.5) * scale - 0.5))
            cv2.circle(big, centre, max(2, scale // 2), tuple(int(v) for v in c), -1)
        out.append(big)
    return np.stack(out)


def write_video(frames: np.ndarray, path: str | Path, fps: float, scale: int = 1) -> Path:
    """Write ``(T, H, W, 3) uint8`` frames to ``.mp4`` (H.264) or ``.gif``, atomically."""
    from moviepy import ImageSequenceClip

    path = Path(path)
    if path.suffix not in (".mp4", ".gif"):
        raise ValueError(f"{path}: expected a .mp4 or .gif file name")
    frames = upscale(np.asarray(frames, np.uint8), scale)
    h, w = frames.shape[1:3]
    if path.suffix == ".mp4" and (h % 2 or w % 2):  # yuv420p needs even sizes
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
    clip = ImageSequenceClip(list(frames), fps=fps)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        if path.suffix == ".mp4":
            tmp_named = tmp.with_suffix(".mp4")  # ffmpeg picks the container from the suffix
            clip.write_videofile(
                str(tmp_named),
                codec="libx264",
                audio=False,
                logger=None,
                ffmpeg_params=["-pix_fmt", "yuv420p"],
            )
            tmp_named.replace(tmp)
        else:
            tmp_named = tmp.with_suffix(".gif")
            clip.write_gif(str(tmp_named), fps=fps, logger=None)
            tmp_named.replace(tmp)
    clip.close()
    return path


def contact_sheet(
    frames: Sequence[np.ndarray], path: str | Path, every: int = 5, scale: int = 2
) -> Path:
    """A PNG: one row per episode, every ``every``-th frame across."""
    from PIL import Image

    rows = [np.concatenate(list(ep[::every]), axis=1) for ep in frames]
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 2), (0, width - r.shape[1]), (0, 0))) for r in rows]
    sheet = upscale(np.concatenate(rows, axis=0), scale)
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(sheet).save(tmp, format="PNG")
    return path


def write_preview(
    root: str | Path, episodes: int = 16, scale: int = 4, fmt: str = "mp4", max_frames: int = 200
) -> list[Path]:
    """Grid video of the first ``episodes`` episodes (their first ``max_frames`` frames: an
    imported video may be long), and a contact sheet, in the dataset folder."""
    from latentplay.rollouts.format import EpisodeReader

    if fmt not in ("mp4", "gif"):
        raise ValueError(f"preview format {fmt!r}; expected 'mp4' or 'gif'")
    reader = EpisodeReader(root, verify=False)
    try:
        n = min(episodes, len(reader))
        if n == 0:
            return []
        eps = [reader.frames(i, slice(0, max_frames)) for i in range(n)]
        fps = reader.meta.get("fps") or 20
    finally:
        reader.close()
    root = Path(root)
    video = write_video(tile(eps), root / f"preview.{fmt}", fps=fps, scale=scale)
    sheet = contact_sheet(eps[: min(n, 8)], root / "preview.png", every=5, scale=2)
    return [video, sheet]


def preview_from_config(root: str | Path, preview: dict[str, Any]) -> list[Path]:
    """:func:`write_preview` with a script's ``preview:`` settings (``episodes`` 0: none)."""
    if preview["episodes"] <= 0:
        return []
    return write_preview(root, preview["episodes"], preview["scale"], preview["format"])
