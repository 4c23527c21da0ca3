"""Train a tiny next-frame predictor with latentplay's loop; run plainly or under torchrun.

python ddp_toy.py DATA OUT STEPS BATCH [diverge|nan]
``diverge``: rank 1 nudges a weight on its own at step 3 (the loop must notice).
``nan``: rank 1's loss is NaN at step 3 (every rank must stop, none may hang).
``DDP_TOY_DEVICE`` (environment): the trainer's device (default cpu; cuda: nccl).
"""

from __future__ import annotations

import os
import sys

import torch
from torch import nn

from latentplay.rollouts import ClipDataset
from latentplay.world_models import distributed
from latentplay.world_models.settings import TrainerSettings
from latentplay.world_models.train import train


class TinyPredictor(nn.Module):
    name = "tiny"

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Tanh(), nn.Conv2d(8, 3, 1))

    def model_args(self) -> dict:
        return {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class NextFrame:
    def __init__(self, fault: str | None) -> None:
        self.fault = fault

    def __call__(self, model: TinyPredictor, clip: torch.Tensor, step: int):
        rank1_at_3 = step == 3 and distributed.from_env().rank == 1
        if self.fault == "diverge" and rank1_at_3:
            with torch.no_grad():
                model.net[0].bias[0] += 0.5
        pred = model(clip[:, :-1].flatten(0, 1))
        loss = (pred - clip[:, 1:].flatten(0, 1)).pow(2).mean()
        if self.fault == "nan" and rank1_at_3:
            loss = loss * float("nan")
        return loss, {"mse": float(loss.detach())}


def main() -> None:
    data, out, steps, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    fault = sys.argv[5] if len(sys.argv) > 5 else None
    diverge = fault == "diverge"
    torch.manual_seed(0)
    model = TinyPredictor()
    settings = TrainerSettings(
        batch_size=batch,
        lr=1e-2,
        max_steps=steps,
        max_minutes=None,
        log_every=1,
        checkpoint_every_minutes=0.0 if diverge else 60.0,
        progress=False,
        channels_last=False,
        find_unused_parameters=False,
        device=os.environ.get("DDP_TOY_DEVICE", "cpu"),
        precision="fp32",  # two ranks match one process to fp32 rounding, not bf16's
    )
    ds = ClipDataset(data, clip_length=3, cache=True)
    train(model, NextFrame(fault), ds, out, settings, resume="auto")


if __name__ == "__main__":
    main()
