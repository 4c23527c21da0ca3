"""GLASS's global motion analysis on its own, as a world model of the global action.

GLASS's GMA already *is* a generative model of the agent's global motion: the next frame is
the foreground shifted by Δ_F composited over the background (the GMA reconstruction it is
trained on). Rolled out without the LMA, it costs two image shifts per step instead of the
LMA's ConvLSTM, renderer and encoder (~100x fewer operations), which is what lets a CPU
planner score 300 x 5 x 10 imagined transitions in well under a second. It ignores the local
actions (the wrist), so the action spec has the continuous shift only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from latentplay.utils.frames import to_float_frames
from latentplay.world_models.glass.model import Glass, over
from latentplay.world_models.layers import shift_images
from latentplay.world_models.protocol import (
    Actions,
    ActionSpec,
    check_actions,
    rollout,
)


def mask_centroid(mask: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) soft masks -> their centroids (B, 2), x then y in normalized [-1, 1]
    units (pixel centres; the units of the global shift)."""
    m = mask[:, 0]
    h, w = m.shape[-2:]
    ys = torch.linspace(-1 + 1 / h, 1 - 1 / h, h, device=m.device)
    xs = torch.linspace(-1 + 1 / w, 1 - 1 / w, w, device=m.device)
    area = m.sum(dim=(1, 2)).clamp(min=1e-6)
    return torch.stack([(m.sum(1) * xs).sum(1) / area, (m.sum(2) * ys).sum(1) / area], 1)


@dataclass
class GlobalState:
    """The context's foreground and mask, and the total shift so far. Stepping only adds to
    the shift; the shifted images are made when read (one resampling from the context, so
    no blur accumulates), and a planner scoring the state's embedding never makes them."""

    background: torch.Tensor  # (B, 3, H, W) inpainted background (static)
    shift: torch.Tensor  # (B, 2) total shift so far
    origin_fg: torch.Tensor  # (B, 3, H, W) the context's foreground
    origin_mask: torch.Tensor  # (B, 1, H, W)
    origin_centroid: torch.Tensor  # (B, 2) centroid of origin_mask

    @property
    def foreground(self) -> torch.Tensor:
        return shift_images(self.origin_fg, self.shift)

    @property
    def mask(self) -> torch.Tensor:
        return shift_images(self.origin_mask, self.shift)


class GlassGlobal:
    """``WorldModel`` view of a trained :class:`Glass`: global shifts only (see module doc)."""

    name = "glass-global"

    def __init__(self, glass: Glass) -> None:
        self.glass = glass
        self.image_size = glass.image_size
        spec = glass.action_spec
        self.action_spec = ActionSpec(continuous=2, continuous_bound=spec.continuous_bound)

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> GlobalState:
        x = to_float_frames(frames)[:, -1:]
        mask = self.glass.masks(x)
        bg = self.glass.inpaint(x, mask)[:, 0]
        fg, m = (mask * x)[:, 0], mask[:, 0]
        return GlobalState(bg, x.new_zeros(x.shape[0], 2), fg, m, mask_centroid(m))

    @torch.no_grad()
    def infer_actions(self, frames: torch.Tensor) -> Actions:
        return Actions(self.glass.infer_actions(frames).continuous, None)

    @torch.no_grad()
    def step(self, state: GlobalState, actions: Actions) -> GlobalState:
        if actions.continuous is None:
            raise ValueError("GlassGlobal steps need the continuous (global shift) action")
        check_actions(self.action_spec, actions, batch=state.shift.shape[0])
        return replace(state, shift=state.shift + actions.continuous)

    def decode(self, state: GlobalState) -> torch.Tensor:
        return over(state.foreground, state.mask, state.background)

    def embed(self, state: GlobalState) -> torch.Tensor:
        """The foreground mask's centroid (x, y in [-1, 1]): where the agent is. A translation
        moves it by the shift, exactly while the mask stays inside the frame, so no image is
        made (the planning cost of ``space=state``)."""
        return state.origin_centroid + state.shift

    @torch.no_grad()
    def rollout(self, context: torch.Tensor, actions: Actions) -> torch.Tensor:
        return rollout(self, context, actions)
