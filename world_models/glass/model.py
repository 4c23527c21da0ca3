"""GLASS (Davtyan & Favaro, ECCV 2022), CPU-first: global shifts + discrete local actions.

Read top to bottom: sizes, the GMA (global motion analysis: mask, inpainting, shifts,
compositing), the LMA (local motion analysis: encoder, VQ action network, ConvLSTM dynamics,
multi-scale renderer), the training forward pass, then the :class:`WorldModel` methods.

Departures from the published GLASS, each for a CPU budget of minutes instead of GPU-days:

- small networks (``SIZES``), GroupNorm(1), channels_last;
- a motion prior for the mask (frame differences, no labels; ``losses.motion_prior_loss``):
  without it the mask collapsed to empty within a few hundred steps on Push-v0;
- offline gradient-L1 losses instead of the VGG perceptual terms (no downloaded weights);
- the renderer warps the globally shifted previous foreground by a local flow and blends it
  with its own output, modulated by the actions (``Renderer``);
- a U-Net inpainter (``Inpainter``); predicted frames composite over the background
  remembered from the context frames (``remembered_backgrounds``, ``over``);
- cosine vector quantization with dead-code restarts (``layers.VectorQuantizer``), and the
  action network's batch statistics recomputed before each checkpoint (``calibrate``).

Shapes: frames ``(B, T, 3, H, W)`` float in [0, 1]; masks ``(B, T, 1, H, W)``; global shifts
``(B, T-1, 2)`` in normalized units (+x right, +y down, one unit = half the frame); LMA
states ``(B, C, H/8, W/8)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from latentplay.utils.frames import to_float_frames
from latentplay.world_models.layers import (
    ConvLSTMCell,
    ShiftRegressor,
    UpBlock,
    VectorQuantizer,
    conv_block,
    shift_images,
    warp_images,
)
from latentplay.world_models.protocol import (
    Actions,
    ActionSpec,
    check_actions,
    rollout,
)

OUT_OF_DOMAIN = -1.1  # masked pixels handed to the inpainter (outside [0, 1])


@dataclass(frozen=True)
class GlassSize:
    mask: int  # masking U-Net base width (x1, x2, x4 at 1/2, 1/4, 1/8 resolution)
    inpaint: int  # inpainting net base width
    shift: int  # shift regressor base width
    state: int  # LMA state channels at 1/8 resolution
    hidden: int  # ConvLSTM hidden channels
    layers: int  # ConvLSTM layers
    render: int  # renderer width at full resolution (x2, x4 below)


SIZES: dict[str, GlassSize] = {
    "xs": GlassSize(mask=8, inpaint=8, shift=8, state=16, hidden=16, layers=1, render=8),
    "s": GlassSize(mask=16, inpaint=16, shift=16, state=32, hidden=48, layers=1, render=12),
    "m": GlassSize(mask=32, inpaint=32, shift=32, state=64, hidden=128, layers=2, render=32),
    # Published widths: 256-channel masking net, 16-32-64 inpainter, 3-layer ConvLSTM.
    "paper": GlassSize(mask=64, inpaint=16, shift=64, state=128, hidden=256, layers=3, render=64),
}


class UNet(nn.Module):
    """3-level U-Net (x1, x2, x4 widths at 1/2, 1/4, 1/8 resolution) with sigmoid outputs."""

    def __init__(self, cin: int, cout: int, w: int) -> None:
        super().__init__()
        self.d1, self.d2, self.d3 = (
            conv_block(cin, w, 2),
            conv_block(w, 2 * w, 2),
            conv_block(2 * w, 4 * w, 2),
        )
        self.mid = conv_block(4 * w, 4 * w)
        self.u2, self.u1 = UpBlock(4 * w, 2 * w, skip=2 * w), UpBlock(2 * w, w, skip=w)
        self.u0 = UpBlock(w, w, skip=cin)
        self.head = nn.Conv2d(w, cout, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h1 = self.d1(x)
        h2 = self.d2(h1)
        h = self.mid(self.d3(h2))
        h = self.u0(self.u1(self.u2(h, h2), h1), x)
        return torch.sigmoid(self.head(h))


class MaskNet(UNet):
    """Frame -> soft foreground mask in (0, 1)."""

    def __init__(self, w: int) -> None:
        super().__init__(3, 1, w)


class Inpainter(UNet):
    """Fills masked (out-of-domain) pixels with background. A U-Net, where GLASS's is a plain
    encoder-decoder: the skips carry the unmasked surroundings at full resolution, so fills
    near edges stay sharp (teacher-forced PSNR depends on them)."""

    def __init__(self, w: int) -> None:
        super().__init__(3, 3, w)


class Encoder(nn.Module):
    """Foreground image -> LMA state at 1/8 resolution."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            conv_block(3, c // 2, 2),
            conv_block(c // 2, c, 2),
            conv_block(c, c, 2),
            nn.Conv2d(c, c, 3, 1, 1),
        )

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.net(f)


class ActionNet(nn.Module):
    """Local action direction: what changed between the globally shifted f_t and f_t+1.

    A shared conv trunk pools each state to a vector; the first vector and the difference
    go through an MLP with batch normalization. As in GLASS's action network, the direction
    is a learned function of both states, not their plain difference (GLASS's ablation): a
    local action that sets a state (a colour, a pose) gives different differences from
    different starting states. The normalization keeps directions spread over the batch, so
    the quantizer sees distinct inputs from the first steps on.
    """

    def __init__(self, c: int, code_dim: int) -> None:
        super().__init__()
        self.trunk = nn.Sequential(conv_block(c, 2 * c, 2), conv_block(2 * c, c))
        self.mlp = nn.Sequential(
            nn.Linear(2 * c, 2 * c),
            nn.BatchNorm1d(2 * c),
            nn.LeakyReLU(0.2),
            nn.Linear(2 * c, c),
            nn.BatchNorm1d(c),
            nn.LeakyReLU(0.2),
            nn.Linear(c, code_dim),
        )

    def forward(self, shifted: torch.Tensor, nxt: torch.Tensor) -> torch.Tensor:
        a, b = self.trunk(torch.cat([shifted, nxt])).mean(dim=(2, 3)).chunk(2)
        return self.mlp(torch.cat([a, b - a], dim=1))


def over(foreground: torch.Tensor, mask: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """A frame from a *premultiplied* foreground (``mask * frame``, as GLASS's foregrounds
    are) with its mask over a background: ``f + (1 - m) b``. (Multiplying ``f`` by the mask
    once more darkens every soft edge: -21% squared error teacher-forced on Push-v0.)"""
    return (foreground + (1 - mask) * background).clamp(0, 1)


RENDERERS = ("flow", "blend")
MAX_LOCAL_FLOW = 0.25  # normalized units (8 px at 64x64) of the renderer's local flow


class Renderer(nn.Module):
    """Dynamics hidden state + the globally shifted previous foreground -> next foreground RGB
    at 1/4, 1/2 and full resolution, and its mask.

    Not in GLASS, which renders the whole foreground anew from the state: each scale blends a
    rendering with the shifted previous foreground (and mask) by a predicted per-pixel weight,
    so what the global shift explains stays sharp and the network spends its capacity on local
    changes (``kind="blend"``). ``kind="flow"`` (default) also sees the shifted previous
    foreground at every scale and first *warps* it by a predicted local flow (bounded, zero at
    initialization) before blending: an articulated arm's links rotate about its joints, which
    no global translation follows, and moving pixels keeps them sharp where a rendering from an
    8x8 state cannot (CDNA-style, Finn et al. 2016, robot pushing).
    """

    def __init__(self, hidden: int, w: int, kind: str = "flow", cond: int = 0) -> None:
        super().__init__()
        if kind not in RENDERERS:
            raise ValueError(f"renderer={kind!r}; expected one of {RENDERERS}")
        self.flow = kind == "flow"
        skip = 4 if self.flow else 0  # the shifted previous foreground RGB + mask
        self.up1 = UpBlock(hidden, 4 * w, skip=skip)  # 1/4
        self.up2 = UpBlock(4 * w, 2 * w, skip=skip)  # 1/2
        self.up3 = UpBlock(2 * w, w, skip=skip)  # 1
        # The actions modulate every scale (FiLM, zero at initialization; GLASS modulates the
        # convolutions of its dynamics network by them): a local action that sets what the
        # foreground looks like acts here directly, not only through the dynamics' state.
        self.films = (
            nn.ModuleList(nn.Linear(cond, 2 * c) for c in (4 * w, 2 * w, w)) if cond else None
        )
        for film in self.films or ():
            nn.init.zeros_(film.weight)
            nn.init.zeros_(film.bias)
        outputs = 5 + (2 if self.flow else 0)  # RGB, mask, blend weight (, flow x, y)
        self.heads = nn.ModuleList(nn.Conv2d(c, outputs, 3, 1, 1) for c in (4 * w, 2 * w, w))
        for head in self.heads:  # the flow starts at zero: plain blending
            nn.init.zeros_(head.weight[5:])
            nn.init.zeros_(head.bias[5:])

    def forward(
        self,
        h: torch.Tensor,
        base_fg: torch.Tensor,
        base_mask: torch.Tensor,
        cond: torch.Tensor | None = None,
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """h (B, hidden, h, w), base_fg (B, 3, H, W), base_mask (B, 1, H, W), cond (B, D) the
        actions -> (foreground RGB at [1/4, 1/2, 1] scales, full-resolution mask)."""
        rgbs, x, prev = [], h, torch.cat([base_fg, base_mask], dim=1)
        for i, (up, head) in enumerate(
            zip((self.up1, self.up2, self.up3), self.heads, strict=True)
        ):
            size = (2 * x.shape[-2], 2 * x.shape[-1])
            base = F.interpolate(prev, size=size, mode="bilinear", align_corners=False)
            x = up(x, base if self.flow else None)
            if self.films is not None:
                gamma, beta = self.films[i](cond)[:, :, None, None].chunk(2, dim=1)
                x = x * (1 + gamma) + beta
            o = head(x)
            if self.flow:
                base = warp_images(base, MAX_LOCAL_FLOW * torch.tanh(o[:, 5:7]))
            o = torch.sigmoid(o[:, :5])
            w = o[:, 4:5]
            rgbs.append(w * o[:, :3] + (1 - w) * base[:, :3])
        mask = w * o[:, 3:4] + (1 - w) * base[:, 3:4]
        return rgbs, mask


@dataclass
class GlassState:
    """Explicit model state (branch a rollout by reusing it)."""

    memory: list[tuple[torch.Tensor, torch.Tensor]] | None  # ConvLSTM (h, c) per layer
    features: torch.Tensor  # (B, C, h, w) encoder state of the current foreground
    foreground: torch.Tensor  # (B, 3, H, W) the current foreground image
    mask: torch.Tensor  # (B, 1, H, W) its mask
    background: torch.Tensor  # (B, 3, H, W) inpainted background
    frame: torch.Tensor  # (B, 3, H, W) the current frame (real for context, generated after)


class Glass(nn.Module):
    """GLASS world model. Keyword arguments only; ``model_args()`` rebuilds it."""

    name: ClassVar[str] = "glass"

    def __init__(
        self,
        *,
        size: str = "s",
        num_actions: int = 4,
        code_dim: int = 16,
        image_size: int = 64,
        commitment: float = 0.25,
        renderer: str = "flow",
    ) -> None:
        super().__init__()
        if size not in SIZES:
            raise ValueError(f"size={size!r}; expected one of {list(SIZES)}")
        if image_size % 8:
            raise ValueError(f"image_size={image_size}; expected a multiple of 8")
        if num_actions < 1:
            raise ValueError(f"num_actions={num_actions}; expected >= 1")
        self._args = {
            "size": size,
            "num_actions": num_actions,
            "code_dim": code_dim,
            "image_size": image_size,
            "commitment": commitment,
            "renderer": renderer,
        }
        w = SIZES[size]
        self.image_size, self.num_actions = image_size, num_actions
        # GMA
        self.masker = MaskNet(w.mask)
        self.inpainter = Inpainter(w.inpaint)
        self.fg_shift = ShiftRegressor(6, w.shift)
        self.bg_shift = ShiftRegressor(6, w.shift)
        # LMA
        self.encoder = Encoder(w.state)
        self.action_net = ActionNet(w.state, code_dim)
        self.vq = VectorQuantizer(num_actions, code_dim, commitment)
        cells, cin = [], w.state + code_dim + 2
        for _ in range(w.layers):
            cells.append(ConvLSTMCell(cin, w.hidden))
            cin = w.hidden
        self.cells = nn.ModuleList(cells)
        self.renderer = Renderer(w.hidden, w.render, renderer, cond=code_dim + 2)
        # Typical |global shift| seen in training (EMA of the std), for planners' sampling range.
        self.register_buffer("shift_std", torch.full((2,), 0.05))

    def model_args(self) -> dict[str, Any]:
        return dict(self._args)

    @property
    def size(self) -> GlassSize:
        return SIZES[self._args["size"]]

    @property
    def action_spec(self) -> ActionSpec:
        bound = float(3.0 * self.shift_std.max())
        return ActionSpec(continuous=2, continuous_bound=bound, discrete=self.num_actions)

    def random_actions(self, batch: int, horizon: int, generator: torch.Generator) -> Actions:
        """Gaussian global shifts of the spread seen in training (``shift_std``) and uniform
        local ids: ``(batch, horizon, 2)`` and ``(batch, horizon)`` on the CPU."""
        std = self.shift_std.cpu()
        return Actions(
            continuous=torch.randn(batch, horizon, 2, generator=generator) * std,
            discrete=torch.randint(self.num_actions, (batch, horizon), generator=generator),
        )

    def local_action_usage(self) -> torch.Tensor:
        """The quantizer's running use of each local action in training, ``(K,)``."""
        return self.vq.usage

    # ------------------------------------------------------------------ GMA
    def masks(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (B, T, 3, H, W) -> soft masks (B, T, 1, H, W)."""
        b = frames.shape[0]
        m = self.masker(rearrange(frames, "b t c h w -> (b t) c h w"))
        return rearrange(m, "(b t) c h w -> b t c h w", b=b)

    def inpaint(self, frames: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Backgrounds: masked pixels filled by the inpainter, the rest kept. (B, T, 3, H, W)."""
        b = frames.shape[0]
        x = rearrange(frames, "b t c h w -> (b t) c h w")
        m = rearrange(masks, "b t c h w -> (b t) c h w")
        filled = self.inpainter(x * (1 - m) + OUT_OF_DOMAIN * m)
        return rearrange(x * (1 - m) + filled * m, "(b t) c h w -> b t c h w", b=b)

    @staticmethod
    def remembered_backgrounds(
        frames: torch.Tensor, masks: torch.Tensor, backgrounds: torch.Tensor
    ) -> torch.Tensor:
        """The background behind each frame of a clip from everything seen up to it: where the
        foreground covers a pixel, the last frame that showed it, and the inpainting only where
        none did (not in GLASS, whose background is inpainted from the current frame alone).

        frames, backgrounds (B, T, 3, H, W); masks (B, T, 1, H, W) -> (B, T, 3, H, W).
        """
        seen = torch.zeros_like(masks[:, 0])  # how much of each pixel some frame showed
        memory = torch.zeros_like(frames[:, 0])
        out = []
        for t in range(frames.shape[1]):
            m = masks[:, t]
            hidden = seen * memory + (1 - seen) * backgrounds[:, t]
            memory = (1 - m) * frames[:, t] + m * hidden
            seen = (1 - m) + m * seen
            out.append(memory)
        return torch.stack(out, dim=1)

    @staticmethod
    def _pairs(x: torch.Tensor) -> torch.Tensor:
        """(B, T, C, H, W) -> consecutive pairs (B*(T-1), 2C, H, W)."""
        return rearrange(torch.cat([x[:, :-1], x[:, 1:]], dim=2), "b t c h w -> (b t) c h w")

    def gma(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """Global motion analysis of a clip (B, T, 3, H, W); T >= 2."""
        b = frames.shape[0]
        masks = self.masks(frames)
        fg = masks * frames
        bg = self.inpaint(frames, masks)
        fg_shift = rearrange(self.fg_shift(self._pairs(fg)), "(b t) k -> b t k", b=b)
        bg_shift = rearrange(self.bg_shift(self._pairs(bg)), "(b t) k -> b t k", b=b)
        flat = lambda x: rearrange(x[:, :-1], "b t c h w -> (b t) c h w")  # noqa: E731
        unflat = lambda x: rearrange(x, "(b t) c h w -> b t c h w", b=b)  # noqa: E731
        fs, bs = rearrange(fg_shift, "b t k -> (b t) k"), rearrange(bg_shift, "b t k -> (b t) k")
        shifted_fg = unflat(shift_images(flat(fg), fs))
        shifted_mask = unflat(shift_images(flat(masks), fs))
        shifted_bg = unflat(shift_images(flat(bg), bs, padding="border"))
        # The GMA's training composite multiplies the premultiplied foreground by the mask once
        # more: soft mask edges cost reconstruction, which keeps the masks crisp (mask IoU 0.68
        # on Push-v0 with it). Predicted frames are composited with :func:`over`.
        recon = shifted_mask * shifted_fg + (1 - shifted_mask) * shifted_bg
        return {
            "masks": masks,
            "foregrounds": fg,
            "backgrounds": bg,
            "fg_shift": fg_shift,
            "bg_shift": bg_shift,
            "shifted_fg": shifted_fg,
            "shifted_bg": shifted_bg,
            "recon": recon,
        }

    # ------------------------------------------------------------------ LMA
    def encode_fg(self, fg: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) -> (B, T, C, H/8, W/8)."""
        b = fg.shape[0]
        s = self.encoder(rearrange(fg, "b t c h w -> (b t) c h w"))
        return rearrange(s, "(b t) c h w -> b t c h w", b=b)

    def local_actions(
        self, states: torch.Tensor, shifted_states: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """states (B, T, C, h, w), shifted (B, T-1, ...) -> codes (B, T-1, D), ids, VQ loss."""
        b = states.shape[0]
        z = self.action_net(
            rearrange(shifted_states, "b t c h w -> (b t) c h w"),
            rearrange(states[:, 1:], "b t c h w -> (b t) c h w"),
        )
        codes, ids, vq_loss = self.vq(z)
        return (
            rearrange(codes, "(b t) d -> b t d", b=b),
            rearrange(ids, "(b t) -> b t", b=b),
            vq_loss,
        )

    def dynamics(
        self,
        features: torch.Tensor,
        code: torch.Tensor,
        shift: torch.Tensor,
        memory: list[tuple[torch.Tensor, torch.Tensor]] | None,
        foreground: torch.Tensor,
        mask: torch.Tensor,
    ) -> tuple[list[torch.Tensor], torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """One ConvLSTM step from (B, C, h, w) features of ``foreground`` (B, 3, H, W) with
        ``mask`` under (B, D) code and (B, 2) shift.

        -> (next foreground RGB at 3 scales, its mask (B, 1, H, W), new memory)."""
        hw = features.shape[2:]
        actions = torch.cat([code, shift], dim=1)
        x = torch.cat([features, actions[:, :, None, None].expand(-1, -1, *hw)], dim=1)
        new_memory = []
        for i, cell in enumerate(self.cells):
            h, c = cell(x, None if memory is None else memory[i])
            new_memory.append((h, c))
            x = h
        rgb, next_mask = self.renderer(
            x, shift_images(foreground, shift), shift_images(mask, shift), actions
        )
        return rgb, next_mask, new_memory

    def lma(
        self,
        fg: torch.Tensor,
        masks: torch.Tensor,
        shifted_fg: torch.Tensor,
        fg_shift: torch.Tensor,
        teacher_forced_steps: int,
    ) -> dict[str, Any]:
        """Local motion analysis on *detached* GMA outputs.

        The first ``teacher_forced_steps`` transitions start from the real foreground (its
        state, image and mask); the rest from the model's own previous rendering
        (autoregressive).
        """
        t = fg.shape[1]
        states = self.encode_fg(fg)
        shifted_states = self.encode_fg(shifted_fg)
        codes, ids, vq_loss = self.local_actions(states, shifted_states)
        memory = None
        rgbs: list[list[torch.Tensor]] = [[], [], []]
        rendered_masks: list[torch.Tensor] = []
        recon_states: list[torch.Tensor] = []
        for i in range(t - 1):
            if i < teacher_forced_steps:
                feats, cur_fg, cur_mask = states[:, i], fg[:, i], masks[:, i]
            else:
                feats, cur_fg, cur_mask = recon_states[-1], rgbs[-1][-1], rendered_masks[-1]
            rgb, mask, memory = self.dynamics(
                feats, codes[:, i], fg_shift[:, i], memory, cur_fg, cur_mask
            )
            for k in range(3):
                rgbs[k].append(rgb[k])
            rendered_masks.append(mask)
            recon_states.append(self.encoder(rgb[-1]))
        masks_out = rendered_masks
        return {
            "states": states,
            "codes": codes,
            "ids": ids,
            "vq_loss": vq_loss,
            "rendered": [torch.stack(r, dim=1) for r in rgbs],  # 3 x (B, T-1, 3, h_k, w_k)
            "rendered_masks": torch.stack(masks_out, dim=1),
            "recon_states": torch.stack(recon_states, dim=1),
        }

    def forward(
        self, frames: torch.Tensor, teacher_forced_steps: int, with_lma: bool = True
    ) -> dict[str, Any]:
        """Training pass over a clip ``(B, T, 3, H, W)``: GMA, then LMA on detached outputs
        (skipped with ``with_lma=False``, during the GMA warm-up)."""
        frames = to_float_frames(frames)
        out = self.gma(frames)
        out["frames"] = frames
        if not with_lma:
            return out
        out.update(
            self.lma(
                out["foregrounds"].detach(),
                out["masks"].detach(),
                out["shifted_fg"].detach(),
                out["fg_shift"].detach(),
                teacher_forced_steps,
            )
        )
        return out

    @torch.no_grad()
    def calibrate(self, clips: Iterable[torch.Tensor]) -> None:
        """Precise batch normalization: the action network's running statistics recomputed
        over ``clips`` (B, T, 3, H, W) with the current weights, as a plain average.

        Training normalizes each batch by its own statistics; inference uses running ones,
        which lag weights that still move (an EMA over the last ~10 steps), and local actions
        parsed with lagging statistics are much less consistent. Nothing else changes: the
        rest of the model runs in eval mode (no quantizer restarts) and training-mode forwards
        never read these statistics.
        """
        was_training = self.training
        self.eval()
        norms = [m for m in self.action_net.modules() if isinstance(m, nn.BatchNorm1d)]
        momenta = [bn.momentum for bn in norms]
        for bn in norms:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average
            bn.train()
        for clip in clips:
            self.infer_actions(clip)
        for bn, momentum in zip(norms, momenta, strict=True):
            bn.momentum = momentum
        self.train(was_training)

    # ------------------------------------------------------------------ WorldModel protocol
    def _parse(self, frames: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor, Actions]:
        """GMA of a clip, the LMA states of its foregrounds, and the actions between frames."""
        g = self.gma(frames)
        states = self.encode_fg(g["foregrounds"])
        _, ids, _ = self.local_actions(states, self.encode_fg(g["shifted_fg"]))
        return g, states, Actions(continuous=g["fg_shift"], discrete=ids)

    def infer_actions(self, frames: torch.Tensor) -> Actions:
        """Global shifts (B, T-1, 2) and local action ids (B, T-1) between consecutive frames."""
        return self._parse(to_float_frames(frames))[2]

    def encode(self, frames: torch.Tensor) -> GlassState:
        """Context frames (B, T, 3, H, W) -> state after the last one (T-1 teacher-forced steps
        warm the dynamics memory when T > 1)."""
        frames = to_float_frames(frames)
        memory = None
        if frames.shape[1] > 1:  # one GMA pass gives masks, foregrounds, states and actions
            g, states, acts = self._parse(frames)
            masks, fg = g["masks"], g["foregrounds"]
            for i in range(frames.shape[1] - 1):
                code = self.vq.embed(acts.discrete[:, i])
                _, _, memory = self.dynamics(
                    states[:, i], code, acts.continuous[:, i], memory, fg[:, i], masks[:, i]
                )
            feats = states[:, -1]
            background = self.remembered_backgrounds(frames, masks, g["backgrounds"])[:, -1]
        else:
            masks = self.masks(frames)
            fg = masks * frames
            feats = self.encoder(fg[:, -1])
            background = self.inpaint(frames, masks)[:, 0]
        return GlassState(memory, feats, fg[:, -1], masks[:, -1], background, frames[:, -1])

    def step(self, state: GlassState, actions: Actions) -> GlassState:
        if actions.continuous is None or actions.discrete is None:
            raise ValueError("GLASS steps need both parts of its actions: continuous and discrete")
        check_actions(self.action_spec, actions, batch=state.frame.shape[0])
        code = self.vq.embed(actions.discrete.long())
        rgb, mask, memory = self.dynamics(
            state.features, code, actions.continuous, state.memory, state.foreground, state.mask
        )
        fg = rgb[-1]
        frame = over(fg, mask, state.background)
        return GlassState(memory, self.encoder(fg), fg, mask, state.background, frame)

    def decode(self, state: GlassState) -> torch.Tensor:
        return state.frame

    def rollout(self, context: torch.Tensor, actions: Actions) -> torch.Tensor:
        return rollout(self, context, actions)

    def teacher_forced(self, frames: torch.Tensor) -> torch.Tensor:
        """One-step predictions, each from the true frames up to the previous one (GLASS's
        evaluation): the previous frame's foreground state, over the background remembered from
        those frames (:meth:`remembered_backgrounds`). (B, T, ...) -> (B, T-1, 3, H, W)."""
        frames = to_float_frames(frames)
        out = self.forward(frames, teacher_forced_steps=frames.shape[1])
        masks = out["masks"][:, :-1]
        background = self.remembered_backgrounds(frames[:, :-1], masks, out["backgrounds"][:, :-1])
        m = out["rendered_masks"]
        return over(out["rendered"][-1], m, background)


def describe(model: Glass) -> dict[str, Any]:
    """Parameter counts per part, for reports."""
    parts = {
        "masker": model.masker,
        "inpainter": model.inpainter,
        "shift_regressors": nn.ModuleList([model.fg_shift, model.bg_shift]),
        "encoder": model.encoder,
        "action_net": model.action_net,
        "dynamics": model.cells,
        "renderer": model.renderer,
    }
    counts = {k: sum(p.numel() for p in v.parameters()) for k, v in parts.items()}
    counts["total"] = sum(p.numel() for p in model.parameters())
    return {"size": asdict(model.size), "params": counts}
