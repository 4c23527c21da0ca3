"""YODA's training: the builder that ``configs/model/yoda.yaml`` names, the objective (flow
matching on next-frame differences) and sample videos."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentplay.rollouts.dataset import ClipDataset, EpisodeCache
from latentplay.rollouts.video import tile, write_video
from latentplay.utils.frames import to_numpy_frames
from latentplay.world_models.train import TrainingRun, frame_size
from latentplay.world_models.yoda.flow_matching import SIGMA_MIN, flow_matching_loss
from latentplay.world_models.yoda.model import Yoda
from latentplay.world_models.yoda.sparse import drop_conditions, sample_points


@dataclass(frozen=True)
class YodaSchedule:
    clip_length: int = 8  # frames per training clip: the memory frame is up to 6 back
    # Per-sample probability that the control becomes noise (the model also learns to run
    # unconditioned). YODA drops with 0.5; at that rate a small model trained briefly learns to
    # ignore its controls, so the default keeps them more often.
    drop_control: float = 0.2
    drop_memory: float = 0.1  # ... that the memory frame becomes the previous frame
    # Flow times: logit-normal (mean, std) as in Li & He 2025; the velocity loss of a data-
    # predicting net weighs errors by 1 / (1 - t)^2, and uniform times let t ~ 1 dominate.
    # null: uniform in [0, 1].
    time_logit_mean: float | None = -0.8
    time_logit_std: float = 0.8
    # Conditioning augmentation: per sample, Gaussian noise of std ~ U(0, this) on the previous
    # and memory frames, and the target is the difference to the *noisy* previous frame, so
    # the model learns to correct imperfect inputs (its own frames, when it runs on); without
    # it, rollouts lose objects over a few autoregressive steps.
    input_noise: float = 0.06
    # Per sample, the number of control points drawn uniformly in [min_points, k] (the rest
    # absent), so that moving objects more often carry none and their motion must be inferred
    # from the arm's. None: always k (fewer points are a weaker signal, learnt more slowly).
    min_points: int | None = None
    # Loss weight of the pixels that change between the previous and the next frame (by
    # more than 0.05, dilated by 1 px), relative to 1 for the others, normalised so that the
    # weights average 1 per sample: the moving arm and objects are a few percent of a frame.
    # 1.0: unweighted (weighting makes a model move objects that should stay put).
    moving_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.clip_length < 2:
            raise ValueError(f"clip_length={self.clip_length}; expected >= 2")
        if self.min_points is not None and self.min_points < 1:
            raise ValueError(f"min_points={self.min_points}; expected >= 1")
        if self.moving_weight <= 0:
            raise ValueError(f"moving_weight={self.moving_weight}; expected > 0")
        if self.input_noise < 0:
            raise ValueError(f"input_noise={self.input_noise}; expected >= 0")
        for name in ("drop_control", "drop_memory"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name}={p}; expected a probability in [0, 1]")


class YodaObjective:
    """``(model, clip, step) -> (loss, terms)``: per clip, one random transition t-1 -> t, a
    memory frame drawn uniformly among frames 0..t-1, the sparse flow of that transition.
    Random draws use torch's global generator, which checkpoints save: resumes stay exact.

    A latent model given ``dataset`` learns from clips of cached latents and flow fields
    (every frame of the split encoded, every transition's flow computed, once, at the first
    step; :class:`EpisodeCache`), drawn as the dataset draws clips: a step then runs no
    encoder and no optical flow. Without a dataset, each step encodes and computes the flow
    of the trainer's clips."""

    transitions_per_clip = 1  # one transition of each clip per step

    def __init__(
        self, schedule: YodaSchedule | None = None, dataset: ClipDataset | None = None
    ) -> None:
        self.schedule = schedule or YodaSchedule()
        self.dataset = dataset
        self._latents: EpisodeCache | None = None
        self._flows: EpisodeCache | None = None

    def caches(self, model: Yoda) -> tuple[EpisodeCache, EpisodeCache]:
        """The latents and flow fields of every frame of the dataset (built once)."""
        if self._latents is None or self._flows is None:
            assert self.dataset is not None
            skip = self.dataset.frame_skip
            device = next(model.net.parameters()).device

            def flows(frames: np.ndarray) -> torch.Tensor:
                # row t: the flow from frame t to frame t + skip (the last rows: none)
                f = torch.from_numpy(model.flow(frames[:-skip], frames[skip:]))  # (T-s, 2, H, W)
                return torch.cat([f, torch.zeros(skip, *f.shape[1:])]).half()

            self._latents = EpisodeCache.of_frames(self.dataset, model.to_space, device)
            self._flows = EpisodeCache(self.dataset, flows)
        return self._latents, self._flows

    def __call__(
        self, model: Yoda, clip: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        s, g = self.schedule, None
        device = clip.device
        cached = model.latent and self.dataset is not None
        if cached:
            lat, flo = self.caches(model)
            picks = lat.draw(clip.shape[0])
            clip, flow_clip = lat.clips(picks).to(device), flo.clips(picks)
        b, t_len = clip.shape[:2]
        ar = torch.arange(b)
        t = torch.randint(1, t_len, (b,), generator=g)  # target frame index
        m = (torch.rand(b, generator=g) * t).long()  # memory index in [0, t-1]
        keep_memory = torch.rand(b, generator=g) >= s.drop_memory
        m = torch.where(keep_memory, m, t - 1)
        prev, nxt, memory = clip[ar, t - 1], clip[ar, t], clip[ar, m]
        distance = (t - m).float().to(device)
        if cached:  # latents already; the flow of each transition from the cache
            points, vectors = sample_points(flow_clip[ar, t - 1].float(), model.points, g)
        else:
            points, vectors = model.sparse_controls(prev, nxt, g)  # from the clean frames
        present = None
        if s.min_points is not None and s.min_points < model.points:
            count = torch.randint(s.min_points, model.points + 1, (b,), generator=g)
            present = torch.arange(model.points)[None] < count[:, None]
        with torch.no_grad():
            # moving pixels (a cached latent model: moving latent cells, > 0.25 std)
            changed = (nxt - prev).abs().amax(dim=1, keepdim=True).gt(0.25 if cached else 0.05)
            changed = changed.float()
            moving = changed.mean()
            weight = None
            if s.moving_weight != 1.0:
                changed = torch.nn.functional.max_pool2d(changed, 3, stride=1, padding=1)
                weight = 1.0 + (s.moving_weight - 1.0) * changed
                weight = weight / weight.mean(dim=(1, 2, 3), keepdim=True)
        if model.latent and not cached:  # to latents; flow and moving pixels came from frames
            prev, nxt, memory = (model.to_space(x) for x in (prev, nxt, memory))
            if weight is not None:
                weight = torch.nn.functional.adaptive_avg_pool2d(weight, prev.shape[-1])
        if s.input_noise > 0:
            sigma = (torch.rand(b, 1, 1, 1, generator=g) * s.input_noise).to(device)
            prev = prev + sigma * torch.randn(prev.shape, generator=g).to(device)
            memory = memory + sigma * torch.randn(memory.shape, generator=g).to(device)
        # on the CPU, as every draw here: the trainer checkpoints the CPU generator's state
        maps = model.control_map(points, vectors, present)
        control, _ = drop_conditions(maps, s.drop_control, g)
        control = control.to(device)
        v = model.velocity_field(prev, memory, distance, control)
        x0 = torch.randn(prev.shape, generator=g).to(device)
        if s.time_logit_mean is None:
            tt = torch.rand(b, generator=g)
        else:
            tt = torch.sigmoid(torch.randn(b, generator=g) * s.time_logit_std + s.time_logit_mean)
        tt = tt.to(device)
        loss = flow_matching_loss(v, nxt - prev, sigma_min=SIGMA_MIN, x0=x0, t=tt, weight=weight)
        return loss, {"flow_matching": float(loss.detach()), "moving_px": float(moving)}


def yoda_samples(model: Yoda, clip: torch.Tensor, path: Path, fps: float = 5) -> None:
    """Video, one row per clip: real | teacher-forced (parsed sparse flow) | rollout from the
    first frame under the parsed sparse flow | unconditioned rollout."""
    real = clip[:, 1:]
    tf = model.teacher_forced(clip)
    acts = model.infer_actions(clip)
    roll = model.rollout(clip[:, :1], acts)
    free = model.simulate(clip[:, :1], real.shape[1])
    rows = torch.cat([real, tf, roll, free], dim=-1)
    write_video(tile(list(to_numpy_frames(rows)), cols=1), path, fps=fps, scale=2)


def yoda_training(
    data: str, split: str = "train", *, schedule: YodaSchedule | None = None, **model_args: Any
) -> TrainingRun:
    """YODA on the clips of ``data``'s ``split``: ``model_args`` go to :class:`Yoda` (the
    frame size comes from the data), ``schedule`` to the objective."""
    schedule = schedule or YodaSchedule()
    model = Yoda(image_size=frame_size(data), **model_args)
    if model.memory > schedule.clip_length - 1:
        raise ValueError(
            f"model.memory={model.memory} frames; training clips of "
            f"model.schedule.clip_length={schedule.clip_length} show distances up to "
            f"{schedule.clip_length - 1}: expected memory <= clip_length - 1"
        )
    dataset = ClipDataset(data, split=split, clip_length=schedule.clip_length, cache=True)
    objective = YodaObjective(schedule, dataset if model.latent else None)
    return TrainingRun(model, objective, dataset, sample_fn=yoda_samples)
