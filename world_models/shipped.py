"""Pretrained models shipped in the repository (``models/<name>/``): weights and a model card.

``models/<name>/weights.pt`` is a checkpoint with the weights alone (no optimizer, no RNG
states; the trained run's data, step, minutes and command in its config), ``card.md`` says how
it was made and what it scores, ``card.json`` holds the figure that
:func:`latentplay.evaluation.shipped.card_check` reproduces on a small fixed set (the
load-and-reproduce test runs it, so a card cannot drift from its weights).
:func:`~latentplay.world_models.checkpoint.load_model` takes a shipped name wherever it takes a
checkpoint path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from latentplay.utils.io import atomic_path, provenance, sha256_file
from latentplay.world_models.checkpoint_format import (
    FORMAT,
    FORMAT_VERSION,
    read_checkpoint,
    trained_weights,
)

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"  # beside the packages


def shipped_models() -> dict[str, Path]:
    """Name -> weights file of every shipped model."""
    if not MODELS_DIR.is_dir():
        return {}
    return {p.parent.name: p for p in sorted(MODELS_DIR.glob("*/weights.pt"))}


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """An existing checkpoint path as it is; else the weights of the shipped model of that
    name; else an error naming both what was looked for and the shipped names."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = shipped_models()
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    raise FileNotFoundError(
        f"checkpoint {str(name_or_path)!r} does not exist (a relative path is read from the "
        f"current folder, {Path.cwd()}), and no shipped model has that name (shipped: "
        f"{sorted(shipped)})"
    )


def card(name: str) -> dict[str, Any]:
    """The machine-readable part of a shipped model's card (``card.json``)."""
    path = resolve_checkpoint(name).with_name("card.json")
    return json.loads(path.read_text())


def ship(
    checkpoint: str | Path, name: str, *, half: bool = False, autoencoder: str | None = None
) -> Path:
    """Write ``models/<name>/weights.pt`` from a training checkpoint: its model weights (the
    moving average where it has one) and what reproduces it (config, step, minutes,
    provenance); ``half``: floating-point weights stored as float16 (loaded back as float32).

    A latent model names the autoencoder it was trained on by path and sha256; shipped, it
    names ``autoencoder``, the shipped model of that autoencoder (ship it first), once its
    weights are checked to be the ones the latent model holds."""
    ckpt = read_checkpoint(checkpoint)
    weights = trained_weights(ckpt)
    args = dict(ckpt["model_args"])
    if "autoencoder" in args:
        if half:  # its autoencoder's weights must stay the shipped autoencoder's, bit for bit
            raise ValueError(f"{checkpoint} is a latent model: ship it with half=False")
        args.update(_shipped_autoencoder(checkpoint, weights, autoencoder))
    elif autoencoder is not None:
        raise ValueError(
            f"autoencoder={autoencoder!r}, but {checkpoint} is not a latent model (it names "
            "no autoencoder)"
        )
    if half:
        weights = {k: v.half() if v.is_floating_point() else v for k, v in weights.items()}
    out = MODELS_DIR / name / "weights.pt"
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_name": ckpt["model_name"],
        "model_args": args,
        "model": weights,
        **{k: ckpt[k] for k in ("step", "elapsed_seconds", "config", "provenance") if k in ckpt},
        "source": str(checkpoint),
        "shipped_by": provenance(),
    }
    with atomic_path(out) as tmp:
        torch.save(payload, tmp)
    return out


def _shipped_autoencoder(
    checkpoint: str | Path, weights: dict[str, torch.Tensor], name: str | None
) -> dict[str, str]:
    """The model arguments that point a latent model at the shipped autoencoder ``name``,
    after checking that its weights are the ones the model holds under ``autoencoder.``."""
    shipped = shipped_models()
    if name not in shipped:
        raise ValueError(
            f"{checkpoint} is a latent model: pass autoencoder=<the shipped name of its "
            f"autoencoder> (ship the autoencoder first); shipped: {sorted(shipped)}"
        )
    prefix = "autoencoder."
    ours = {k.removeprefix(prefix): v for k, v in weights.items() if k.startswith(prefix)}
    theirs = read_checkpoint(shipped[name])["model"]
    if ours.keys() != theirs.keys() or any(
        not torch.equal(ours[k].float(), theirs[k].float()) for k in theirs
    ):
        raise ValueError(
            f"the shipped autoencoder {name!r} is not the one {checkpoint} was trained on "
            "(its weights differ)"
        )
    return {"autoencoder": name, "autoencoder_sha256": sha256_file(shipped[name])}


def run_folder(name_or_path: str | Path) -> Path:
    """Where a script writes its outputs by default: the run folder of a checkpoint
    (``<run>/checkpoints/last.pt`` -> ``<run>``), or ``runs/<name>`` for a shipped model."""
    path = Path(name_or_path)
    if not path.is_file() and str(name_or_path) in shipped_models():
        return Path("runs") / str(name_or_path)
    return path.resolve().parent.parent
