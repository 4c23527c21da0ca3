"""The keypoint world model: unsupervised keypoints, a latent action that drives the arm's
keypoints only, interaction dynamics over keypoints, frames rendered from keypoints over the
background.

State: keypoint positions and their last displacement.
Positions are explicit, so a planner's cost can be a distance between states (``embed``) and
an intervention is an edit of a node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from latentplay.utils.frames import to_float_frames
from latentplay.world_models.keypoints.dynamics import InteractionDynamics, InverseDynamics
from latentplay.world_models.keypoints.perception import (
    KeypointEncoder,
    KeypointRenderer,
    to_pixels,
)
from latentplay.world_models.protocol import Actions, ActionSpec, check_actions
from latentplay.world_models.protocol import rollout as protocol_rollout


@dataclass
class KeypointState:
    pos: torch.Tensor  # (B, K, 2) in [-1, 1]
    vel: torch.Tensor  # (B, K, 2) the last step's displacement


class Keypoints(nn.Module):
    """Keypoint world model. Keyword arguments only; ``model_args()`` rebuilds it.

    ``num_keypoints``: K (default 8: the arm and paddle take a few, each object one);
    ``action_dim``: latent action size;
    ``width``: conv width of the encoder and renderer; ``hidden``: MLP width of the dynamics;
    ``sigma``: the rendered blobs' std in [-1, 1] units;
    ``contact``: a moves-or-not decision per keypoint gates its displacement (dynamics.py).
    """

    name: ClassVar[str] = "keypoints"

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
        }
        self.image_size, self.num_keypoints = image_size, num_keypoints
        self.encoder = KeypointEncoder(num_keypoints, width)
        self.renderer = KeypointRenderer(num_keypoints, width, sigma)
        self.inverse = InverseDynamics(num_keypoints, action_dim, hidden)
        self.dynamics = InteractionDynamics(num_keypoints, action_dim, hidden, contact=contact)
        # The reference frame: the per-pixel median of training frames (set_background).
        self.register_buffer("background", torch.zeros(3, image_size, image_size))
        # Spread of the latent actions seen in training (EMA), for planners' sampling range.
        self.register_buffer("action_std", torch.full((action_dim,), 0.1))

    def model_args(self) -> dict[str, Any]:
        return dict(self._args)

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
    def keypoints(self, frames: torch.Tensor) -> torch.Tensor:
        """``frames (B, T, 3, H, W)`` -> positions ``(B, T, K, 2)`` in [-1, 1]."""
        b, t = frames.shape[:2]
        x = to_float_frames(frames).flatten(0, 1)
        return self.encoder(x, self.background[None])[0].unflatten(0, (b, t))

    def keypoints_px(self, frames: torch.Tensor) -> torch.Tensor:
        """Keypoint pixel coordinates ``(B, T, K, 2)`` (x, y; 0 at the first pixel's centre)."""
        return to_pixels(self.keypoints(frames), self.image_size)

    def render(self, pos: torch.Tensor) -> torch.Tensor:
        """Positions ``(N, K, 2)`` -> frames ``(N, 3, H, W)``."""
        return self.renderer(pos, self.background[None])

    # ------------------------------------------------------------------ the contract
    def encode(self, frames: torch.Tensor) -> KeypointState:
        pos = self.keypoints(frames)
        vel = pos[:, -1] - pos[:, -2] if pos.shape[1] > 1 else torch.zeros_like(pos[:, -1])
        return KeypointState(pos[:, -1], vel)

    def actions_between(self, pos: torch.Tensor) -> torch.Tensor:
        """Keypoint tracks ``(B, T, K, 2)`` -> latent actions ``(B, T-1, A)``."""
        b, t = pos.shape[:2]
        a = self.inverse(pos[:, :-1].flatten(0, 1), pos[:, 1:].flatten(0, 1))
        return a.unflatten(0, (b, t - 1))

    def infer_actions(self, frames: torch.Tensor) -> Actions:
        return Actions(continuous=self.actions_between(self.keypoints(frames)))

    def step(self, state: KeypointState, actions: Actions) -> KeypointState:
        check_actions(self.action_spec, actions, batch=state.pos.shape[0])
        return self.advance(state, actions.continuous.to(state.pos.device, state.pos.dtype))

    def advance(self, state: KeypointState, action: torch.Tensor) -> KeypointState:
        """One step under a latent action tensor ``(B, A)``, unchecked."""
        return self.transition(state, action)[0]

    def transition(
        self, state: KeypointState, action: torch.Tensor, moving: torch.Tensor | None = None
    ) -> tuple[KeypointState, torch.Tensor | None]:
        """One step and the moves-or-not logits ``(B, K)`` (None without the contact head);
        ``moving (B, K)``: decisions to use instead of the head's (training's loop)."""
        disp, logit = self.dynamics(state.pos, state.vel, action, moving)
        return KeypointState(state.pos + disp, disp), logit

    def decode(self, state: KeypointState) -> torch.Tensor:
        return self.render(state.pos)

    def rollout(self, context: torch.Tensor, actions: Actions) -> torch.Tensor:
        return protocol_rollout(self, context, actions)

    # ------------------------------------------------------------------ capabilities
    def teacher_forced(self, frames: torch.Tensor) -> torch.Tensor:
        """One-step predictions, each from the true frames up to the previous one under the
        action parsed between it and the next: ``(B, T, 3, H, W) -> (B, T-1, 3, H, W)``."""
        pos = self.keypoints(frames)
        b, t = pos.shape[:2]
        vel = torch.cat([torch.zeros_like(pos[:, :1]), pos[:, 1:-1] - pos[:, :-2]], dim=1)
        now = pos[:, :-1].flatten(0, 1)
        disp, _ = self.dynamics(now, vel.flatten(0, 1), self.actions_between(pos).flatten(0, 1))
        return self.render(now + disp).unflatten(0, (b, t - 1))

    def state_positions_px(self, state: KeypointState) -> torch.Tensor:
        """Keypoint pixel coordinates of a state, ``(B, K, 2)``."""
        return to_pixels(state.pos, self.image_size)

    def embed(self, state: KeypointState) -> torch.Tensor:
        """Keypoint positions, ``(B, 2K)``: distances between states are distances between
        keypoints."""
        return state.pos.flatten(1)

    def random_actions(self, batch: int, horizon: int, generator: torch.Generator) -> Actions:
        """Gaussian latent actions of the spread seen in training: ``(batch, horizon, A)``."""
        std = self.action_std.cpu()
        return Actions(continuous=torch.randn(batch, horizon, len(std), generator=generator) * std)
