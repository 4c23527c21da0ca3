"""The frame autoencoder's training: the builder that ``configs/model/autoencoder.yaml`` names,
its objective (L1 + image-gradient L1, pixels that differ from the median frame weighted up:
objects are a few percent of a frame and must survive the bottleneck) and sample videos."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from latentplay.rollouts.dataset import ClipDataset
from latentplay.rollouts.video import tile, write_video
from latentplay.utils.frames import to_float_frames, to_numpy_frames
from latentplay.world_models.autoencoder.model import FrameAutoencoder, edge_loss
from latentplay.world_models.keypoints.perception import foreground
from latentplay.world_models.train import TrainingRun, frame_size


@dataclass(frozen=True)
class AutoencoderLoss:
    """``edge``: weight of the image-gradient L1; ``foreground``: extra weight on pixels that
    differ from the median training frame (full weight at ``foreground_scale`` summed colour
    difference); ``latent_noise``: Gaussian noise (in units of the batch's latent std) added
    to the latents before decoding, so the decoder tolerates a generator's imperfect latents."""

    edge: float = 1.0
    foreground: float = 10.0
    foreground_scale: float = 0.15
    latent_noise: float = 0.05

    def __post_init__(self) -> None:
        for name in ("edge", "foreground", "foreground_scale", "latent_noise"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)}; expected >= 0")


class AutoencoderObjective:
    """``(model, clip, step) -> (loss, terms)``: every frame of the clips rebuilt."""

    transitions_per_clip = 1  # frames per clip (the builder's clips are single frames)

    def __init__(self, background: torch.Tensor, loss: AutoencoderLoss | None = None) -> None:
        self.background = background  # (3, S, S) float: the median training frame
        self.loss = loss or AutoencoderLoss()

    def __call__(
        self, model: FrameAutoencoder, clip: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        w = self.loss
        x = to_float_frames(clip).flatten(0, 1)
        z = model.encode_raw(x)
        if w.latent_noise > 0:
            z = z + w.latent_noise * z.detach().std() * torch.randn_like(z)
        recon = model.decode_raw(z)
        bg = self.background.to(x.device)[None]
        weight = 1 + w.foreground * foreground(x, bg, w.foreground_scale)
        rec = ((recon - x).abs().mean(1, keepdim=True) * weight).mean()
        edge = edge_loss(recon, x)
        return rec + w.edge * edge, {"l1": rec.item(), "edge": edge.item()}


def autoencoder_samples(model: FrameAutoencoder, clip: torch.Tensor, path: Path) -> None:
    """Image grid as a one-frame video: real | rebuilt, one row per frame."""
    x = to_float_frames(clip).flatten(0, 1)[:8]
    rows = torch.cat([x, model.reconstruct(x)], dim=-1)
    write_video(tile(list(to_numpy_frames(rows[:, None])), cols=1), path, fps=1, scale=4)


def autoencoder_training(
    data: str,
    split: str = "train",
    *,
    loss: AutoencoderLoss | None = None,
    statistics_frames: int = 1024,
    **model_args: Any,
) -> TrainingRun:
    """The frame autoencoder on single frames of ``data``'s ``split``; ``model_args`` go to
    :class:`FrameAutoencoder` (the frame size comes from the data). Before each checkpoint
    the latent statistics are measured on ``statistics_frames`` training frames spread evenly
    over the split; the median of those frames is the background the loss weights against."""
    model = FrameAutoencoder(image_size=frame_size(data), **model_args)
    dataset = ClipDataset(data, split=split, clip_length=1, cache=True)
    frames = torch.stack(
        [dataset[i][0] for i in dataset.spread(statistics_frames)]
    )  # (n, 3, S, S) uint8
    background = to_float_frames(frames).median(dim=0).values

    def statistics(m: torch.nn.Module) -> None:
        assert isinstance(m, FrameAutoencoder)
        was = m.training
        m.eval()
        m.set_statistics(frames.to(m.latent_mean.device))
        m.train(was)

    return TrainingRun(
        model,
        AutoencoderObjective(background, loss),
        dataset,
        sample_fn=autoencoder_samples,
        before_checkpoint=statistics,
    )
