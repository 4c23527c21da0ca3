"""A video where the learned actions drive the model from one real frame.

One cell per action, side by side: each local action with no global shift, then global shifts
left / right / up / down (at the model's typical shift size) under the most used local action.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from latentplay.rollouts.format import EpisodeReader
from latentplay.rollouts.video import tile, upscale, write_video
from latentplay.utils.frames import to_float_frames, to_numpy_frames, to_tensor_frames
from latentplay.world_models.protocol import Actions, LocalActionUsage, WorldModel

DIRECTIONS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}


def _label(frames: np.ndarray, text: str) -> np.ndarray:
    import cv2

    out = frames.copy()
    for f in out:
        cv2.putText(f, text, (2, 10), cv2.FONT_HERSHEY_PLAIN, 0.8, (255, 255, 255), 1, cv2.LINE_AA)
    return out


@torch.no_grad()
def action_video(
    model: WorldModel,
    data: str | Path,
    path: str | Path,
    steps: int = 10,
    episode: int | None = None,
    scale: int = 3,
    fps: float = 5,
) -> Path:
    """Write the grid video; returns its path. ``episode``: a test episode (default the first)."""
    reader = EpisodeReader(data, verify=False)
    ep = reader.indices("test")[0] if episode is None else episode
    frame = to_tensor_frames(reader.frames(ep, slice(0, 1)))[None]
    reader.close()
    spec = model.action_spec
    usage = model.local_action_usage() if isinstance(model, LocalActionUsage) else None
    common = int(usage.argmax()) if usage is not None else 0
    cells: list[tuple[str, Actions]] = []
    for k in range(spec.discrete):
        cells.append((f"local {k}", Actions(torch.zeros(1, steps, 2), torch.full((1, steps), k))))
    for name, (dx, dy) in DIRECTIONS.items():
        shift = torch.tensor([dx, dy]) * spec.continuous_bound
        cells.append(
            (name, Actions(shift.expand(1, steps, 2).clone(), torch.full((1, steps), common)))
        )
    model.eval()
    videos = []
    for name, acts in cells:
        frames = model.rollout(frame, acts)[0]  # (steps, 3, H, W)
        seq = torch.cat([to_float_frames(frame[0]), frames], dim=0)
        videos.append(_label(upscale(to_numpy_frames(seq), scale), name))
    return write_video(tile(videos, cols=4), path, fps=fps)
