"""GLASS's training: the builder that ``configs/model/glass.yaml`` names, the objective with
its schedules, the calibration before checkpoints, and sample videos."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from latentplay.rollouts.dataset import ClipDataset
from latentplay.rollouts.video import tile, write_video
from latentplay.utils.frames import to_numpy_frames
from latentplay.world_models import distributed
from latentplay.world_models.glass.losses import LossWeights, glass_losses
from latentplay.world_models.glass.model import Glass
from latentplay.world_models.train import TrainingRun, frame_size


@dataclass(frozen=True)
class GlassSchedule:
    """GMA-only warm-up; sequence length ramps up; teacher-forced steps ramp down (GLASS)."""

    gma_warmup_steps: int = 300
    seq_len_start: int = 6
    seq_len_end: int = 8
    seq_len_ramp_steps: int = 2000
    teacher_forced_start: int = 5
    teacher_forced_end: int = 1
    teacher_forced_ramp_steps: int = 2000
    motion_prior_steps: int = 1500  # the mask's motion prior fades linearly (not GLASS) ...
    motion_prior_floor: float = 0.2  # ... to this weight, so the mask cannot collapse later

    def __post_init__(self) -> None:
        if not 2 <= self.seq_len_start <= self.seq_len_end:
            raise ValueError(
                f"seq_len_start={self.seq_len_start}, seq_len_end={self.seq_len_end}; "
                "expected 2 <= start <= end"
            )

    @staticmethod
    def _ramp(step: int, start: int, end: int, steps: int) -> int:
        if steps <= 0:
            return end
        frac = min(max(step / steps, 0.0), 1.0)
        return round(start + (end - start) * frac)

    def motion_prior(self, step: int) -> float:
        if self.motion_prior_steps <= 0:
            return self.motion_prior_floor
        return max(self.motion_prior_floor, 1.0 - step / self.motion_prior_steps)

    def seq_len(self, step: int) -> int:
        return self._ramp(step, self.seq_len_start, self.seq_len_end, self.seq_len_ramp_steps)

    def teacher_forced(self, step: int) -> int:
        return self._ramp(
            step, self.teacher_forced_start, self.teacher_forced_end, self.teacher_forced_ramp_steps
        )


class GlassObjective:
    """``(model, clip, step) -> (loss, terms)`` for :func:`latentplay.world_models.train.train`."""

    def __init__(
        self, schedule: GlassSchedule | None = None, weights: LossWeights | None = None
    ) -> None:
        self.schedule = schedule or GlassSchedule()
        self.weights = weights or LossWeights()

    def __call__(
        self, model: Glass, clip: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        s = self.schedule
        clip = clip[:, : s.seq_len(step)]
        gma_only = step < s.gma_warmup_steps
        out = model(clip, teacher_forced_steps=s.teacher_forced(step), with_lma=not gma_only)
        loss, terms = glass_losses(
            out, self.weights, gma_only=gma_only, motion_prior_scale=s.motion_prior(step)
        )
        with torch.no_grad():  # planners sample global shifts at this scale
            std = out["fg_shift"].detach().flatten(0, 1).std(dim=0)
            std = distributed.mean_(std)  # under DDP: the ranks' mean, the same on every rank
            model.shift_std.mul_(0.99).add_(0.01 * std)
        return loss, terms


class GlassCalibration:
    """Before every checkpoint: :meth:`Glass.calibrate` on ``clips`` clips spread evenly over
    the training set (the same clips every time, no random draws: resumed runs stay exact)."""

    def __init__(self, dataset: ClipDataset, clips: int = 256, batch_size: int = 16) -> None:
        self.dataset, self.batch_size = dataset, batch_size
        self.indices = dataset.spread(clips)

    def __call__(self, model: Glass) -> None:
        device = next(model.parameters()).device
        b = self.batch_size
        model.calibrate(
            torch.stack([self.dataset[i] for i in self.indices[j : j + b]]).to(device)
            for j in range(0, len(self.indices), b)
        )


def glass_samples(model: Glass, clip: torch.Tensor, path: Path, fps: float = 5) -> None:
    """Video, one row per clip: real | teacher-forced | rollout from the first frame under the
    inferred actions | foreground mask."""
    real = clip[:, 1:]
    tf = model.teacher_forced(clip)
    roll = model.rollout(clip[:, :1], model.infer_actions(clip))
    mask = model.masks(clip)[:, 1:].expand(-1, -1, 3, -1, -1)
    rows = torch.cat([real, tf, roll, mask], dim=-1)  # side by side along the width
    write_video(tile(list(to_numpy_frames(rows)), cols=1), path, fps=fps, scale=2)


def glass_training(
    data: str,
    split: str = "train",
    *,
    schedule: GlassSchedule | None = None,
    loss: LossWeights | None = None,
    **model_args: Any,
) -> TrainingRun:
    """GLASS on the clips of ``data``'s ``split``: ``model_args`` go to :class:`Glass` (the
    frame size comes from the data), ``schedule`` and ``loss`` to the objective."""
    schedule = schedule or GlassSchedule()
    model = Glass(image_size=frame_size(data), **model_args)
    dataset = ClipDataset(data, split=split, clip_length=schedule.seq_len_end, cache=True)
    return TrainingRun(
        model,
        GlassObjective(schedule, loss),
        dataset,
        sample_fn=glass_samples,
        before_checkpoint=GlassCalibration(dataset),
    )
