"""Unsupervised keypoints by conditional image generation (after Jakab et al. 2018).

An encoder turns a frame into K heatmaps; a spatial softmax over each (its logits standardised
over space, then scaled by a learned temperature: raw logits leave the heatmaps uniform) gives
the keypoint's position. A generator rebuilds the frame from one Gaussian blob per keypoint,
each in its own channel, over a reference frame: the background, the per-pixel median of
training frames. Because the reference shows no objects, every object in a frame, moving or
not, must be drawn from a keypoint (Transporter's reference is another frame of the clip, where
objects that do not move are already drawn and get no keypoint). Because a keypoint's channel
is all the generator knows of it, keypoint k must be the same thing in every frame (per-frame
appearance features would let keypoints trade objects between frames).

Coordinates are ``(x, y)`` in ``[-1, 1]`` (+x right, +y down; pixel centres of the frame).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# A pixel whose rendering changed by this much (colour differences summed; within a pixel of
# it) is drawn from the rendering alone; less, and the real frame shows through in proportion.
CHANGED = 0.5


def unchanged(frames: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    """``(N, 1, H, W)`` in [0, 1]: 1 where renderings ``frames (N, 3, H, W)`` equal ``anchor``
    within a pixel, 0 where they differ by ``CHANGED`` or more."""
    change = (frames - anchor).abs().sum(1, keepdim=True)
    return 1.0 - (F.max_pool2d(change, 3, stride=1, padding=1) / CHANGED).clamp(max=1.0)


def pixel_grid(size: int, device: torch.device | None = None) -> torch.Tensor:
    """``(size * size, 2)`` centres ``(x, y)`` in [-1, 1] of a ``size`` x ``size`` grid,
    row-major."""
    c = (torch.arange(size, device=device, dtype=torch.float32) + 0.5) / size * 2 - 1
    y, x = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([x.flatten(), y.flatten()], dim=-1)


def to_pixels(points: torch.Tensor, image_size: int) -> torch.Tensor:
    """[-1, 1] coordinates -> pixel coordinates (0 at the first pixel's centre)."""
    return (points + 1) * image_size / 2 - 0.5


def foreground(frames: torch.Tensor, background: torch.Tensor, scale: float) -> torch.Tensor:
    """How much each pixel differs from the background, ``(N, 1, H, W)`` in [0, 1]: the summed
    absolute colour difference over ``scale`` (frames float in [0, 1])."""
    return ((frames - background).abs().sum(dim=1, keepdim=True) / scale).clamp(max=1.0)


def _conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation),
        nn.GroupNorm(1, cout),
        nn.SiLU(),
    )


class KeypointEncoder(nn.Module):
    """Frame (and its difference from the background) -> K positions. Heatmaps are at half the
    frame's resolution; positions are their softmax-weighted means.

    ``presence``: each keypoint also gets a presence in [0, 1] (after Minderer et al.'s
    keypoint intensity), a second map's logit read where the keypoint attends: a keypoint
    whose object is not in the scene can switch off instead of hiding somewhere (under the
    arm) and being carried along with it."""

    def __init__(self, num_keypoints: int, width: int, presence: bool = False) -> None:
        super().__init__()
        w = width
        self.net = nn.Sequential(
            _conv(6, w, stride=2),
            _conv(w, 2 * w),
            _conv(2 * w, 2 * w, dilation=2),
            _conv(2 * w, 2 * w, dilation=4),
        )
        self.heat = nn.Conv2d(2 * w, num_keypoints, 1)
        self.log_temperature = nn.Parameter(torch.tensor(1.5))  # e^1.5 ~ 4.5 std units
        self.presence = nn.Conv2d(2 * w, num_keypoints, 1) if presence else None
        if self.presence is not None:  # keypoints start present (sigmoid(2) ~ 0.88)
            nn.init.constant_(self.presence.bias, 2.0)

    def forward(
        self, frames: torch.Tensor, background: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``frames (N, 3, H, W)`` float -> positions ``(N, K, 2)``, attention
        ``(N, K, (H/2)^2)``, presence ``(N, K)`` (None without the presence head)."""
        h = self.net(torch.cat([frames, frames - background], dim=1))
        logits = self.heat(h).flatten(2).float()
        logits = (logits - logits.mean(-1, keepdim=True)) / (logits.std(-1, keepdim=True) + 1e-5)
        attn = torch.softmax(logits * self.log_temperature.exp(), dim=-1)
        grid = pixel_grid(h.shape[-1], h.device)
        presence = None
        if self.presence is not None:
            presence = torch.sigmoid((attn * self.presence(h).flatten(2).float()).sum(-1))
        return attn @ grid, attn, presence


def gaussian_maps(pos: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """``(N, K, 2)`` positions -> ``(N, K, size, size)`` Gaussian blobs of std ``sigma``
    (in [-1, 1] units), peak 1."""
    grid = pixel_grid(size, pos.device)  # (S, 2)
    d2 = (grid[None, None] - pos[:, :, None]).pow(2).sum(-1)
    return torch.exp(-d2 / (2 * sigma**2)).unflatten(-1, (size, size))


class KeypointRenderer(nn.Module):
    """Keypoints (a Gaussian blob each, in its own channel) over the background -> frame: RGB
    and an alpha that blends it over the background, so the background costs the net nothing."""

    def __init__(self, num_keypoints: int, width: int, sigma: float) -> None:
        super().__init__()
        w, self.sigma = width, sigma
        self.net = nn.Sequential(
            _conv(num_keypoints + 3, 2 * w),
            _conv(2 * w, 2 * w, dilation=2),
            _conv(2 * w, 2 * w),
        )
        self.out = nn.ConvTranspose2d(2 * w, 4, 4, stride=2, padding=1)

    def forward(
        self, pos: torch.Tensor, background: torch.Tensor, presence: torch.Tensor | None = None
    ) -> torch.Tensor:
        """positions ``(N, K, 2)``, background ``(1 or N, 3, H, W)``, presence ``(N, K)``
        scaling each blob (None: all present) -> frames ``(N, 3, H, W)`` float in [0, 1]."""
        n, size = pos.shape[0], background.shape[-1] // 2
        g = gaussian_maps(pos, size, self.sigma)
        if presence is not None:
            g = g * presence[..., None, None].to(g.dtype)
        bg_small = F.avg_pool2d(background, 2).expand(n, -1, -1, -1)
        out = self.out(self.net(torch.cat([g, bg_small], dim=1))).float()
        rgb, alpha = torch.sigmoid(out[:, :3]), torch.sigmoid(out[:, 3:])
        return alpha * rgb + (1 - alpha) * background


def coverage_loss(pos: torch.Tensor, fg: torch.Tensor, temperature: float = 0.01) -> torch.Tensor:
    """Mean (soft) squared distance from each foreground pixel to its nearest keypoint,
    weighted by how foreground the pixel is: a k-means objective on the foreground, so that
    every object, moving or not, draws a keypoint. ``pos (N, K, 2)``, ``fg (N, 1, S, S)``."""
    grid = pixel_grid(fg.shape[-1], pos.device)
    d2 = (grid[None, :, None] - pos[:, None]).pow(2).sum(-1)  # (N, S*S, K)
    nearest = -temperature * torch.logsumexp(-d2 / temperature, dim=-1)
    w = fg.flatten(1)
    return (w * nearest).sum() / w.sum().clamp(min=1e-6)


def separation_loss(pos: torch.Tensor, sigma: float) -> torch.Tensor:
    """Keypoints repel within ``sigma`` (Minderer et al.): mean over pairs of a Gaussian of
    their distance."""
    k = pos.shape[1]
    d2 = (pos[:, :, None] - pos[:, None]).pow(2).sum(-1)
    off = ~torch.eye(k, dtype=torch.bool, device=pos.device)
    return torch.exp(-d2 / (2 * sigma**2))[:, off].mean()
