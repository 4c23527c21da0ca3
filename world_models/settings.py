"""Trainer settings: budgets, logging, schedule, weight average (no torch: the scripts' typed
config schemas are built from this class, and parsing a config must not import torch)."""

from __future__ import annotations

import math
from dataclasses import dataclass

LR_SCHEDULES = ("constant", "cosine")
PRECISIONS = ("fp32", "bf16", "auto")


@dataclass(frozen=True)
class TrainerSettings:
    batch_size: int = 16
    lr: float = 4e-4
    max_steps: int | None = None
    max_minutes: float | None = 30.0  # training time over all resumed runs
    log_every: int = 25
    sample_every: int = 500
    checkpoint_every_minutes: float = 5.0
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"
    channels_last: bool = True
    progress: bool = True
    # DDP only: let parts of the model sit out a step (GLASS trains only its global part during
    # warm-up); costs one graph traversal per step.
    find_unused_parameters: bool = True
    # Learning rate over the run: "constant", or "cosine" from ``lr`` down to
    # ``lr * lr_min_ratio`` at the end of the budget (the larger of the step and time
    # fractions done). Over a time budget the schedule follows the clock (rank 0's), so two
    # runs of one command differ as their step times do; set max_steps to repeat a run.
    lr_schedule: str = "constant"
    lr_min_ratio: float = 0.05
    # Exponential moving average of the weights (null: none). Checkpoints keep it beside the
    # trained weights; evaluation loads it (load_model), training resumes from the weights.
    # The decay warms up as min(ema_decay, (1 + n) / (10 + n)) over the n updates: 0.999 is
    # reached after ~9k steps.
    ema_decay: float | None = None
    # Forward passes in bf16 autocast ("bf16"), in fp32 ("fp32"), or "auto": bf16 where the
    # device computes it natively (CUDA with bf16, a CPU with AVX512-BF16 or AMX), else fp32
    # (bf16 trains every model family better per minute there: docs/BENCHMARKS.md). Weights,
    # optimizer state and checkpoints stay fp32 either way.
    precision: str = "auto"
    # Keep every checkpoint as checkpoints/step_<step>.pt beside last.pt (with
    # checkpoint_every_minutes: quality against training minutes, from one run).
    keep_checkpoints: bool = False

    def __post_init__(self) -> None:
        if self.max_steps is None and self.max_minutes is None:
            raise ValueError("set trainer.max_steps or trainer.max_minutes (or both)")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size}; expected >= 1")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(
                f"trainer.lr_schedule={self.lr_schedule!r}; expected one of {list(LR_SCHEDULES)}"
            )
        if not 0.0 <= self.lr_min_ratio <= 1.0:
            raise ValueError(f"trainer.lr_min_ratio={self.lr_min_ratio}; expected in [0, 1]")
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"trainer.precision={self.precision!r}; expected one of {list(PRECISIONS)}"
            )
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"trainer.ema_decay={self.ema_decay}; expected in (0, 1) or null")

    def done_fraction(self, step: int, elapsed_seconds: float) -> float:
        """Fraction of the budget done: the larger of the step and the time fractions."""
        done = 0.0  # an empty budget (0 steps or 0 minutes) is done at once
        if self.max_steps is not None:
            done = max(done, step / self.max_steps if self.max_steps > 0 else 1.0)
        if self.max_minutes is not None:
            seconds = self.max_minutes * 60.0
            done = max(done, elapsed_seconds / seconds if seconds > 0 else 1.0)
        return min(done, 1.0)

    def lr_at(self, step: int, elapsed_seconds: float) -> float:
        if self.lr_schedule == "constant":
            return self.lr
        cos = 0.5 * (1 + math.cos(math.pi * self.done_fraction(step, elapsed_seconds)))
        return self.lr * (self.lr_min_ratio + (1 - self.lr_min_ratio) * cos)
