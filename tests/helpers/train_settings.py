"""Trainer settings for tiny test runs (imported by tests as ``helpers.train_settings``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import nn

from latentplay.world_models.checkpoint import load_model
from latentplay.world_models.settings import TrainerSettings
from latentplay.world_models.train import train


def quick_settings(**kw) -> TrainerSettings:
    """CPU, fp32, 4 steps, no time budget, no progress bar, no samples or timed checkpoints; ``kw``
    overrides any of them."""
    base = dict(batch_size=4, max_steps=4, max_minutes=None, log_every=2, sample_every=10**9)
    base.update(progress=False, device="cpu", checkpoint_every_minutes=10**9)
    base.update(precision="fp32")  # known answers hold on any CPU, with or without bf16
    base.update(kw)
    return TrainerSettings(**base)


def straight_and_resumed(
    build: Callable[[], tuple], out: Path, steps: int, stop_at: int = 2
) -> tuple[nn.Module, nn.Module]:
    """The model of ``steps`` steps in one run, and that of a run stopped after ``stop_at``
    steps and resumed to ``steps``; ``build()`` -> (model, objective, dataset), seeded."""
    straight = build()
    train(*straight, out / "a", quick_settings(max_steps=steps))
    train(*build(), out / "b", quick_settings(max_steps=stop_at))
    train(*build(), out / "b", quick_settings(max_steps=steps), resume=True)
    a, _ = load_model(out / "a" / "checkpoints" / "last.pt")
    b, _ = load_model(out / "b" / "checkpoints" / "last.pt")
    return a, b
