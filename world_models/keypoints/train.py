"""The keypoint model's training: the builder that ``configs/model/keypoints.yaml`` names, the
two-phase objective (perception, then actions and dynamics on its frozen keypoints) and
sample videos with the keypoints drawn."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from latentplay.rollouts.dataset import ClipDataset, EpisodeCache
from latentplay.rollouts.format import EpisodeReader
from latentplay.rollouts.video import draw_keypoints, tile, upscale, write_video
from latentplay.utils.frames import to_float_frames, to_numpy_frames
from latentplay.world_models import distributed
from latentplay.world_models.keypoints.model import Keypoints, KeypointState, last_displacements
from latentplay.world_models.keypoints.perception import (
    coverage_loss,
    foreground,
    separation_loss,
    to_pixels,
)
from latentplay.world_models.protocol import Actions
from latentplay.world_models.train import TrainingRun, frame_size

# Keypoint tracks (N, T, K, 2) and their presence (N, T, K) (None: a model without presence)
Tracks = tuple[torch.Tensor, torch.Tensor | None]


@dataclass(frozen=True)
class KeypointSchedule:
    """``perception_steps`` of perception alone, then actions and dynamics on the (frozen)
    keypoints, rolled out on their own predictions over a horizon that grows from
    ``horizon_start`` to ``horizon_end`` steps in ``horizon_ramp_steps``. The dynamics phase
    trains on ``dynamics_batch`` clips a step, drawn from the training split's keypoint
    tracks (encoded once when the phase starts: no image passes through the encoder after
    that, so a dynamics step costs a small fraction of a perception step)."""

    perception_steps: int = 3000
    horizon_start: int = 2
    horizon_end: int = 8
    horizon_ramp_steps: int = 1000
    dynamics_batch: int = 64

    def __post_init__(self) -> None:
        if self.dynamics_batch < 1:
            raise ValueError(f"dynamics_batch={self.dynamics_batch}; expected >= 1")
        if not 1 <= self.horizon_start <= self.horizon_end:
            raise ValueError(
                f"horizon_start={self.horizon_start}, horizon_end={self.horizon_end}; "
                "expected 1 <= start <= end"
            )

    def horizon(self, step: int) -> int:
        done = step - self.perception_steps
        if self.horizon_ramp_steps <= 0:
            return self.horizon_end
        frac = min(max(done / self.horizon_ramp_steps, 0.0), 1.0)
        return round(self.horizon_start + (self.horizon_end - self.horizon_start) * frac)


@dataclass(frozen=True)
class KeypointLossWeights:
    """``foreground``: extra reconstruction weight on pixels that differ from the background
    (by ``foreground_scale`` summed colour difference for full weight); ``coverage``: the
    k-means pull of keypoints onto foreground pixels; ``separation`` (within
    ``separation_sigma``): keypoints repel; ``gate``: sparsity of the control gates;
    ``action``: L2 on latent actions; ``action_noise``: noise added to them in training, in
    units of their running std (an information bottleneck); ``huber_px``: the rollout loss
    is quadratic below this many pixels of error and linear above (small values approach L1:
    in a near miss the model then predicts no push rather than a small one, at some cost in
    the pushed objects' error); ``contact``: weight of the moves-or-not decisions' binary
    cross-entropy, whose targets are "the keypoint moved more than ``move_px`` pixels this
    step" in its track; ``presence``: L1 on the keypoints' presence (a model with presence):
    a keypoint is present only where drawing it pays. ``one_step``: weight of a one-step
    error from every true state of a clip (its true last displacement), beside the rollout's:
    each step of a push is learned from where it truly starts, not only after the model's own
    earlier steps."""

    foreground: float = 10.0
    foreground_scale: float = 0.15
    coverage: float = 1.0
    separation: float = 0.02
    separation_sigma: float = 0.05
    gate: float = 0.01
    action: float = 1e-3
    action_noise: float = 0.1
    huber_px: float = 1.0
    contact: float = 1.0
    move_px: float = 0.5
    presence: float = 0.003
    one_step: float = 0.0


def track_cache(model: Keypoints, dataset: ClipDataset, chunk: int = 256) -> EpisodeCache:
    """The keypoint tracks of every episode of ``dataset`` from one pass of the (frozen)
    encoder, ``(T, K, 2)`` per episode (``(T, K, 3)`` with presence last, for a model with
    presence); clips of them are drawn as the dataset draws its clips."""

    def tracks(x: torch.Tensor) -> torch.Tensor:
        pos, presence = model.perceive(x[None])
        return pos[0] if presence is None else torch.cat([pos[0], presence[0, ..., None]], -1)

    return EpisodeCache.of_frames(dataset, tracks, model.background.device, chunk)


class KeypointObjective:
    """``(model, clip, step) -> (loss, terms)`` for :func:`latentplay.world_models.train.train`.

    The perception phase learns from the trainer's clips; the dynamics phase from clips of
    ``dataset``'s keypoint tracks (:func:`track_cache`, built at its first step), or, without
    a dataset, from the trainer's clips through the frozen encoder. A model with presence
    calibrates it when the dynamics phase starts: on every training frame, or without a
    dataset on the first clips of that phase."""

    def __init__(
        self,
        schedule: KeypointSchedule | None = None,
        weights: KeypointLossWeights | None = None,
        dataset: ClipDataset | None = None,
    ) -> None:
        self.schedule = schedule or KeypointSchedule()
        self.weights = weights or KeypointLossWeights()
        self.dataset = dataset
        self._tracks: EpisodeCache | None = None
        self.dynamics_started = False

    def __call__(
        self, model: Keypoints, clip: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        self.transitions_per_clip: float = clip.shape[1] - 1
        if step < self.schedule.perception_steps:
            return self.perception(model, clip)
        # The dynamics phase runs in fp32 under any trainer.precision: its small graph nets
        # gain no speed from bf16 on a CPU, and bf16 perception moves tracked keypoints by up
        # to ~0.1 px, a fair part of the thresholds that tell a still object from a pushed one.
        with torch.autocast(clip.device.type, enabled=False):
            return self._dynamics_phase(model, clip, step)

    def _dynamics_phase(
        self, model: Keypoints, clip: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        self.dynamics_started = True
        if self.dataset is None:
            with torch.no_grad():
                pos, presence = model.perceive(clip)
            if presence is not None and bool((model.presence_ref == 1).all()):
                model.calibrate_presence(presence.flatten(0, 1))  # once: the first clips seen
        else:
            if self._tracks is None:
                self._tracks = track_cache(model, self.dataset)
                if model.has_presence:
                    every = torch.cat([t[..., 2] for t in self._tracks.per_episode.values()])
                    model.calibrate_presence(every.to(model.background.device))
            tracks = self._tracks
            pos = tracks.clips(tracks.draw(self.schedule.dynamics_batch)).to(clip.device)
            pos, presence = (pos[..., :2], pos[..., 2]) if model.has_presence else (pos, None)
            self.transitions_per_clip *= len(pos) / len(clip)  # what the trainer reports
        return self.dynamics(model, pos, self.schedule.horizon(step), presence)

    def perception(
        self, model: Keypoints, clip: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Rebuild the first and last frame of each clip from their keypoints."""
        w = self.weights
        x = to_float_frames(clip[:, [0, -1]]).flatten(0, 1)
        bg = model.background[None]
        pos, _, presence = model.encoder(x, bg)
        recon = model.renderer(pos, bg, presence)
        fg = foreground(x, bg, w.foreground_scale)
        rec = ((recon - x).pow(2).mean(1, keepdim=True) * (1 + w.foreground * fg)).mean()
        cov = coverage_loss(pos, F.avg_pool2d(fg, 2))
        sep = separation_loss(pos, w.separation_sigma)
        loss = rec + w.coverage * cov + w.separation * sep
        terms = {"recon": rec.item(), "coverage": cov.item(), "separation": sep.item()}
        if presence is not None:
            loss = loss + w.presence * presence.mean()
            terms["presence"] = presence.mean().item()
        return loss, terms

    def dynamics(
        self,
        model: Keypoints,
        pos: torch.Tensor,
        horizon: int,
        presence: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Latent actions from keypoint tracks ``pos (B, T, K, 2)`` of real clips; the
        dynamics rolled out ``horizon`` steps on its own predictions from each start; error in
        pixels. ``presence (B, T, K)``: each keypoint's error counts by its presence (where an
        absent keypoint goes is nothing to learn)."""
        w = self.weights
        horizon = min(horizon, pos.shape[1] - 1)
        actions = model.actions_between(pos, presence)
        with torch.no_grad():
            std = distributed.mean_(actions.detach().flatten(0, 1).std(dim=0))
            model.action_std.mul_(0.99).add_(0.01 * std)
        noisy = actions + w.action_noise * model.action_std * torch.randn_like(actions)
        half = model.image_size / 2
        moved = ((pos[:, 1:] - pos[:, :-1]).norm(dim=-1) * half > w.move_px).to(pos.dtype)
        errors, decisions = [], []
        starts = range(0, pos.shape[1] - horizon)
        for s in starts:
            p0 = None if presence is None else presence[:, s]
            state = KeypointState(pos[:, s], torch.zeros_like(pos[:, s]), p0)
            for t in range(horizon):
                state, logit = model.transition(state, noisy[:, s + t], moved[:, s + t])
                p = None if presence is None else presence[:, s + t + 1]
                errors.append(self._error_px(model, state.pos, pos[:, s + t + 1], p))
                if logit is not None:
                    decisions.append(F.binary_cross_entropy_with_logits(logit, moved[:, s + t]))
        err = torch.stack(errors).mean()
        gate = model.dynamics.gates().mean()
        act = actions.pow(2).mean()
        loss = err + w.gate * gate + w.action * act
        terms = {"rollout_px": err.item(), "gate": gate.item(), "action": act.item()}
        if w.one_step > 0:
            one = self._one_step(model, pos, noisy, moved, presence)
            loss = loss + w.one_step * one
            terms["one_step_px"] = one.item()
        if decisions:
            contact = torch.stack(decisions).mean()
            loss = loss + w.contact * contact
            terms["contact_bce"] = contact.item()
        return loss, terms

    def _one_step(
        self,
        model: Keypoints,
        pos: torch.Tensor,
        actions: torch.Tensor,
        moved: torch.Tensor,
        presence: torch.Tensor | None,
    ) -> torch.Tensor:
        """The mean one-step error (px) from every true state of the clips (the first with no
        last displacement, as a rollout starts), all in one batch."""
        now = pos[:, :-1].flatten(0, 1)
        p = None if presence is None else presence[:, :-1].flatten(0, 1)
        state = KeypointState(now, last_displacements(pos).flatten(0, 1), p)
        state, _ = model.transition(state, actions.flatten(0, 1), moved.flatten(0, 1))
        p = None if presence is None else presence[:, 1:].flatten(0, 1)
        return self._error_px(model, state.pos, pos[:, 1:].flatten(0, 1), p)

    def _error_px(
        self,
        model: Keypoints,
        pred: torch.Tensor,
        target: torch.Tensor,
        presence: torch.Tensor | None,
    ) -> torch.Tensor:
        """Huber error in pixels of predicted positions ``(N, K, 2)`` against ``target``, each
        keypoint counted by whether it is present in the target frame (``presence (N, K)``)."""
        half = model.image_size / 2
        if presence is None:
            return F.smooth_l1_loss(pred * half, target * half, beta=self.weights.huber_px)
        e = F.smooth_l1_loss(
            pred * half, target * half, beta=self.weights.huber_px, reduction="none"
        )
        p = model.present(presence)
        return (e.mean(-1) * p).sum() / p.sum().clamp(min=1e-6)


@torch.no_grad()
def still_drift_px(
    model: Keypoints, pos: torch.Tensor, presence: torch.Tensor | None = None, move_px: float = 0.5
) -> torch.Tensor:
    """The imagined one-step displacements (px, before ``rest_px``) of undriven keypoints at
    the steps of real keypoint tracks ``pos (B, T, K, 2)`` where their track did not move
    (under ``move_px``; present at both ends), each step from its true state under the action
    parsed from the tracks: how far the dynamics nudge what stays put. 1-D."""
    half = model.image_size / 2
    disp = model.steps_from_tracks(pos, presence)
    true = (pos[:, 1:] - pos[:, :-1]).flatten(0, 1).norm(dim=-1) * half
    keep = (true < move_px) & ~model.dynamics.driven()[None]
    if presence is not None:
        both = model.present(presence[:, :-1]) * model.present(presence[:, 1:])
        keep &= both.flatten(0, 1) > 0
    return disp.norm(dim=-1)[keep] * half


def spread_tracks(
    model: Keypoints, dataset: ClipDataset, clips: int = 512, chunk: int = 64
) -> Tracks:
    """Keypoint tracks ``(N, T, K, 2)`` (and presence ``(N, T, K)``) of ``clips`` clips spread
    evenly over ``dataset`` (no random draws)."""
    picks = dataset.spread(clips)
    device = model.background.device
    with torch.no_grad():
        parts = [
            model.perceive(torch.stack([dataset[i] for i in picks[j : j + chunk]]).to(device))
            for j in range(0, len(picks), chunk)
        ]
    pos = torch.cat([q for q, _ in parts])
    return pos, None if parts[0][1] is None else torch.cat([q for _, q in parts])


def calibrate_rest(
    model: Keypoints,
    tracks: Tracks,
    quantile: float = 0.95,
    move_px: float = 0.5,
) -> float:
    """Set ``model.rest_px`` to the ``quantile`` of :func:`still_drift_px` on held-out
    ``tracks`` (:func:`spread_tracks`): an undriven keypoint whose track truly stays put then
    makes an imagined step at all in ``1 - quantile`` of steps. Returns the value."""
    if not 0 < quantile < 1:
        raise ValueError(f"quantile={quantile}; expected within (0, 1)")
    drift = still_drift_px(model, *tracks, move_px=move_px)
    rest = float(torch.quantile(drift.float(), quantile)) if len(drift) else 0.0
    model.set_rest(rest)
    return rest


@torch.no_grad()
def calibrate_apart(
    model: Keypoints,
    tracks: Tracks,
    quantile: float = 0.01,
    min_frames: int = 100,
) -> torch.Tensor:
    """Set ``model.apart_px`` from held-out ``tracks`` (:func:`spread_tracks`): for each pair
    of undriven keypoints (objects), the ``quantile`` of their distance (px) over the frames
    where both are present, how close two objects come, where they touch. Kept for pairs seen
    together in at least ``min_frames`` frames whose value lies within the dynamics'
    interaction radius (pairs seen to meet) and beyond two rendered blob widths (closer,
    their blobs overlap: parts of one thing, or one drawn over the other); 0 for the others.
    Returns it, ``(K, K)``."""
    if not 0 < quantile < 1:
        raise ValueError(f"quantile={quantile}; expected within (0, 1)")
    pos, presence = tracks
    half = model.image_size / 2
    p = pos.flatten(0, 1)
    dist = (p[:, :, None] - p[:, None]).norm(dim=-1) * half  # (N, K, K)
    if presence is None:
        both = torch.ones_like(dist, dtype=torch.bool)
    else:
        seen = model.present(presence.flatten(0, 1)) > 0
        both = seen[:, :, None] & seen[:, None]
    undriven = ~model.dynamics.driven().cpu()
    radius = float(model.dynamics.log_radius.exp()) * half
    floor = 2 * model.renderer.sigma * half
    apart = torch.zeros(model.num_keypoints, model.num_keypoints)
    for i, j in torch.combinations(torch.arange(model.num_keypoints)).tolist():
        together = dist[:, i, j][both[:, i, j]]
        if not (undriven[i] and undriven[j]) or len(together) < min_frames:
            continue
        q = float(torch.quantile(together.float().cpu(), quantile))
        if floor < q < radius:
            apart[i, j] = apart[j, i] = q
    model.set_apart(apart)
    return apart


class Calibration:
    """Before every checkpoint of the dynamics phase: :func:`calibrate_rest` (``rest``) and
    :func:`calibrate_apart` (``apart``) on the keypoint tracks of clips spread over
    ``dataset`` (held-out episodes: the validation split), encoded once when the phase has
    started (the encoder is frozen then). No random draws, so resumed runs stay exact, and
    training never reads what they set."""

    def __init__(
        self,
        objective: KeypointObjective,
        dataset: ClipDataset,
        rest: bool = True,
        apart: bool = True,
    ) -> None:
        self.objective, self.dataset = objective, dataset
        self.rest, self.apart = rest, apart
        self._tracks: Tracks | None = None

    def __call__(self, model: Keypoints) -> None:
        if not self.objective.dynamics_started:
            return
        if self._tracks is None:
            self._tracks = spread_tracks(model, self.dataset)
        if self.rest:
            calibrate_rest(model, self._tracks, move_px=self.objective.weights.move_px)
        if self.apart:
            calibrate_apart(model, self._tracks)


def recalibrate_rest(
    checkpoint: str | Path, data: str, out: str | Path | None = None, split: str = "val"
) -> float:
    """:func:`calibrate_rest` for a keypoint checkpoint (or shipped model) written before
    ``rest_px`` existed, or on other data: written to ``out`` (default: the checkpoint file
    itself, rewritten atomically; a shipped model needs an ``out``, so that its files, and
    the grounding whose digest names its weights, stay as shipped), with the data it came
    from recorded (``rest_calibration``). Clip length and ``move_px`` are the run's; the
    training split stands in for a missing ``split``. Returns the value."""

    def calibrate(model: Keypoints, tracks: Tracks, run: dict[str, Any]) -> None:
        move_px = float((run.get("loss") or {}).get("move_px", KeypointLossWeights.move_px))
        calibrate_rest(model, tracks, move_px=move_px)

    return float(_recalibrate("rest_px", calibrate, checkpoint, data, out, split))


def recalibrate_apart(
    checkpoint: str | Path, data: str, out: str | Path | None = None, split: str = "val"
) -> torch.Tensor:
    """:func:`calibrate_apart` for a keypoint checkpoint (or shipped model) written before
    ``apart_px`` existed, or on other data; written as :func:`recalibrate_rest` writes
    (``apart_calibration``). Returns the ``(K, K)`` distances (px)."""

    def calibrate(model: Keypoints, tracks: Tracks, run: dict[str, Any]) -> None:
        calibrate_apart(model, tracks)

    return _recalibrate("apart_px", calibrate, checkpoint, data, out, split)


def _recalibrate(
    name: str,
    calibrate: Callable[[Keypoints, Tracks, dict[str, Any]], None],
    checkpoint: str | Path,
    data: str,
    out: str | Path | None,
    split: str,
) -> torch.Tensor:
    """Buffer ``name`` of a saved keypoint model set by ``calibrate(model, held-out tracks,
    the run's model config)`` and written (stored only when set)."""
    from latentplay.utils.io import atomic_path
    from latentplay.world_models.checkpoint import load_model
    from latentplay.world_models.shipped import resolve_checkpoint, shipped_models

    what = name.removesuffix("_px")
    if out is None and str(checkpoint) in shipped_models() and not Path(checkpoint).is_file():
        raise ValueError(
            f"recalibrate_{what}({str(checkpoint)!r}): a shipped model is not rewritten in "
            "place; pass out=<a new checkpoint file>"
        )
    model, payload = load_model(checkpoint)
    if not isinstance(model, Keypoints):
        raise ValueError(
            f"{checkpoint} holds a {type(model).name} model; expected a keypoint model"
        )
    run = (payload.get("config") or {}).get("model") or {}
    clips = held_out_clips(data, split, int(run.get("clip_length", 9)))
    calibrate(model, spread_tracks(model, clips), run)
    value = model.get_buffer(name).detach().cpu().clone()
    if value.any():
        payload["model"][name] = value
    else:
        payload["model"].pop(name, None)
    payload[f"{what}_calibration"] = {"data": str(data), "split": clips.split, name: value.tolist()}
    target = resolve_checkpoint(checkpoint) if out is None else Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        torch.save(payload, tmp)
    return value


def held_out_clips(data: str, split: str, clip_length: int) -> ClipDataset:
    """Clips of ``data``'s ``split`` (every 4th start) for calibrations; its training split
    where ``split`` has no episode or none long enough."""
    for name in (split, "train"):
        if not EpisodeReader(data, verify=False).indices(name):
            continue
        try:
            return ClipDataset(data, split=name, clip_length=clip_length, stride=4, verify=False)
        except ValueError:  # no clip of that length fits in its episodes
            continue
    raise ValueError(f"{data}: no clip of {clip_length} frames in split {split!r} or 'train'")


def keypoint_samples(model: Keypoints, clip: torch.Tensor, path: Path, fps: float = 5) -> None:
    """Video, one row per clip: real | rollout from the first frame under the inferred actions
    | real frames with their keypoints | the rollout with its predicted keypoints."""
    scale = 4
    pos, presence = model.perceive(clip)
    actions = model.actions_between(pos, presence)
    state = KeypointState(
        pos[:, 0], torch.zeros_like(pos[:, 0]), None if presence is None else presence[:, 0]
    )
    frames, points = [], []
    for t in range(actions.shape[1]):
        state = model.step(state, Actions(continuous=actions[:, t]))
        frames.append(model.decode(state))
        points.append(state.pos)
    real, roll = to_numpy_frames(clip[:, 1:]), to_numpy_frames(torch.stack(frames, 1))
    real_px = to_pixels(pos[:, 1:], model.image_size).cpu().numpy()
    roll_px = to_pixels(torch.stack(points, 1), model.image_size).cpu().numpy()

    rows = [
        np.concatenate(
            [
                upscale(real[i], scale),
                upscale(roll[i], scale),
                draw_keypoints(real[i], real_px[i], scale),
                draw_keypoints(roll[i], roll_px[i], scale),
            ],
            axis=2,
        )
        for i in range(len(clip))
    ]
    write_video(tile(rows, cols=1), path, fps=fps)


def keypoints_training(
    data: str,
    split: str = "train",
    *,
    clip_length: int = 9,
    schedule: KeypointSchedule | None = None,
    loss: KeypointLossWeights | None = None,
    background_frames: int = 512,
    rest_calibration: bool = True,
    apart_calibration: bool = True,
    **model_args: Any,
) -> TrainingRun:
    """The keypoint model on ``clip_length``-frame clips of ``data``'s ``split``:
    ``model_args`` go to :class:`Keypoints` (the frame size comes from the data); its
    reference frame is the per-pixel median of ``background_frames`` training frames spread
    evenly over the split. ``rest_calibration``, ``apart_calibration``: ``rest_px`` and
    ``apart_px`` are calibrated before each checkpoint of the dynamics phase
    (:class:`Calibration`) on the validation split (the training split for data without one);
    off, they stay 0 (and a moving average of the weights, ``trainer.ema_decay``, is allowed:
    :func:`recalibrate_rest` and :func:`recalibrate_apart` calibrate the averaged weights
    afterwards)."""
    model = Keypoints(image_size=frame_size(data), **model_args)
    dataset = ClipDataset(data, split=split, clip_length=clip_length, cache=True)
    model.set_background(torch.stack([dataset[i][0] for i in dataset.spread(background_frames)]))
    objective = KeypointObjective(schedule, loss, dataset)
    hook = None
    if rest_calibration or apart_calibration:
        held_out = dataset if split in (None, "val") else held_out_clips(data, "val", clip_length)
        hook = Calibration(objective, held_out, rest_calibration, apart_calibration)
    return TrainingRun(
        model, objective, dataset, sample_fn=keypoint_samples, before_checkpoint=hook
    )
