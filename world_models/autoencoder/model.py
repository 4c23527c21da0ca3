"""A convolutional frame autoencoder: frames <-> a small latent grid.

Trained from scratch on a dataset's frames, then frozen: latent YODA generates in its latent
space and decodes only when a frame is asked for. ``encode`` returns latents normalised per
channel by statistics measured on training frames (the flow-matching noise has unit variance,
so the data it is matched to should too).
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from latentplay.utils.frames import to_float_frames
from latentplay.utils.io import sha256_file
from latentplay.world_models.checkpoint_format import CheckpointMismatchError, read_checkpoint
from latentplay.world_models.shipped import resolve_checkpoint


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(1, cout), nn.SiLU())


class _Residual(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_block(width, width), nn.Conv2d(width, width, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class FrameAutoencoder(nn.Module):
    """``(N, 3, S, S)`` frames <-> ``(N, latent_channels, S / downsample, S / downsample)``.

    ``downsample``: 2, 4 or 8 (one stride-2 stage each); ``width``: channels of the first
    stage (doubling per stage, at most ``4 * width``)."""

    name: ClassVar[str] = "autoencoder"

    def __init__(
        self,
        *,
        image_size: int = 64,
        latent_channels: int = 8,
        downsample: int = 4,
        width: int = 16,
    ) -> None:
        super().__init__()
        if downsample not in (2, 4, 8):
            raise ValueError(f"downsample={downsample}; expected 2, 4 or 8")
        if image_size % downsample:
            raise ValueError(
                f"image_size={image_size}; expected a multiple of downsample={downsample}"
            )
        if latent_channels < 1 or width < 1:
            raise ValueError(
                f"latent_channels={latent_channels}, width={width}; expected each >= 1"
            )
        self._args = {
            "image_size": image_size,
            "latent_channels": latent_channels,
            "downsample": downsample,
            "width": width,
        }
        self.image_size, self.latent_channels = image_size, latent_channels
        self.latent_size = image_size // downsample
        stages = {2: 1, 4: 2, 8: 3}[downsample]
        widths = [min(width * 2**i, 4 * width) for i in range(stages + 1)]
        enc: list[nn.Module] = [_block(3, widths[0])]
        for a, b in pairwise(widths):
            enc += [nn.Conv2d(a, b, 4, stride=2, padding=1), _Residual(b)]
        enc += [nn.GroupNorm(1, widths[-1]), nn.SiLU(), nn.Conv2d(widths[-1], latent_channels, 1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(latent_channels, widths[-1], 3, padding=1)]
        dec += [_Residual(widths[-1])]
        for a, b in pairwise(widths[::-1]):
            dec += [nn.ConvTranspose2d(a, b, 4, stride=2, padding=1), _Residual(b)]
        dec += [nn.GroupNorm(1, widths[0]), nn.SiLU(), nn.Conv2d(widths[0], 3, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)
        # Per-channel statistics of the raw latents over training frames (set_statistics).
        self.register_buffer("latent_mean", torch.zeros(latent_channels))
        self.register_buffer("latent_std", torch.ones(latent_channels))

    def model_args(self) -> dict[str, Any]:
        return dict(self._args)

    def _check(self, frames: torch.Tensor) -> None:
        want = (3, self.image_size, self.image_size)
        if frames.ndim != 4 or tuple(frames.shape[1:]) != want:
            raise ValueError(
                f"frames of shape {tuple(frames.shape)}; expected (N, {', '.join(map(str, want))})"
            )

    def encode_raw(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames ``(N, 3, S, S)`` (uint8 or float in [0, 1]) -> unnormalised latents."""
        self._check(frames)
        return self.encoder(to_float_frames(frames) * 2 - 1)

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        """Unnormalised latents -> frames float in [0, 1]."""
        return torch.sigmoid(self.decoder(z).float())

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames -> latents normalised to zero mean, unit std per channel."""
        z = self.encode_raw(frames)
        return (z - self.latent_mean[:, None, None]) / self.latent_std[:, None, None]

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents ``(N, C, s, s)`` -> frames ``(N, 3, S, S)`` float in [0, 1]."""
        want = (self.latent_channels, self.latent_size, self.latent_size)
        if latents.ndim != 4 or tuple(latents.shape[1:]) != want:
            raise ValueError(
                f"latents of shape {tuple(latents.shape)}; expected "
                f"(N, {', '.join(map(str, want))})"
            )
        z = latents * self.latent_std[:, None, None] + self.latent_mean[:, None, None]
        return self.decode_raw(z)

    def reconstruct(self, frames: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(frames))

    @torch.no_grad()
    def set_statistics(self, frames: torch.Tensor, chunk: int = 256) -> None:
        """Per-channel mean and std of the raw latents of ``frames (N, 3, S, S)``."""
        z = torch.cat(
            [self.encode_raw(frames[i : i + chunk]) for i in range(0, len(frames), chunk)]
        )
        z = z.float().transpose(0, 1).flatten(1)
        self.latent_mean.copy_(z.mean(1))
        self.latent_std.copy_(z.std(1).clamp(min=1e-4))


def image_gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal and vertical finite differences of ``(N, C, H, W)``."""
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def edge_loss(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between the image gradients of two batches: sharp object edges."""
    (rx, ry), (tx, ty) = image_gradients(recon), image_gradients(target)
    return F.l1_loss(rx, tx) + F.l1_loss(ry, ty)


def load_autoencoder(path: str | Path, sha256: str | None = None) -> tuple[FrameAutoencoder, str]:
    """The frozen autoencoder of checkpoint ``path`` (or of the shipped model of that name)
    and the file's sha256. With ``sha256`` (the one a latent model was trained on), a file
    with other content is refused: a latent model decodes nonsense through another
    autoencoder."""
    path = resolve_checkpoint(path)
    digest = sha256_file(path)
    if sha256 is not None and digest != sha256:
        raise CheckpointMismatchError(
            f"{path}: sha256 {digest[:16]}...; the model was trained on the autoencoder with "
            f"sha256 {sha256[:16]}... Pass that checkpoint (a retrained autoencoder has "
            "another latent space)"
        )
    ckpt = read_checkpoint(path)
    if ckpt["model_name"] != FrameAutoencoder.name:
        raise CheckpointMismatchError(
            f"{path}: a {ckpt['model_name']!r} checkpoint; expected an autoencoder "
            "(scripts/train.py model=autoencoder)"
        )
    model = FrameAutoencoder(**ckpt["model_args"])
    model.load_state_dict(ckpt["model"])
    model.requires_grad_(False)
    return model.eval(), digest
