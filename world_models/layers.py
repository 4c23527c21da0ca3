"""Small layers shared by the world models: conv blocks, image shifts, ConvLSTM, VQ."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from latentplay.world_models import distributed


def conv_block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv + GroupNorm(1 group: cheap, batch-size free) + SiLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
        nn.GroupNorm(1, cout),
        nn.SiLU(inplace=True),
    )


class UpBlock(nn.Module):
    """x2 nearest upsampling, concatenation of an optional skip, conv block."""

    def __init__(self, cin: int, cout: int, skip: int = 0) -> None:
        super().__init__()
        self.conv = conv_block(cin + skip, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv(x)


def shift_images(
    images: torch.Tensor, shifts: torch.Tensor, padding: str = "zeros"
) -> torch.Tensor:
    """Translate ``images (N, C, H, W)`` by ``shifts (N, 2)`` in normalized units.

    Content moves by ``+shift``: x right, y down; one unit is half the width (height), so a
    shift of ``2 / W`` moves content one pixel right (``align_corners=False``).
    """
    n = images.shape[0]
    theta = images.new_zeros(n, 2, 3)
    theta[:, 0, 0] = 1.0
    theta[:, 1, 1] = 1.0
    theta[:, :, 2] = -shifts  # output(p) = input(p - shift)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode=padding, align_corners=False)


def warp_images(images: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Move the content of ``images (N, C, H, W)`` by a dense ``flow (N, 2, H, W)`` in the units
    of :func:`shift_images` (x then y; ``output(p) = input(p - flow(p))``, bilinear, zeros
    outside). A constant flow equals :func:`shift_images` by the same shift."""
    h, w = images.shape[-2:]
    ys = torch.linspace(-1 + 1 / h, 1 - 1 / h, h, device=images.device, dtype=images.dtype)
    xs = torch.linspace(-1 + 1 / w, 1 - 1 / w, w, device=images.device, dtype=images.dtype)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # (H, W, 2)
    grid = grid.unsqueeze(0) - flow.permute(0, 2, 3, 1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class ShiftRegressor(nn.Module):
    """Reads a channel-concatenated pair of images and outputs a 2-vector shift.

    The last layer is zero-initialized: training starts from "no shift".
    """

    def __init__(self, cin: int, width: int, depth: int = 3) -> None:
        super().__init__()
        layers, c = [], cin
        for i in range(depth):
            layers.append(conv_block(c, width * 2**i, stride=2))
            c = width * 2**i
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c, 2)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, pair: torch.Tensor) -> torch.Tensor:
        h = self.features(pair)
        return self.head(h.mean(dim=(2, 3)))


class ConvLSTMCell(nn.Module):
    """Convolutional LSTM cell (Shi et al. 2015) on a spatial grid."""

    def __init__(self, cin: int, hidden: int, kernel: int = 3) -> None:
        super().__init__()
        self.hidden = hidden
        self.gates = nn.Conv2d(cin + hidden, 4 * hidden, kernel, 1, kernel // 2)

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if state is None:
            z = x.new_zeros(x.shape[0], self.hidden, *x.shape[2:])
            state = (z, z)
        h, c = state
        i, f, o, g = self.gates(torch.cat([x, h], dim=1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class VectorQuantizer(nn.Module):
    """Nearest-code quantization with a straight-through gradient (van den Oord et al. 2017).

    ``loss = |sg(z) - e|^2 + commitment * |z - sg(e)|^2``. Inputs and codes are L2-normalized
    (cosine nearest neighbour), and in training a code unused for a while is restarted at a
    random input of the batch, so the small codebooks of latent actions do not collapse onto
    one code. Usage is tracked as an exponential moving average of assignments.
    """

    def __init__(
        self, num_codes: int, dim: int, commitment: float = 0.25, dead_threshold: float = 0.1
    ) -> None:
        super().__init__()
        self.codebook = nn.Embedding(num_codes, dim)
        nn.init.normal_(self.codebook.weight)
        self.commitment = commitment
        self.dead_threshold = dead_threshold
        self.register_buffer("usage", torch.full((num_codes,), 1.0 / num_codes))

    def codes(self) -> torch.Tensor:
        return F.normalize(self.codebook.weight, dim=1)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z: (N, D) -> (quantized (N, D) straight-through, ids (N,), loss scalar)."""
        z = F.normalize(z, dim=1)
        codes = self.codes()
        with torch.autocast(z.device.type, enabled=False):  # bf16 would tie close codes
            ids = (z.float() @ codes.float().T).argmax(dim=1)
        if self.training:
            self._track_and_restart(z.detach(), ids)
            codes = self.codes()
        e = codes[ids]
        loss = F.mse_loss(e, z.detach()) + self.commitment * F.mse_loss(z, e.detach())
        return z + (e - z).detach(), ids, loss

    @torch.no_grad()
    def _track_and_restart(self, z: torch.Tensor, ids: torch.Tensor) -> None:
        # Under DDP the counts are summed over ranks and rank 0's restart values are sent to
        # all, so every rank keeps the same codebook (they would drift apart otherwise).
        counts = torch.bincount(ids, minlength=self.usage.numel()).float()
        counts = distributed.all_reduce_sum_(torch.cat([counts, counts.new_tensor([len(ids)])]))
        self.usage.mul_(0.9).add_(0.1 * counts[:-1] / counts[-1].clamp(min=1))
        dead = torch.nonzero(self.usage < self.dead_threshold / self.usage.numel()).flatten()
        if len(dead):
            pick = torch.randint(len(z), (len(dead),), device=z.device)
            # z is bf16 under autocast; the codebook stays fp32
            fresh = z[pick].to(self.codebook.weight.dtype).contiguous()
            self.codebook.weight[dead] = distributed.broadcast_(fresh)
            self.usage[dead] = 1.0 / self.usage.numel()

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.codes()[ids]
