"""Self-describing checkpoints: a checkpoint rebuilds its model alone (nanoGPT style).

A checkpoint holds the model's class name and constructor arguments, its weights, the
optimizer, the step, the RNG states, the elapsed training time, the resolved config and the
provenance. It is written atomically. Loading it into a different model or shape raises
:class:`CheckpointMismatchError` naming what differs: nothing ever silently retrains.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from latentplay.world_models.checkpoint_format import (
    FORMAT,
    FORMAT_VERSION,
    CheckpointMismatchError,
    read_checkpoint,
    save_checkpoint,
    trained_weights,
)
from latentplay.world_models.protocol import FixedFrameSize
from latentplay.world_models.shipped import resolve_checkpoint

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "CheckpointMismatchError",
    "build_model",
    "check_compatible",
    "check_frames_fit",
    "load_model",
    "model_registry",
    "read_checkpoint",
    "save_checkpoint",
    "training_data",
    "training_summary",
]


def model_registry() -> dict[str, type[nn.Module]]:
    from latentplay.world_models.autoencoder import FrameAutoencoder
    from latentplay.world_models.glass import Glass
    from latentplay.world_models.keypoints import Keypoints
    from latentplay.world_models.yoda import Yoda

    return {m.name: m for m in (FrameAutoencoder, Glass, Keypoints, Yoda)}


def build_model(name: str, args: dict[str, Any]) -> nn.Module:
    models = model_registry()
    if name not in models:
        raise ValueError(f"unknown model {name!r}; known: {sorted(models)}")
    return models[name](**args)


def load_model(
    path: str | Path,
    device: str | torch.device = "cpu",
    average: bool = True,
    channels_last: bool = True,
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model from the checkpoint alone; returns (model in eval mode, checkpoint).
    ``path``: a checkpoint file, or the name of a shipped model (``models/<name>/``).

    ``average``: a checkpoint trained with ``trainer.ema_decay`` gives its moving average of
    the weights (buffers as trained); False, or a checkpoint without one: the trained weights.
    ``channels_last``: convolution weights in the layout training uses by default
    (``trainer.channels_last``); on a CPU it also takes small batch-1 convolutions off
    PyTorch's slow fallback path. The same figures up to float rounding.
    """
    path = resolve_checkpoint(path)
    ckpt = read_checkpoint(path, device)
    model = build_model(ckpt["model_name"], ckpt["model_args"])
    weights = trained_weights(ckpt, average)
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:  # weights of another version of the model's code
        raise CheckpointMismatchError(
            f"{path}: its weights do not fit {ckpt['model_name']}({ckpt['model_args']}) as "
            f"this code builds it: {e}"
        ) from e
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model.eval(), ckpt


SHORT_RUN_MINUTES = 10.0  # a run this short demonstrates training; its figures are not a model's
SHIPPED, SHORT_RUN = "shipped model", "short run"  # how training_summary's words begin


def training_summary(ckpt: dict[str, Any]) -> str:
    """How much training the checkpoint's model had, in words a report can show beside its
    figures: a short run says so."""
    minutes = float(ckpt.get("elapsed_seconds") or 0.0) / 60
    steps = ckpt.get("step")
    what = f"{minutes:.1f} min, {steps:,} steps" if steps is not None else f"{minutes:.1f} min"
    if ckpt.get("source") is not None:  # shipped: a model someone chose to ship
        return f"{SHIPPED}, trained {what}"
    if minutes < SHORT_RUN_MINUTES:
        return f"{SHORT_RUN} ({what}): a demonstration of training, not a trained model"
    return f"trained {what}"


def training_data(ckpt: dict[str, Any]) -> str | None:
    """The dataset folder the checkpoint's model was trained on (from its run's config)."""
    data = (ckpt.get("config") or {}).get("data")
    return None if data is None else str(data)


def check_compatible(
    path: str | Path,
    ckpt: dict[str, Any],
    model: nn.Module,
    remedy: str = "Use another out folder, or the checkpoint's settings.",
) -> None:
    """Raise naming every difference between the checkpoint's model and ``model``, and
    ``remedy``."""
    problems = []
    if ckpt["model_name"] != type(model).name:
        problems.append(f"model {ckpt['model_name']!r} vs {type(model).name!r}")
    ours = model.model_args()
    for k in sorted(set(ours) | set(ckpt["model_args"])):
        if ckpt["model_args"].get(k) != ours.get(k):
            problems.append(f"{k}: {ckpt['model_args'].get(k)!r} vs {ours.get(k)!r}")
    if not problems:
        theirs = ckpt["model"]
        for k, v in model.state_dict().items():
            if k not in theirs or tuple(theirs[k].shape) != tuple(v.shape):
                problems.append(
                    f"tensor {k}: {tuple(theirs[k].shape) if k in theirs else 'missing'}"
                )
    if problems:
        raise CheckpointMismatchError(
            f"{path} does not fit this model (checkpoint vs now): {'; '.join(problems)}. {remedy}"
        )


def check_frames_fit(model: Any, meta: dict[str, Any], source: str | Path) -> None:
    """Raise naming both sizes when a dataset's frames (its ``meta.json``) are not the size the
    model was trained on; nothing is resized silently."""
    if not isinstance(model, FixedFrameSize):
        return
    size = model.image_size
    w, h = meta.get("width"), meta.get("height")
    if w is None or h is None:
        raise CheckpointMismatchError(
            f"{source}: meta.json has no width/height; cannot tell whether its frames fit the "
            f"model ({size}x{size})"
        )
    if (w, h) != (size, size):
        raise CheckpointMismatchError(
            f"{source}: frames are {w}x{h}, the model takes {size}x{size} (image_size={size}); "
            f"use a dataset collected with env.kwargs.width={size} env.kwargs.height={size} "
            f"(or imported with size={size})"
        )
