"""The keypoint world model's state (model.py), shared with abduction.py."""

from __future__ import annotations

from dataclasses import dataclass

import torch


def displacements(pos: torch.Tensor) -> torch.Tensor:
    """Tracks ``(B, T, K, 2)`` -> each frame's displacement from the one before, zero for the
    first (nothing before it): ``(B, T, K, 2)``."""
    return torch.cat([torch.zeros_like(pos[:, :1]), pos[:, 1:] - pos[:, :-1]], dim=1)


@dataclass
class KeypointState:
    pos: torch.Tensor  # (B, K, 2) in [-1, 1]
    vel: torch.Tensor  # (B, K, 2) the last step's displacement
    presence: torch.Tensor | None = None  # (B, K) in [0, 1]; None: a model without presence
    # (B, 3, H, W): the last real frame (float) and its rendering from its own keypoints
    # (encode); None: decode from the keypoints alone
    frame: torch.Tensor | None = None
    anchor: torch.Tensor | None = None
