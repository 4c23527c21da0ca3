"""Counterfactual answers by abduction: the factual video is observed, so the counterfactual
branch follows it wherever the intervention has not (yet) changed anything, and the model
imagines only the rest.

A keypoint starts *tied* when both branches' first frames put it in the same place (within
``START_PX``) with the same presence: the intervention did not touch it. While tied it takes
its observed factual position and motion at every step, the real outcome, with what the model
cannot know (an object's mass or friction, a push longer than the model predicts). It is
untied for good when

- one imagined step moves it differently in the two branches (by more than ``STEP_PX``): the
  change reaches it through the dynamics (the arm under other actions, an object near
  something that differs), or
- an untied keypoint that moves in that step comes within the dynamics' interaction radius
  of it, in either branch (undriven keypoints only: the arm goes where the actions send it).
  A push the model does not see coming must not reach the answer from the factual video: an
  object the factual arm pushes while the counterfactual arm is elsewhere is untied as the
  factual arm nears it. What stays put pushes nothing: an object removed, or moved out of the
  way, unties nothing it sits beside.

Untied keypoints move by the model's dynamics under the counterfactual actions, from where
the observation left them. Parts the model keeps apart (solid objects, ``apart_px``) stay
apart in the composed answer too: a tied object keeps its observed place and an untied one it
meets is shoved out of its way (a box following its observed push shoves an added object).

Frames: a pixel shows a real frame, the factual frame of that step or else the
counterfactual first frame, where every present part within ``OWN_PX`` of it, in the answer or
in that frame, is where that frame shows it (within ``SAME_PX``) and present in both (a pixel
with no part near it in either is the background, real too); elsewhere the answer's keypoints
rendered. So a part's pixels are real wherever the frame shows it at the answer's place and
nothing near it changed; where another part came or left beside it (the arm passing an object
moved out of its way, or leaving its side), the rendering shows both, rather than a real frame
with one of them missing. The first frame's are used whether or not the model decodes
anchored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from latentplay.utils.frames import to_float_frames
from latentplay.world_models.keypoints.perception import pixel_grid
from latentplay.world_models.keypoints.state import KeypointState, displacements

# A keypoint is the same in both first frames within this (px): perceiving two frames that
# differ elsewhere moves a keypoint by a few tenths of a pixel.
START_PX = 1.0
# One imagined step that differs between the branches by more than this (px) unties a
# keypoint; a far-off change alters a step by hundredths of a pixel through the soft edges.
# An untied keypoint whose imagined step is longer than this moves (and so may push).
STEP_PX = 0.25
# An untied keypoint whose observed step is longer than this moves: perceived tracks of still
# parts jitter by tenths of a pixel (the tracks' "still" threshold in training, too).
OBSERVED_MOVE_PX = 0.5

# A part reaches the pixels within this of its keypoint (px at 64x64; scaled with the frame):
# an object's pixels lie within it (a box's half-diagonal is ~4.7 px). Stretches of the arm's
# links farther than this from every keypoint count as background: none were seen in answers.
OWN_PX = 6.0
# A part is where a real frame shows it within this (px): that frame's pixels of it are shown.
SAME_PX = 0.5

Step = Callable[[KeypointState, torch.Tensor], KeypointState]
# (before, after, present, fixed) -> shift, as Keypoints.keep_apart
KeepApart = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
# presence (..., K) -> bool; None -> all present, (B, K)
Present = Callable[[torch.Tensor | None], torch.Tensor]


@dataclass
class Followed:
    """The counterfactual keypoints at steps 1..T: ``pos``, ``vel (B, T, K, 2)``, ``presence
    (B, T, K)`` (None: a model without presence) and ``tied (B, T, K)``: which followed the
    observation at that step."""

    pos: torch.Tensor
    vel: torch.Tensor
    presence: torch.Tensor | None
    tied: torch.Tensor


def _near_pushers(
    pos: torch.Tensor, present: torch.Tensor, pushers: torch.Tensor, radius: float
) -> torch.Tensor:
    """``(B, K)``: keypoints within ``radius`` of one of ``pushers (B, K)``, both present."""
    dist = (pos[:, :, None] - pos[:, None]).norm(dim=-1)
    return ((dist < radius) & (pushers & present)[:, None] & present[:, :, None]).any(-1)


def follow(
    step: Step,
    obs_pos: torch.Tensor,
    obs_presence: torch.Tensor | None,
    start: KeypointState,
    actions: torch.Tensor,
    factual_actions: torch.Tensor,
    present: Present,
    driven: torch.Tensor,
    radius: float,
    start_tol: float,
    step_tol: float,
    move_tol: float,
    keep_apart: KeepApart | None = None,
) -> Followed:
    """The tie rule of the module doc over keypoint tracks, in the dynamics' units.

    ``obs_pos (B, T+1, K, 2)``, ``obs_presence (B, T+1, K)``: the factual branch as perceived;
    ``start``: the counterfactual first state; ``actions``,
    ``factual_actions (B, T, A)``; ``step(state, action)``: one imagined step; ``present``:
    presence -> bool; ``driven (K,)``: the keypoints the action drives; ``radius``,
    ``start_tol``, ``step_tol``, ``move_tol`` (an observed step that moves): distances in the
    units of positions; ``keep_apart(before, after, present, fixed)``: the shift that keeps
    solid parts apart (the model's ``keep_apart``), applied to each composed step with the tied
    keypoints fixed at their observed places."""
    obs_vel = displacements(obs_pos)
    tied = (start.pos - obs_pos[:, 0]).norm(dim=-1) < start_tol
    tied &= present(start.presence) == present(_at(obs_presence, 0))
    state = start
    pos, vel, ties, presences = [], [], [], []
    for t in range(actions.shape[1]):
        o = KeypointState(obs_pos[:, t], obs_vel[:, t], _at(obs_presence, t))
        imagined, factual = step(state, actions[:, t]), step(o, factual_actions[:, t])
        moved = imagined.pos - state.pos
        differs = (moved - (factual.pos - o.pos)).norm(dim=-1) > step_tol
        # untied keypoints that move in this step, in each branch: only they can push
        moving_cf = ~tied & (moved.norm(dim=-1) > step_tol)
        moving_f = ~tied & (obs_vel[:, t + 1].norm(dim=-1) > move_tol)
        near = _near_pushers(state.pos, present(state.presence), moving_cf, radius)
        near |= _near_pushers(o.pos, present(o.presence), moving_f, radius)
        tied = tied & ~differs & ~(near & ~driven[None])
        pres = imagined.presence
        if obs_presence is not None and pres is not None:
            pres = torch.where(tied, obs_presence[:, t + 1], pres)
        now = torch.where(tied[..., None], obs_pos[:, t + 1], imagined.pos)
        now_vel = torch.where(tied[..., None], obs_vel[:, t + 1], imagined.vel)
        if keep_apart is not None:
            shift = keep_apart(state.pos, now, present(pres).to(now.dtype), tied)
            now, now_vel = now + shift, now_vel + shift
        state = KeypointState(now, now_vel, pres, imagined.frame, imagined.anchor)
        pos.append(state.pos)
        vel.append(state.vel)
        ties.append(tied)
        presences.append(state.presence)
    presence = None if presences[0] is None else torch.stack(presences, 1)
    return Followed(torch.stack(pos, 1), torch.stack(vel, 1), presence, torch.stack(ties, 1))


def _at(presence: torch.Tensor | None, t: int) -> torch.Tensor | None:
    return None if presence is None else presence[:, t]


@dataclass
class Abduction:
    """``frames (B, T, 3, H, W)``: the counterfactual answer; ``tied (B, T, K)``: the
    keypoints that followed the observation at each step."""

    frames: torch.Tensor
    tied: torch.Tensor


@torch.no_grad()
def abduce(
    model: Any,
    factual: torch.Tensor,
    start: torch.Tensor,
    actions: torch.Tensor | None = None,
    start_px: float = START_PX,
    step_px: float = STEP_PX,
    move_px: float = OBSERVED_MOVE_PX,
) -> Abduction:
    """The answer of ``model`` (a keypoint model, model.py) by abduction. ``factual (B, T+1,
    3, H, W)``: the observed factual video; ``start (B, 1, 3, H, W)``: the counterfactual
    first frame; ``actions (B, T, A)``: the counterfactual branch's latent actions (None: the
    factual video's, parsed)."""
    if factual.dim() != 5 or start.dim() != 5 or start.shape[1] != 1:
        raise ValueError(
            f"factual of shape {tuple(factual.shape)} and start of shape "
            f"{tuple(start.shape)}; expected (B, T+1, 3, H, W) and (B, 1, 3, H, W)"
        )
    pos, presence = model.perceive(factual)
    parsed = model.actions_between(pos, presence)
    if actions is None:
        actions = parsed
    if actions.shape != parsed.shape:
        raise ValueError(
            f"actions of shape {tuple(actions.shape)}; expected {tuple(parsed.shape)} (one per "
            "step of the factual video)"
        )
    to_units = 2.0 / model.image_size  # pixels -> the [-1, 1] units of positions

    def present(p: torch.Tensor | None) -> torch.Tensor:
        if p is None:
            return torch.ones(pos.shape[0], pos.shape[2], dtype=torch.bool, device=pos.device)
        return model.present(p) > 0

    first_pos, first_presence = model.perceive(start)  # no frame is decoded from this state
    first = KeypointState(
        first_pos[:, 0], torch.zeros_like(first_pos[:, 0]), _at(first_presence, 0)
    )
    track = follow(
        model.loose_step,  # solid parts are kept apart once, in each composed step
        pos,
        presence,
        first,
        actions.to(pos.device, pos.dtype),
        parsed,
        present,
        model.dynamics.driven(),
        float(model.dynamics.log_radius.exp()),
        start_px * to_units,
        step_px * to_units,
        move_px * to_units,
        model.keep_apart,
    )
    frames = _frames(model, factual, start, first, pos, presence, track, present)
    return Abduction(frames, track.tied)


def same_parts(
    pos: torch.Tensor,
    present: torch.Tensor,
    seen_pos: torch.Tensor,
    seen_present: torch.Tensor,
    size: int,
    own: float,
    same: float,
) -> torch.Tensor:
    """``(N, 1, size, size)``, 1 where a real frame whose keypoints are ``seen_pos`` (``(N, K,
    2)``, presence ``seen_present (N, K)`` bool) shows what keypoints ``pos`` (with
    ``present``) put at that pixel: every present part within ``own`` of the pixel, in either,
    is within ``same`` of its place there and present in both (no part near it in either:
    the background)."""
    grid = pixel_grid(size, pos.device)[None, :, None]  # (1, P, 1, 2)
    near = ((grid - pos[:, None]).norm(dim=-1) < own) & present[:, None]  # (N, P, K)
    near |= ((grid - seen_pos[:, None]).norm(dim=-1) < own) & seen_present[:, None]
    there = ((pos - seen_pos).norm(dim=-1) < same) & present & seen_present  # (N, K)
    shown = (~near | there[:, None]).all(dim=-1)
    return shown.view(-1, 1, size, size).to(pos.dtype)


def _frames(
    model: Any,
    factual: torch.Tensor,
    start: torch.Tensor,
    first: KeypointState,
    obs_pos: torch.Tensor,
    obs_presence: torch.Tensor | None,
    track: Followed,
    present: Present,
) -> torch.Tensor:
    """The answer's frames ``(B, T, 3, H, W)`` (the module doc): the factual frame of a step
    where it shows a pixel's part at the answer's place, else the counterfactual first frame
    (``start``) where it does, else the answer's rendering."""
    b, t = track.pos.shape[:2]
    size = model.image_size
    own, same = 2.0 * OWN_PX / 64, 2.0 * SAME_PX / size  # in the units of positions

    def steps(x: torch.Tensor | None) -> torch.Tensor | None:  # (B, T, ...) -> (B * T, ...)
        return None if x is None else x.flatten(0, 1)

    def each_step(x: torch.Tensor | None) -> torch.Tensor | None:  # (B, ...), once per step
        return None if x is None else x.repeat_interleave(t, 0)

    def parts(pos: torch.Tensor, presence: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """Positions and bool presence (all present for a model without presence)."""
        if presence is None:
            return pos, torch.ones(pos.shape[:2], dtype=torch.bool, device=pos.device)
        return pos, present(presence)

    answer = parts(steps(track.pos), steps(track.presence))
    out = model.render(answer[0], steps(track.presence)).float()
    sources = (  # the later wins where both show a pixel's part
        (each_step(to_float_frames(start[:, 0])), each_step(first.pos), each_step(first.presence)),
        (
            steps(to_float_frames(factual[:, 1:])),
            steps(obs_pos[:, 1:]),
            steps(_after(obs_presence)),
        ),
    )
    for real, pos, presence in sources:
        shown = same_parts(*answer, *parts(pos, presence), size, own, same)
        out = out + shown * (real - out)
    return out.clamp(0.0, 1.0).unflatten(0, (b, t))


def _after(presence: torch.Tensor | None) -> torch.Tensor | None:
    return None if presence is None else presence[:, 1:]
