"""Pokes on imported videos, where no simulator can branch a scene.

The model is driven by the motion it parses from real test clips (a sparse-flow model: the
clip's own flow at its moving pixels; a model with learned actions: the actions it infers)
from the clip's first frame, and each generated frame is compared with the real one, beside
copying the first frame. The clips with the most motion are used: a clip where nothing moves
says nothing about control.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentplay.evaluation import metrics as M
from latentplay.evaluation.report import side_by_side_video
from latentplay.rollouts.format import EpisodeReader
from latentplay.utils.frames import to_numpy_frames, to_tensor_frames
from latentplay.world_models.checkpoint import check_frames_fit
from latentplay.world_models.protocol import WorldModel, seeded_sampling

DRIVE = "motion parsed from the real clip (imported videos: no simulator to branch)"


def moving_clips(reader: EpisodeReader, steps: int, n: int) -> list[np.ndarray]:
    """Up to ``n`` clips of ``steps + 1`` frames from the test episodes, those whose last frame
    differs most from their first, most motion first."""
    clips = [
        frames[s : s + steps + 1]
        for frames in (reader.frames(ep) for ep in reader.indices("test"))
        for s in range(0, len(frames) - steps, steps)
    ]
    if not clips:
        raise ValueError(f"{reader.root}: no test clip of {steps + 1} frames to poke the model on")
    motion = [np.abs(c[-1].astype(np.int16) - c[0]).mean() for c in clips]
    return [clips[i] for i in np.argsort(motion, kind="stable")[::-1][:n]]


@torch.no_grad()
def video_pokes(
    model: WorldModel,
    data: str | Path,
    n_clips: int = 30,
    steps: int = 6,
    device: str | torch.device = "cpu",
    seed: int = 1000,
    batch: int = 16,
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Scores (PSNR per step of the model and of copying the first frame) and (clips
    ``(N, steps + 1, H, W, 3)``, most motion first; predictions ``(N, steps, H, W, 3)``) uint8
    for videos."""
    reader = EpisodeReader(data)
    try:
        check_frames_fit(model, reader.meta, data)
        clips = np.stack(moving_clips(reader, steps, n_clips))
    finally:
        reader.close()
    model.eval()
    with seeded_sampling(model, seed, device):
        pred = np.concatenate(
            [
                to_numpy_frames(model.rollout(x[:, :1], model.infer_actions(x)))
                for x in (
                    to_tensor_frames(clips[i : i + batch], device)
                    for i in range(0, len(clips), batch)
                )
            ]
        )
    real = clips[:, 1:].transpose(0, 1, 4, 2, 3) / 255.0
    copy = np.repeat(clips[:, :1], steps, axis=1).transpose(0, 1, 4, 2, 3) / 255.0
    model_psnr = np.minimum(M.psnr(pred.transpose(0, 1, 4, 2, 3) / 255.0, real), M.PSNR_CAP)
    copy_psnr = np.minimum(M.psnr(copy, real), M.PSNR_CAP)
    results = {
        "drive": DRIVE,
        "eval/poke/steps": steps,
        "eval/videos/clips": len(clips),
        "eval/videos/psnr": float(model_psnr.mean()),
        "eval/videos/psnr_copy": float(copy_psnr.mean()),
        "eval/videos/psnr_last": float(model_psnr[:, -1].mean()),
        "eval/videos/psnr_copy_last": float(copy_psnr[:, -1].mean()),
    }
    return results, clips, pred


def write_video_pokes(out: Path, clips: np.ndarray, pred: np.ndarray, n: int = 3) -> list[Path]:
    """``out/poke.mp4``, ``poke_2.mp4``, ...: the first ``n`` clips (:func:`video_pokes` gives
    them most motion first), real | model | difference."""
    return [
        side_by_side_video(
            clips[i, 1:],
            {"model": pred[i]},
            out / ("poke.mp4" if i == 0 else f"poke_{i + 1}.mp4"),
            fps=4,
        )
        for i in range(min(n, len(clips)))
    ]
