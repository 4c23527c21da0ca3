"""The velocity network: a small U-Net over the noisy next frame and its conditions.

Inputs, stacked as channels at full resolution: the noisy target ``x_t``, the previous frame,
the memory frame (one earlier frame) and the control map (:mod:`.sparse`). The flow time ``t``
and the memory frame's log-distance are embedded and modulate every residual block (scale and
shift after the first normalization). At 1/8 resolution, self-attention over the frame tokens
and cross-attention from them to the control tokens (the control map cut into 8x8 tiles) carry
a poke anywhere in the frame to the objects it affects. The stem halves the resolution at once
(a 2x2 patch embedding), so most convolutions run at 32x32 and below: the CPU budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

TILE = 8  # control tokens: 8x8 tiles of the control map


@dataclass(frozen=True)
class YodaSize:
    widths: tuple[int, int, int]  # channels at 1/2, 1/4, 1/8 resolution
    blocks: int  # residual blocks per level
    heads: int  # attention heads at 1/8 resolution
    head_width: int  # channels of the full-resolution head


SIZES: dict[str, YodaSize] = {
    "xs": YodaSize(widths=(16, 32, 32), blocks=1, heads=2, head_width=8),
    "s": YodaSize(widths=(48, 96, 128), blocks=1, heads=4, head_width=24),
    "m": YodaSize(widths=(96, 192, 256), blocks=2, heads=8, head_width=48),
}


def sinusoidal(x: torch.Tensor, dim: int, max_period: float = 1000.0) -> torch.Tensor:
    """``x (B,)`` -> ``(B, dim)`` sin/cos features at geometric frequencies."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=x.device) / half)
    ang = x.float()[:, None] * freqs[None]
    return torch.cat([ang.sin(), ang.cos()], dim=1)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(1, cin), nn.Conv2d(cin, cout, 3, 1, 1)
        self.film = nn.Linear(emb, 2 * cout)
        self.norm2, self.conv2 = nn.GroupNorm(1, cout), nn.Conv2d(cout, cout, 3, 1, 1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(self.norm2(h) * (1 + scale) + shift)
        return self.skip(x) + self.conv2(h)


class AttentionBlock(nn.Module):
    """Self-attention over frame tokens, then cross-attention to control tokens."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm_self, self.norm_cross = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor, ctrl: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        t = rearrange(x, "b c h w -> b (h w) c")
        q = self.norm_self(t)
        t = t + self.self_attn(q, q, q, need_weights=False)[0]
        q = self.norm_cross(t)
        t = t + self.cross_attn(q, ctrl, ctrl, need_weights=False)[0]
        t = t + self.ff(self.norm_ff(t))
        return rearrange(t, "b (h w) c -> b c h w", h=h, w=w)


class VelocityNet(nn.Module):
    """``(x_t, t, prev, memory, log_distance, control_map) -> velocity``: ``x_t``, ``prev``,
    ``memory`` and the output are ``(B, channels, grid, grid)`` (frames: 3 channels at the
    image size; latents: the autoencoder's channels at its latent size), the control map
    ``(B, 3, image_size, image_size)``, ``t`` and ``log_distance`` ``(B,)``.

    ``patch``: the stem's patch size (2 for frames: most convolutions run at half
    resolution; 1 for a latent grid, already small). On a latent grid the control map enters
    the convolutions average-pooled to the grid, and its tokens at full resolution."""

    def __init__(
        self,
        size: YodaSize,
        image_size: int,
        channels: int = 3,
        grid: int | None = None,
        patch: int = 2,
    ) -> None:
        super().__init__()
        grid = image_size if grid is None else grid
        if image_size % TILE:
            raise ValueError(f"image_size={image_size}; expected a multiple of {TILE}")
        if image_size % grid or grid % (4 * patch):
            raise ValueError(
                f"grid={grid}, patch={patch}, image_size={image_size}; expected the grid to "
                "divide the image size and to be a multiple of 4 x patch"
            )
        c0, c1, c2 = size.widths
        emb = 4 * c0
        self.emb_dim = c0
        self.pool = image_size // grid  # control map -> the grid
        self.t_mlp = nn.Sequential(nn.Linear(c0, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.d_mlp = nn.Sequential(nn.Linear(c0, emb), nn.SiLU(), nn.Linear(emb, emb))
        cin = 3 * channels + 3
        self.stem = nn.Conv2d(cin, c0, patch, patch)  # patches: most convolutions run smaller
        self.enc0 = nn.ModuleList([ResBlock(c0, c0, emb) for _ in range(size.blocks)])
        self.down1 = nn.Conv2d(c0, c1, 3, 2, 1)
        self.enc1 = nn.ModuleList([ResBlock(c1, c1, emb) for _ in range(size.blocks)])
        self.down2 = nn.Conv2d(c1, c2, 3, 2, 1)
        self.mid1 = ResBlock(c2, c2, emb)
        self.attn = AttentionBlock(c2, size.heads)
        self.mid2 = ResBlock(c2, c2, emb)
        self.dec1 = nn.ModuleList(
            [ResBlock(c2 + c1 if i == 0 else c1, c1, emb) for i in range(size.blocks)]
        )
        self.dec0 = nn.ModuleList(
            [ResBlock(c1 + c0 if i == 0 else c0, c0, emb) for i in range(size.blocks)]
        )
        hw = size.head_width
        self.up = nn.ConvTranspose2d(c0, hw, patch, patch)  # back to the full grid
        self.head = nn.Sequential(
            nn.Conv2d(hw + cin, hw, 3, 1, 1),
            nn.GroupNorm(1, hw),
            nn.SiLU(),
            nn.Conv2d(hw, channels, 3, 1, 1),
        )
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)
        tokens = (image_size // TILE) ** 2
        self.ctrl_proj = nn.Linear(3 * TILE * TILE, c2)
        self.ctrl_pos = nn.Parameter(torch.randn(1, tokens, c2) * 0.02)

    def control_tokens(self, control: torch.Tensor) -> torch.Tensor:
        t = rearrange(control, "b c (h p) (w q) -> b (h w) (c p q)", p=TILE, q=TILE)
        return self.ctrl_proj(t) + self.ctrl_pos

    def forward(
        self,
        xt: torch.Tensor,
        t: torch.Tensor,
        prev: torch.Tensor,
        memory: torch.Tensor,
        log_distance: torch.Tensor,
        control: torch.Tensor,
        ctrl_tokens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        emb = self.t_mlp(sinusoidal(t * 1000.0, self.emb_dim)) + self.d_mlp(
            sinusoidal(log_distance * 100.0, self.emb_dim)
        )
        grid_control = F.avg_pool2d(control, self.pool) if self.pool > 1 else control
        x_in = torch.cat([xt, prev, memory, grid_control], dim=1)
        h = self.stem(x_in)
        for blk in self.enc0:
            h = blk(h, emb)
        s0 = h
        h = self.down1(h)
        for blk in self.enc1:
            h = blk(h, emb)
        s1 = h
        h = self.mid1(self.down2(h), emb)
        if ctrl_tokens is None:
            ctrl_tokens = self.control_tokens(control)
        h = self.mid2(self.attn(h, ctrl_tokens), emb)
        h = F.interpolate(h, scale_factor=2.0, mode="nearest")
        h = torch.cat([h, s1], dim=1)
        for blk in self.dec1:
            h = blk(h, emb)
        h = F.interpolate(h, scale_factor=2.0, mode="nearest")
        h = torch.cat([h, s0], dim=1)
        for blk in self.dec0:
            h = blk(h, emb)
        return self.head(torch.cat([self.up(h), x_in], dim=1))
