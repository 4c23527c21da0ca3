"""GLASS losses, one function each (known-answer tests in tests/test_glass.py).

The published VGG perceptual terms need downloaded weights; they are replaced here by an
offline image-gradient L1 (edges and texture, no network) with the same weights.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange


@dataclass(frozen=True)
class LossWeights:
    """Weights from the GLASS paper (Davtyan & Favaro 2022); ``*_gradient`` replace the VGG
    terms (their weights would be downloaded)."""

    reconstruction: float = 1.0
    foreground_shift: float = 1.0
    background_shift: float = 2.0
    background_gradient: float = 0.02
    binary_mask: float = 0.5
    mask_size: float = 0.1
    local_global_l1: float = 1.0
    local_local_l1: float = 1.0
    local_gradient: float = 1.0
    state: float = 0.2
    vq: float = 0.1
    mask_reconstruction: float = 0.2
    mask_size_target: float = 0.06  # expected foreground fraction of the frame
    # Not in GLASS: a warm start for the mask from frame differences (frames only, no labels).
    # The published GMA pretrains 3k steps on GPUs; on a CPU budget the mask otherwise tends to
    # collapse to empty before the shift regressor has learned anything. Decays to 0 over
    # ``motion_prior_steps`` (see GlassSchedule).
    motion_prior: float = 1.0


def motion_weights(
    frames: torch.Tensor, generated: torch.Tensor, bias: float = 0.0
) -> torch.Tensor:
    """|x_t+1 - x_t| + |g_t+1 - g_t| summed over channels (no gradient), plus ``bias``.

    frames (B, T, 3, H, W); generated (B, T-1, 3, H, W) for frames 1..T-1 -> (B, T-1, 1, H, W).
    """
    x = frames.detach()
    g = torch.cat([x[:, :1], generated.detach()], dim=1)
    w = (x[:, 1:] - x[:, :-1]).abs() + (g[:, 1:] - g[:, :-1]).abs()
    return w.sum(dim=2, keepdim=True) + bias


def local_motion_weights(
    targets: torch.Tensor, shifted: torch.Tensor, generated: torch.Tensor
) -> torch.Tensor:
    """Where the frame differs from its globally shifted predecessor or from the generation:
    the local motion. All (B, T-1, 3, H, W) -> (B, T-1, 1, H, W), no gradient."""
    w = (targets - shifted).abs() + (targets - generated).abs()
    return w.detach().sum(dim=2, keepdim=True)


def weighted_l1(
    target: torch.Tensor, pred: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    err = (target - pred).abs()
    return (err * weights).mean() if weights is not None else err.mean()


def foreground_shift_loss(foregrounds: torch.Tensor, shifted_fg: torch.Tensor) -> torch.Tensor:
    """L2 between f_t+1 and the globally shifted f_t."""
    return (foregrounds[:, 1:] - shifted_fg).pow(2).mean()


def background_shift_loss(backgrounds: torch.Tensor, shifted_bg: torch.Tensor) -> torch.Tensor:
    """L1 between b_t+1 and the shifted b_t."""
    return (backgrounds[:, 1:] - shifted_bg).abs().mean()


def gradient_l1(target: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """L1 between horizontal and vertical finite differences: an offline perceptual stand-in."""
    loss = 0.0
    for dim in (-1, -2):
        loss = loss + (torch.diff(target, dim=dim) - torch.diff(pred, dim=dim)).abs().mean()
    return loss


def binary_mask_loss(masks: torch.Tensor) -> torch.Tensor:
    """mean(min(m, 1 - m)): 0 for binary masks, 0.5 for m = 0.5 everywhere."""
    return torch.minimum(masks, 1 - masks).mean()


def mask_size_loss(masks: torch.Tensor, target: float) -> torch.Tensor:
    """|mean(m) - target| per frame, averaged."""
    return (masks.mean(dim=(-1, -2, -3)) - target).abs().mean()


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, T, C, H, W) -> (B, T, C, h, w), bilinear (area-like for downsampling by 2^k)."""
    b = x.shape[0]
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    y = F.interpolate(
        rearrange(x, "b t c h w -> (b t) c h w"), size=size, mode="bilinear", align_corners=False
    )
    return rearrange(y, "(b t) c h w -> b t c h w", b=b)


def multiscale_l1(
    target: torch.Tensor, preds: list[torch.Tensor], weights: torch.Tensor | None
) -> torch.Tensor:
    """Mean over scales of the (weighted) L1 between the resized target and each prediction."""
    total = 0.0
    for p in preds:
        size = tuple(p.shape[-2:])
        w = None if weights is None else resize(weights, size)
        total = total + weighted_l1(resize(target, size), p, w)
    return total / len(preds)


def moving_pixels(
    frames: torch.Tensor, threshold: float = 0.1, margin: int = 2
) -> tuple[torch.Tensor, torch.Tensor]:
    """A per-pixel foreground target from frame differences alone, and where it holds.

    A pixel of frame t is *moving* when it differs (channel-summed |diff| > ``threshold``) from
    both frame t-1 and frame t+1: something moved into it and out again, so it belongs to a
    moving thing at t. It is *static* when no pixel within ``margin`` differs from either
    neighbour. Pixels between the two (changed towards one neighbour only: where the mover is
    arriving or has just left; or near a change; or at a clip end) are left to the other losses.

    (B, T, 3, H, W) -> target and weight, both (B, T, 1, H, W) float {0, 1}, no gradient.
    """
    x = frames.detach()
    change = ((x[:, 1:] - x[:, :-1]).abs().sum(dim=2, keepdim=True) > threshold).float()
    zero = torch.zeros_like(change[:, :1])
    prev, nxt = torch.cat([zero, change], 1), torch.cat([change, zero], 1)  # vs t-1, vs t+1
    ends = torch.zeros_like(prev)
    ends[:, 0], ends[:, -1] = 1.0, 1.0  # one neighbour only: never "moving"
    moving = prev * nxt * (1 - ends)
    b = x.shape[0]
    near = F.max_pool2d(
        rearrange(torch.maximum(prev, nxt), "b t c h w -> (b t) c h w"), 2 * margin + 1, 1, margin
    )
    static = 1 - rearrange(near, "(b t) c h w -> b t c h w", b=b)
    return moving, torch.maximum(moving, static)


def motion_prior_loss(masks: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the masks against :func:`moving_pixels` where it holds."""
    target, weight = moving_pixels(frames)
    bce = F.binary_cross_entropy(masks.clamp(1e-4, 1 - 1e-4), target, reduction="none")
    return (bce * weight).sum() / weight.sum().clamp(min=1.0)


def glass_losses(
    out: dict[str, Any], w: LossWeights, gma_only: bool, motion_prior_scale: float = 0.0
) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss and its named terms (``train/loss/<name>``) from :meth:`Glass.forward`."""
    frames = out["frames"]
    terms: dict[str, torch.Tensor] = {}
    # GMA
    mw = motion_weights(frames, out["recon"], bias=0.001)
    terms["reconstruction"] = weighted_l1(frames[:, 1:], out["recon"], mw)
    terms["foreground_shift"] = foreground_shift_loss(out["foregrounds"], out["shifted_fg"])
    terms["background_shift"] = background_shift_loss(out["backgrounds"], out["shifted_bg"])
    terms["background_gradient"] = gradient_l1(out["backgrounds"][:, 1:], out["shifted_bg"])
    terms["binary_mask"] = binary_mask_loss(out["masks"])
    terms["mask_size"] = mask_size_loss(out["masks"], w.mask_size_target)
    if motion_prior_scale > 0:
        terms["motion_prior"] = motion_prior_scale * motion_prior_loss(out["masks"], frames)
    # LMA (on detached GMA outputs)
    if not gma_only:
        fg = out["foregrounds"].detach()[:, 1:]
        rendered = out["rendered"]
        gen = rendered[-1]
        gw = motion_weights(out["foregrounds"].detach(), gen)
        lw = local_motion_weights(fg, out["shifted_fg"].detach(), gen)
        terms["local_global_l1"] = multiscale_l1(fg, rendered, gw)
        terms["local_local_l1"] = multiscale_l1(fg, rendered, lw)
        terms["local_gradient"] = (
            sum(gradient_l1(resize(fg, tuple(r.shape[-2:])), r) for r in rendered) / 3
        )
        terms["state"] = (out["recon_states"] - out["states"][:, 1:].detach()).abs().mean()
        terms["vq"] = out["vq_loss"]
        terms["mask_reconstruction"] = (
            (out["rendered_masks"] - out["masks"][:, 1:].detach()).abs().mean()
        )
    weights = asdict(w)
    total = sum(weights[k] * v for k, v in terms.items())  # (motion_prior already scaled)
    return total, {k: float(v.detach()) for k, v in terms.items()}
