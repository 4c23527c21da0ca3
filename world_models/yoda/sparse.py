"""Sparse flow controls: k pixels drawn in proportion to flow magnitude, rasterized as maps.

A control is a set of ``k`` points ``(x, y)`` in pixels (column, row of the frame) with motion
vectors ``(dx, dy)`` in pixels per step. The network sees it as a ``(3, H, W)`` map holding
``(dx / scale, dy / scale, 1)`` at each point and zeros elsewhere (the third channel says where
a control is), and as tokens made of its tiles. A dropped control (condition dropout, so the
model also runs unconditioned) is replaced by noise, at training and at inference alike.
"""

from __future__ import annotations

import torch


def sample_points(
    flow: torch.Tensor, k: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``k`` pixels per flow field ``(B, 2, H, W)`` with probability proportional to the
    flow's magnitude (with replacement); a field that is zero everywhere falls back to uniform.

    Returns ``points (B, k, 2)`` long ``(x, y)`` and ``vectors (B, k, 2)`` float ``(dx, dy)``.
    """
    if flow.ndim != 4 or flow.shape[1] != 2:
        raise ValueError(f"flow of shape {tuple(flow.shape)}; expected (B, 2, H, W)")
    if k < 1:
        raise ValueError(f"k={k}; expected >= 1 control points")
    w = flow.shape[-1]
    flow = torch.nan_to_num(flow.float(), nan=0.0, posinf=0.0, neginf=0.0)  # broken: no flow
    # hypot, not norm(dim=1): a norm over a leading dim is far slower on CPU
    mag = torch.hypot(flow[:, 0], flow[:, 1]).flatten(1)  # (B, H*W)
    total = mag.sum(dim=1, keepdim=True)
    weights = torch.where(total > 0, mag, torch.ones_like(mag))  # zero flow: uniform
    idx = torch.multinomial(weights, k, replacement=True, generator=generator)  # (B, k)
    points = torch.stack([idx % w, idx // w], dim=-1)
    vectors = flow.flatten(2).gather(2, idx[:, None].expand(-1, 2, -1)).transpose(1, 2)
    return points, vectors.float()


def rasterize(
    points: torch.Tensor,
    vectors: torch.Tensor,
    size: tuple[int, int],
    scale: float,
    present: torch.Tensor | None = None,
    spread: float = 0.0,
) -> torch.Tensor:
    """Control maps ``(B, 3, H, W)``: ``(dx / scale, dy / scale, 1)`` at each present point.

    ``points (B, k, 2)`` ``(x, y)`` pixels (rounded, clamped into the frame); ``vectors (B, k,
    2)`` pixels per step; ``present (B, k)`` bool (default: all). Two points on one pixel: the
    later one wins. ``spread > 0``: each point becomes a Gaussian blob of that standard
    deviation in pixels (peak value as above; overlapping blobs add up).
    """
    if points.shape != vectors.shape or points.ndim != 3 or points.shape[-1] != 2:
        raise ValueError(
            f"points {tuple(points.shape)} and vectors {tuple(vectors.shape)}; expected both "
            "(B, k, 2)"
        )
    h, w = size
    b, k, _ = points.shape
    if present is None:
        present = torch.ones(b, k, dtype=torch.bool, device=points.device)
    x = points[..., 0].round().long().clamp(0, w - 1)
    y = points[..., 1].round().long().clamp(0, h - 1)
    flat = (y * w + x).masked_fill(~present, h * w)  # absent points go to a spare cell
    values = torch.cat([vectors.float() / scale, torch.ones(b, k, 1, device=vectors.device)], -1)
    out = torch.zeros(b, 3, h * w + 1, device=vectors.device)
    out.scatter_(2, flat[:, None].expand(-1, 3, -1), values.transpose(1, 2))
    out = out[:, :, : h * w].reshape(b, 3, h, w)
    if spread > 0:
        r = max(1, round(3 * spread))
        g = torch.exp(-torch.arange(-r, r + 1, device=out.device).float().pow(2) / (2 * spread**2))
        kernel = (g[:, None] * g[None, :]).expand(3, 1, -1, -1)
        out = torch.nn.functional.conv2d(out, kernel, padding=r, groups=3)
    return out


def drop_conditions(
    maps: torch.Tensor, p: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample condition dropout: with probability ``p`` a sample's map becomes noise.
    Returns ``(maps, dropped (B,) bool)``."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"condition dropout p={p}; expected a probability in [0, 1]")
    b = maps.shape[0]
    dropped = torch.rand(b, generator=generator, device=maps.device) < p
    if dropped.any():
        noise = null_condition(maps.shape, maps.device, generator)
        maps = torch.where(dropped[:, None, None, None], noise, maps)
    return maps, dropped


def null_condition(
    shape: torch.Size | tuple[int, ...],
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The map of "no control": Gaussian noise (what condition dropout trained on)."""
    return torch.randn(shape, generator=generator, device=device)
