"""The keypoint world model: unsupervised keypoints, a latent action that drives the arm's
keypoints only, interaction dynamics over keypoints, frames rendered from keypoints over the
background.

State: keypoint positions, their last displacement, (with ``presence``) whether each
keypoint's part is in the scene, and the last real frame with its rendering from its own
keypoints.

Decoding draws the keypoints over the background and adds the renderer's error on that frame
(the frame minus its rendering) wherever the rendering has not changed since (``anchored``,
the default): where the keypoints are where they were, the decoded frame *is* the real frame,
so objects that stay put keep their real pixels (a rendering is off by a few tenths of a
pixel); where the rendering changed (a part moved away or arrived), the rendering alone is
drawn, with no trace of the real frame.

In imagination a keypoint the action does not drive (an object) stays where it is unless a
step moves it at least ``rest_px`` pixels (static friction): interaction messages from an arm
passing near would otherwise nudge it by a fraction of a pixel a step, the mean of "pushed" and
"not pushed", and over a rollout still objects drift. ``rest_px`` is calibrated on held-out
keypoint tracks (``calibrate_rest``: a high percentile of the steps the dynamics imagine for
undriven keypoints that truly stay put); 0: off. Plans imagine without it
(``calibration_off``): it hides a gentle push's first fraction of a pixel from their cost.

Objects are solid: two undriven keypoints whose pair has an ``apart_px`` end no imagined step
closer than that (or than they were), the overlap shared in inverse proportion to how far each
moved, so a box the arm pushes into another shoves it on instead of passing through it (the
messages alone carry a push on at about half its size). ``apart_px`` is calibrated on held-out
tracks (``calibrate_apart``: a low percentile of each object pair's distance, where they
touch); 0: none kept.

Positions are explicit, so a planner's cost can be a distance between states (``embed``) and
an intervention is an edit of a node.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from latentplay.utils.frames import to_float_frames
from latentplay.world_models.keypoints.abduction import abduce
from latentplay.world_models.keypoints.dynamics import InteractionDynamics, InverseDynamics
from latentplay.world_models.keypoints.perception import (
    KeypointEncoder,
    KeypointRenderer,
    to_pixels,
    unchanged,
)
from latentplay.world_models.keypoints.state import KeypointState, displacements
from latentplay.world_models.protocol import Actions, ActionSpec, check_actions
from latentplay.world_models.protocol import rollout as protocol_rollout

# Calibrated buffers stored only when set (0 everywhere: off).
OPTIONAL_BUFFERS = ("rest_px", "apart_px")

# A keypoint is present above this fraction of its calibrated (95th-percentile) presence: on
# PushMulti scenes of 1-3 objects, a missing object's keypoint read under 0.26 of it in 99% of
# frames, and a present part under 0.3 in at most 2% (the least steady arm keypoint).
PRESENT_FRACTION = 0.3


def anchored(frames: torch.Tensor, anchor: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Renderings ``frames (N, 3, H, W)`` plus the renderer's error on a ``real`` frame (it
    minus its rendering ``anchor``) where they do not differ from ``anchor``."""
    return (frames + (real - anchor) * unchanged(frames, anchor)).clamp(0.0, 1.0)


def last_displacements(pos: torch.Tensor) -> torch.Tensor:
    """Tracks ``(B, T, K, 2)`` -> each of the first T-1 frames' last displacement, zero for
    the first (nothing before it): ``(B, T-1, K, 2)``."""
    return displacements(pos)[:, :-1]


class Keypoints(nn.Module):
    """Keypoint world model. Keyword arguments only; ``model_args()`` rebuilds it.

    ``num_keypoints``: K (default 8: the arm and paddle take a few, each object one);
    ``action_dim``: latent action size;
    ``width``: conv width of the encoder and renderer; ``hidden``: MLP width of the dynamics;
    ``sigma``: the rendered blobs' std in [-1, 1] units;
    ``contact``: a moves-or-not decision per keypoint gates its displacement (dynamics.py);
    ``presence``: each keypoint also reads whether its part is in the frame (perception.py),
    which scales its rendered blob and its interaction edges: for scenes whose object sets
    vary (an object removed or added is a keypoint switched off or on);
    ``after_motion``: interaction messages also read how far apart a pair will be after both
    ends' proposed moves (dynamics.py).
    """

    name: ClassVar[str] = "keypoints"
    # Settings of imagination calibrated after training (a grounding's digest leaves them out)
    calibrations: ClassVar[tuple[str, ...]] = OPTIONAL_BUFFERS
    # Decode relative to the last real frame (the module doc); False: from the keypoints alone.
    anchored: bool = True

    def __init__(
        self,
        *,
        image_size: int = 64,
        num_keypoints: int = 8,
        action_dim: int = 3,
        width: int = 16,
        hidden: int = 64,
        sigma: float = 0.06,
        contact: bool = False,
        presence: bool = False,
        after_motion: bool = False,
    ) -> None:
        super().__init__()
        if image_size % 2:
            raise ValueError(f"image_size={image_size}; expected an even number")
        if num_keypoints < 1 or action_dim < 1:
            raise ValueError(
                f"num_keypoints={num_keypoints}, action_dim={action_dim}; expected each >= 1"
            )
        self._args = {
            "image_size": image_size,
            "num_keypoints": num_keypoints,
            "action_dim": action_dim,
            "width": width,
            "hidden": hidden,
            "sigma": sigma,
            **({"contact": True} if contact else {}),  # absent: the plain dynamics (older runs)
            **({"presence": True} if presence else {}),  # absent: every keypoint always present
            **({"after_motion": True} if after_motion else {}),  # absent: before-motion geometry
        }
        self.image_size, self.num_keypoints = image_size, num_keypoints
        self.encoder = KeypointEncoder(num_keypoints, width, presence)
        self.renderer = KeypointRenderer(num_keypoints, width, sigma)
        self.inverse = InverseDynamics(num_keypoints, action_dim, hidden)
        self.dynamics = InteractionDynamics(
            num_keypoints, action_dim, hidden, contact=contact, after_motion=after_motion
        )
        # The reference frame: the per-pixel median of training frames (set_background).
        self.register_buffer("background", torch.zeros(3, image_size, image_size))
        # Spread of the latent actions seen in training (EMA), for planners' sampling range.
        self.register_buffer("action_std", torch.full((action_dim,), 0.1))
        if presence:
            # Each keypoint's presence when its part is in the frame (a high percentile over
            # the training frames, set by calibrate_presence): the renderer can rescale a
            # keypoint's blob by any constant, so only presence relative to it means "there".
            self.register_buffer("presence_ref", torch.ones(num_keypoints))
        # The least displacement (px) an undriven keypoint makes in one imagined step; shorter
        # ones are dropped (the module doc). 0: off, as in checkpoints from before it existed.
        self.register_buffer("rest_px", torch.zeros(()))
        # The least distance (px) two undriven keypoints keep between them in imagination
        # (solid parts, the module doc), per pair; 0: none kept (pairs never seen to meet, and
        # checkpoints from before it existed).
        self.register_buffer("apart_px", torch.zeros(num_keypoints, num_keypoints))
        # compile_steps's compiled step (bound to this model: not carried over by a copy)
        self._compiled: Callable[[KeypointState, torch.Tensor, bool], KeypointState] | None = None
        self._strict = False
        # Whether apart_px keeps any pair apart (set_apart, loading): a step of a model that
        # keeps none skips the pairs' work, and no step waits on a device to find out.
        self._solid = False

    # rest_px and apart_px are stored only when set: a model with them off has the weights
    # (and the digest a saved grounding names) of one from before they existed, and loads
    # from them.
    def _save_to_state_dict(
        self, destination: dict[str, Any], prefix: str, keep_vars: bool
    ) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        for name in OPTIONAL_BUFFERS:
            if not getattr(self, name).any():
                destination.pop(prefix + name, None)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        for name in OPTIONAL_BUFFERS:
            state_dict.setdefault(prefix + name, torch.zeros_like(getattr(self, name)))
        super()._load_from_state_dict(state_dict, prefix, *args)
        self._solid = bool(self.apart_px.any())

    @torch.no_grad()
    def set_apart(self, px: torch.Tensor) -> None:
        """Set ``apart_px`` (``(K, K)`` px; zeros: none kept). Written here, not in place, so
        that steps know whether to keep parts apart."""
        if px.shape != self.apart_px.shape:
            raise ValueError(
                f"apart_px of shape {tuple(px.shape)}; expected {tuple(self.apart_px.shape)}"
            )
        self.apart_px.copy_(px)
        self._solid = bool(px.any())

    @torch.no_grad()
    def set_rest(self, px: float) -> None:
        """Set ``rest_px`` (px; 0: off)."""
        if not math.isfinite(px) or px < 0:
            raise ValueError(f"rest_px={px!r}; expected a finite number of pixels >= 0 (0: off)")
        self.rest_px.fill_(px)

    def calibration_off(self, name: str) -> None:
        """Turn the calibration ``name`` (one of ``calibrations``) off in this model."""
        if name == "rest_px":
            self.set_rest(0.0)
        elif name == "apart_px":
            self.set_apart(torch.zeros_like(self.apart_px))
        else:
            raise ValueError(f"calibration {name!r}; expected one of {list(self.calibrations)}")

    def model_args(self) -> dict[str, Any]:
        return dict(self._args)

    @property
    def has_presence(self) -> bool:
        return self.encoder.presence is not None

    @property
    def action_spec(self) -> ActionSpec:
        return ActionSpec(
            continuous=self._args["action_dim"],
            continuous_bound=float(3.0 * self.action_std.max()),
        )

    @torch.no_grad()
    def set_background(self, frames: torch.Tensor) -> None:
        """The per-pixel median of ``frames (N, 3, H, W)`` becomes the reference frame."""
        if frames.shape[1:] != self.background.shape:
            raise ValueError(
                f"background frames of shape {tuple(frames.shape)}; expected "
                f"(N, {', '.join(map(str, self.background.shape))})"
            )
        self.background.copy_(to_float_frames(frames).median(dim=0).values)

    # ------------------------------------------------------------------ perception
    def perceive(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``frames (B, T, 3, H, W)`` -> positions ``(B, T, K, 2)`` in [-1, 1] and presence
        ``(B, T, K)`` (None for a model without presence)."""
        b, t = frames.shape[:2]
        x = to_float_frames(frames).flatten(0, 1)
        pos, _, presence = self.encoder(x, self.background[None])
        if presence is not None:
            presence = presence.unflatten(0, (b, t))
        return pos.unflatten(0, (b, t)), presence

    def keypoints(self, frames: torch.Tensor) -> torch.Tensor:
        """``frames (B, T, 3, H, W)`` -> positions ``(B, T, K, 2)`` in [-1, 1]."""
        return self.perceive(frames)[0]

    def present(self, presence: torch.Tensor | None) -> torch.Tensor | None:
        """Perceived presence ``(..., K)`` -> 1 where a keypoint's part is in the frame (over
        ``PRESENT_FRACTION`` of its calibrated presence), else 0; None stays None (a model
        without presence)."""
        if presence is None:
            return None
        return (presence > PRESENT_FRACTION * self.presence_ref).to(presence.dtype)

    @torch.no_grad()
    def calibrate_presence(self, presence: torch.Tensor, quantile: float = 0.95) -> None:
        """Set each keypoint's reference presence from perceived presences ``(N, K)`` of
        training frames (``quantile`` of each column)."""
        if not self.has_presence:
            raise ValueError("calibrate_presence: this model was built with presence=False")
        self.presence_ref.copy_(torch.quantile(presence.float(), quantile, dim=0).clamp(min=1e-6))

    def keypoints_px(self, frames: torch.Tensor) -> torch.Tensor:
        """Keypoint pixel coordinates ``(B, T, K, 2)`` (x, y; 0 at the first pixel's centre)."""
        return to_pixels(self.keypoints(frames), self.image_size)

    def render(self, pos: torch.Tensor, presence: torch.Tensor | None = None) -> torch.Tensor:
        """Positions ``(N, K, 2)`` (and presence ``(N, K)``) -> frames ``(N, 3, H, W)``."""
        return self.renderer(pos, self.background[None], presence)

    # ------------------------------------------------------------------ the contract
    def encode(self, frames: torch.Tensor) -> KeypointState:
        pos, presence = self.perceive(frames)
        vel = pos[:, -1] - pos[:, -2] if pos.shape[1] > 1 else torch.zeros_like(pos[:, -1])
        last = None if presence is None else presence[:, -1]
        real = anchor = None
        if self.anchored:
            real = to_float_frames(frames[:, -1])
            anchor = self.render(pos[:, -1], last).to(real.dtype)
        return KeypointState(pos[:, -1], vel, last, real, anchor)

    def actions_between(
        self, pos: torch.Tensor, presence: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Keypoint tracks ``(B, T, K, 2)`` (and presence ``(B, T, K)``) -> latent actions
        ``(B, T-1, A)``."""
        b, t = pos.shape[:2]
        p = None if presence is None else self.present(presence[:, :-1].flatten(0, 1))
        a = self.inverse(pos[:, :-1].flatten(0, 1), pos[:, 1:].flatten(0, 1), p)
        return a.unflatten(0, (b, t - 1))

    def infer_actions(self, frames: torch.Tensor) -> Actions:
        return Actions(continuous=self.actions_between(*self.perceive(frames)))

    def step(self, state: KeypointState, actions: Actions) -> KeypointState:
        check_actions(self.action_spec, actions, batch=state.pos.shape[0])
        return self.advance(state, actions.continuous.to(state.pos.device, state.pos.dtype))

    def advance(self, state: KeypointState, action: torch.Tensor) -> KeypointState:
        """One step under a latent action tensor ``(B, A)``, unchecked; through the compiled
        step where ``compile_steps`` set one up and no gradient is needed."""
        solid = self._solid
        if self._compiled is None or torch.is_grad_enabled():
            return self._advance(state, action, solid)
        try:
            return self._compiled(state, action, solid)
        except Exception as e:
            if self._strict:
                raise
            out = self._advance(state, action, solid)  # an error of the step itself raises here
            warnings.warn(
                f"torch.compile failed ({type(e).__name__}: {e}); imagined steps run eagerly",
                stacklevel=3,
            )
            self._compiled = None
            return out

    def compile_steps(self, strict: bool = False) -> None:
        """Imagined steps without gradients (planners' rollouts) run through ``torch.compile``
        from here on: on a CPU a step's many small tensor operations become a few fused
        loops. The first batch sizes each compile, in seconds (then one dynamic-shape
        compilation serves the rest). Steps with gradients (training, fitting a grounding)
        stay eager; the weights and their state dict are unchanged. Where compiling fails at
        a first step, a warning says so and steps run eagerly, unless ``strict``."""
        self._compiled = torch.compile(self._advance)
        self._strict = strict

    @property
    def steps_compiled(self) -> bool:
        """Whether imagined steps without gradients run compiled (so far)."""
        return self._compiled is not None

    def _advance(
        self, state: KeypointState, action: torch.Tensor, solid: bool = True
    ) -> KeypointState:
        nxt = self.loose_step(state, action)
        if not solid:  # no pair kept apart: the same step without the pairs' work
            return nxt
        shift = self.keep_apart(state.pos, nxt.pos, self.present(nxt.presence))
        return KeypointState(nxt.pos + shift, nxt.vel + shift, nxt.presence, nxt.frame, nxt.anchor)

    def loose_step(self, state: KeypointState, action: torch.Tensor) -> KeypointState:
        """One imagined step before solid parts are kept apart (``keep_apart``), after
        ``rest_px``: for callers that keep them apart themselves (abduction, with some
        keypoints held at observed places)."""
        nxt = self.transition(state, action)[0]
        disp = self.settle(nxt.vel)
        return KeypointState(state.pos + disp, disp, nxt.presence, nxt.frame, nxt.anchor)

    def settle(self, disp: torch.Tensor, rest_px: float | None = None) -> torch.Tensor:
        """Imagined displacements ``(B, K, 2)`` with those of undriven keypoints shorter than
        ``rest_px`` (default: the model's) set to zero. No branch on the value: on a GPU a
        planner's steps do not wait for it."""
        rest = self.rest_px if rest_px is None else rest_px
        short = disp.norm(dim=-1, keepdim=True) * (self.image_size / 2) < rest
        undriven = ~self.dynamics.driven()[None, :, None]
        return torch.where(short & undriven, torch.zeros_like(disp), disp)

    def keep_apart(
        self,
        before: torch.Tensor,
        after: torch.Tensor,
        present: torch.Tensor | None = None,
        fixed: torch.Tensor | None = None,
        passes: int = 3,
    ) -> torch.Tensor:
        """The shift ``(B, K, 2)`` that keeps every pair of keypoints ``apart_px`` holds apart
        (undriven parts: objects) from ending a step ``before -> after`` (positions ``(B, K,
        2)``) closer than that, or than they were if they were closer already: along the line
        between them before the step. The overlap is shared in inverse proportion to how far
        each moved in the step: a box the arm pushes shoves the one it meets, which takes it
        all if it stood still. ``passes`` rounds resolve what one shove causes (a box shoved
        into a third object). ``present (B, K)``: absent keypoints meet nothing; ``fixed (B,
        K)`` bool: keypoints that keep their place (the other end takes the whole overlap).
        Zero where ``apart_px`` is 0; no branch on values (a planner's compiled step)."""
        gap = self.apart_px.to(after.dtype) * (2.0 / self.image_size)
        # x and y apart: (B, K, K) tensors only, which Inductor fuses well (a trailing pair
        # dimension of 2 compiles poorly). Square roots are kept off 0: a pair with itself, or
        # a zero overlap, has no gradient.
        bx, by = before[..., 0], before[..., 1]
        r0x, r0y = bx[:, :, None] - bx[:, None], by[:, :, None] - by[:, None]  # i minus j
        was = (r0x * r0x + r0y * r0y + 1e-12).sqrt()
        # Pushed apart along the line they met on (before the step): a step that carries one
        # onto or past the other's centre still shoves it forwards.
        nx, ny = r0x / was, r0y / was
        want = torch.minimum(gap, was)
        meet = want * want
        if present is not None:
            meet = meet * (present[:, :, None] * present[:, None])
        total = torch.zeros_like(after)
        for _ in range(passes):
            ax, ay = after[..., 0] + total[..., 0], after[..., 1] + total[..., 1]
            rx, ry = ax[:, :, None] - ax[:, None], ay[:, :, None] - ay[:, None]
            along = rx * nx + ry * ny
            across = (rx * rx + ry * ry - along * along).clamp_min(0)
            need = (meet - across).clamp_min(1e-12).sqrt()  # along the line, for `want`
            overlap = (need - along).clamp_min(0) * (across < meet)  # closer, or crossed
            mx, my = ax - bx, ay - by
            moved = (mx * mx + my * my + 1e-12).sqrt()
            share = moved[:, None] / (moved[:, :, None] + moved[:, None])  # i's: j's motion
            if fixed is not None:
                share = torch.where(fixed[:, None], torch.ones_like(share), share)
                share = share * ~fixed[:, :, None]
            push = share * overlap
            total = total + torch.stack([(push * nx).sum(2), (push * ny).sum(2)], dim=-1)
        return total

    def transition(
        self, state: KeypointState, action: torch.Tensor, moving: torch.Tensor | None = None
    ) -> tuple[KeypointState, torch.Tensor | None]:
        """One step and the moves-or-not logits ``(B, K)`` (None without the contact head);
        ``moving (B, K)``: decisions to use instead of the head's (training's loop)."""
        present = self.present(state.presence)
        disp, logit = self.dynamics(state.pos, state.vel, action, moving, present)
        nxt = KeypointState(state.pos + disp, disp, state.presence, state.frame, state.anchor)
        return nxt, logit

    def decode(self, state: KeypointState) -> torch.Tensor:
        frames = self.render(state.pos, state.presence)
        if state.frame is None or state.anchor is None:
            return frames
        return anchored(frames, state.anchor.to(frames.dtype), state.frame.to(frames.dtype))

    def rollout(self, context: torch.Tensor, actions: Actions) -> torch.Tensor:
        return protocol_rollout(self, context, actions)

    # ------------------------------------------------------------------ capabilities
    def teacher_forced(self, frames: torch.Tensor) -> torch.Tensor:
        """One-step predictions, each from the true frames up to the previous one under the
        action parsed between it and the next: ``(B, T, 3, H, W) -> (B, T-1, 3, H, W)``."""
        pos, presence = self.perceive(frames)
        b, t = pos.shape[:2]
        now = pos[:, :-1].flatten(0, 1)
        p = None if presence is None else presence[:, :-1].flatten(0, 1)
        nxt = now + self.settle(self.steps_from_tracks(pos, presence))
        nxt = nxt + self.keep_apart(now, nxt, self.present(p))
        pred = self.render(nxt, p)
        if self.anchored:  # each from its real previous frame, as decode does from encode's
            real = to_float_frames(frames[:, :-1]).flatten(0, 1)
            pred = anchored(pred, self.render(now, p).to(real.dtype), real)
        return pred.unflatten(0, (b, t - 1))

    def steps_from_tracks(
        self, pos: torch.Tensor, presence: torch.Tensor | None = None
    ) -> torch.Tensor:
        """One imagined step from every true state of keypoint tracks ``pos (B, T, K, 2)``
        (with its true last displacement) under the action parsed between it and the next:
        displacements ``(B * (T-1), K, 2)``, before ``rest_px``."""
        now = pos[:, :-1].flatten(0, 1)
        p = None if presence is None else self.present(presence[:, :-1].flatten(0, 1))
        acts = self.actions_between(pos, presence).flatten(0, 1)
        return self.dynamics(now, last_displacements(pos).flatten(0, 1), acts, presence=p)[0]

    def counterfactual(
        self, factual: torch.Tensor, start: torch.Tensor, actions: Actions | None = None
    ) -> torch.Tensor:
        """The counterfactual branch by abduction (abduction.py): keypoints the intervention
        does not reach follow the observed ``factual`` video, the rest the dynamics from
        ``start`` under ``actions`` (None: the factual video's, parsed)."""
        acts = None if actions is None else actions.continuous
        if actions is not None and acts is None:
            raise ValueError("counterfactual: a keypoint model's actions are continuous")
        return abduce(self, factual, start, acts).frames

    def state_positions_px(self, state: KeypointState) -> torch.Tensor:
        """Keypoint pixel coordinates of a state, ``(B, K, 2)``."""
        return to_pixels(state.pos, self.image_size)

    def embed(self, state: KeypointState) -> torch.Tensor:
        """Keypoint positions, ``(B, 2K)``: distances between states are distances between
        keypoints (an absent keypoint's are zero: where it wanders means nothing)."""
        present = self.present_parts(state)
        return (state.pos if present is None else state.pos * present[..., None]).flatten(1)

    def state_features(self, state: KeypointState) -> torch.Tensor:
        """Keypoint positions and last displacements, ``(B, 4K)`` (an absent keypoint's are
        zero): what the arm does next under a command depends on where it is and how it moves
        (its controller lags the command)."""
        present = self.present_parts(state)
        both = torch.cat([state.pos, state.vel], dim=-1)
        return (both if present is None else both * present[..., None]).flatten(1)

    def present_parts(self, state: KeypointState) -> torch.Tensor | None:
        """``(B, K)``: 1 for the keypoints whose part is in the scene (None: a model without
        presence, every keypoint is)."""
        return self.present(state.presence)

    def random_actions(self, batch: int, horizon: int, generator: torch.Generator) -> Actions:
        """Gaussian latent actions of the spread seen in training: ``(batch, horizon, A)``."""
        std = self.action_std.cpu()
        return Actions(continuous=torch.randn(batch, horizon, len(std), generator=generator) * std)
