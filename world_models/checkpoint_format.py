"""The checkpoint file: its format, atomic writing and checked reading, with no model code
(so that a model can read another's checkpoint, e.g. latent YODA its autoencoder's, without an
import cycle through the registry in :mod:`.checkpoint`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from latentplay.utils.io import atomic_path, provenance

FORMAT = "latentplay-checkpoint"
FORMAT_VERSION = 1


class CheckpointMismatchError(ValueError):
    """The checkpoint belongs to another model, shape or format."""


def save_checkpoint(path: str | Path, *, model: nn.Module, **fields: Any) -> Path:
    """Write ``{model class, args, weights, **fields}`` atomically to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_name": type(model).name,
        "model_args": model.model_args(),
        "model": model.state_dict(),
        "provenance": provenance(),
        **fields,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def read_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=False)
    except Exception as e:  # a truncated or foreign file: say which
        raise CheckpointMismatchError(f"{path}: not a readable checkpoint ({e})") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointMismatchError(f"{path}: not a latentplay checkpoint")
    if ckpt["format_version"] > FORMAT_VERSION:
        raise CheckpointMismatchError(
            f"{path}: format_version {ckpt['format_version']} is newer than this code reads"
        )
    return ckpt


def trained_weights(ckpt: dict[str, Any], average: bool = True) -> dict[str, Any]:
    """A checkpoint's model weights: with ``average``, its moving average of the weights where
    it was trained with one (``trainer.ema_decay``; buffers as trained)."""
    weights = dict(ckpt["model"])
    if average and ckpt.get("ema") is not None:
        weights.update(ckpt["ema"]["shadow"])
    return weights
