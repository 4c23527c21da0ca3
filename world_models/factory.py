"""Build a model, its objective and its data from plain config dicts (scripts call this)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from latentplay.rollouts.dataset import ClipDataset
from latentplay.rollouts.format import load_meta
from latentplay.world_models.train import TrainerSettings


@dataclass
class TrainingRun:
    model: nn.Module
    objective: Callable
    dataset: ClipDataset
    settings: TrainerSettings
    sample_fn: Callable | None
    before_checkpoint: Callable | None = None


def build_training(
    model_cfg: dict[str, Any], data: str, split: str, trainer_cfg: dict[str, Any]
) -> TrainingRun:
    cfg = dict(model_cfg)
    name = cfg.pop("name")
    meta = load_meta(data)
    # The initial weights come from the run's seed: the same command trains the same model
    # (and under torchrun every rank builds the same one).
    torch.manual_seed(int(trainer_cfg.get("seed", 0)))
    if meta["width"] != meta["height"]:
        raise ValueError(f"{data}: frames are {meta['width']}x{meta['height']}; expected square")
    if name == "glass":
        from latentplay.world_models.glass import Glass, LossWeights
        from latentplay.world_models.glass.train import (
            GlassCalibration,
            GlassObjective,
            GlassSchedule,
            glass_samples,
        )

        schedule = GlassSchedule(**cfg.pop("schedule", {}))
        weights = LossWeights(**cfg.pop("loss", {}))
        model = Glass(image_size=meta["width"], **cfg)  # frame size comes from the data
        dataset = ClipDataset(data, split=split, clip_length=schedule.seq_len_end, cache=True)
        return TrainingRun(
            model,
            GlassObjective(schedule, weights),
            dataset,
            TrainerSettings(**trainer_cfg),
            glass_samples,
            GlassCalibration(dataset),
        )
    if name == "yoda":
        from latentplay.world_models.yoda import Yoda
        from latentplay.world_models.yoda.train import YodaObjective, YodaSchedule, yoda_samples

        schedule = YodaSchedule(**cfg.pop("schedule", {}))
        model = Yoda(image_size=meta["width"], **cfg)
        if model.memory > schedule.clip_length - 1:
            raise ValueError(
                f"model.memory={model.memory} frames; training clips of "
                f"model.schedule.clip_length={schedule.clip_length} show distances up to "
                f"{schedule.clip_length - 1}: expected memory <= clip_length - 1"
            )
        dataset = ClipDataset(data, split=split, clip_length=schedule.clip_length, cache=True)
        settings = TrainerSettings(**trainer_cfg)
        return TrainingRun(model, YodaObjective(schedule), dataset, settings, yoda_samples)
    raise ValueError(f"model.name={name!r}; expected one of ['glass', 'yoda']")
