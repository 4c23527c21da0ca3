"""Trainer settings for tiny test runs (imported by tests as ``helpers.train_settings``)."""

from __future__ import annotations

from latentplay.world_models.settings import TrainerSettings


def quick_settings(**kw) -> TrainerSettings:
    """CPU, 4 steps, no time budget, no progress bar, no samples or timed checkpoints; ``kw``
    overrides any of them."""
    base = dict(batch_size=4, max_steps=4, max_minutes=None, log_every=2, sample_every=10**9)
    base.update(progress=False, device="cpu", checkpoint_every_minutes=10**9)
    base.update(kw)
    return TrainerSettings(**base)
