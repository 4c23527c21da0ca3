"""Data-parallel training under ``torchrun``: process group, ranks, and the few collectives the
training loop needs.

``torchrun --nproc_per_node=2 scripts/train.py ...`` starts one process per rank with
``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` set; :func:`init` joins them into a process group
(gloo on the CPU, nccl on CUDA, one GPU per local rank). Without those variables everything here
is the single-process case (rank 0 of 1) and costs nothing.

How the loop uses it (:func:`latentplay.world_models.train.train`): every rank draws the same
global batch indices from the same seeded generator and takes its own slice (per-rank data
sharding with nothing to coordinate, and a checkpoint's generator state serves any world size);
gradients are averaged by ``DistributedDataParallel``; rank 0 alone logs, samples and writes
checkpoints, in the single-process format, so a checkpoint of a 2-rank run resumes in one
process and back.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Context:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def from_env() -> Context:
    """Rank, local rank and world size as torchrun sets them (rank 0 of 1 without torchrun)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as e:
        raise ValueError(
            f"WORLD_SIZE={os.environ.get('WORLD_SIZE')!r}, RANK={os.environ.get('RANK')!r}, "
            f"LOCAL_RANK={os.environ.get('LOCAL_RANK')!r}: expected integers (as torchrun sets "
            "them)"
        ) from e
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK={rank} of WORLD_SIZE={world}; expected 0 <= RANK < WORLD_SIZE")
    return Context(rank, local, world)


def init(device: torch.device) -> tuple[Context, torch.device, bool]:
    """Join the process group torchrun describes (if any, and not yet joined).

    Returns ``(context, device of this rank, whether this call created the group)``: on CUDA
    each local rank takes its own GPU.
    """
    ctx = from_env()
    if not ctx.distributed:
        return ctx, device, False
    if device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(device)
    if dist.is_initialized():
        return ctx, device, False
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return ctx, device, True


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def broadcast_values(values: list[float], device: torch.device) -> list[float]:
    """Rank 0's numbers on every rank, in float64 (a clock in seconds keeps its microseconds):
    decisions all ranks must share, such as stopping, checkpointing, the learning rate's clock."""
    if not active():
        return values
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return t.tolist()


def broadcast_flags(flags: list[bool], device: torch.device) -> list[bool]:
    """Rank 0's booleans on every rank (a stop or checkpoint decision all ranks must share)."""
    return [bool(v) for v in broadcast_values([float(f) for f in flags], device)]


def mean_over_ranks(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """The ranks' mean of each value (same keys on every rank): losses for the log."""
    if not active():
        return values
    keys = sorted(values)
    t = mean_(torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device))
    return dict(zip(keys, t.tolist(), strict=True))


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (e.g. torch RNG states for the checkpoint)."""
    if not active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def check_in_sync(model: nn.Module, device: torch.device) -> None:
    """Raise if the ranks' parameters differ (an in-place update one rank made alone)."""
    if not active():
        return
    with torch.no_grad():
        sums = torch.stack([p.detach().double().sum() for p in model.parameters()]).to(device)
        lo, hi = sums.clone(), sums.clone()
        dist.all_reduce(lo, op=dist.ReduceOp.MIN)
        dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    bad = torch.nonzero(hi - lo > 1e-6 * (1 + hi.abs())).flatten().tolist()
    if bad:
        names = [n for i, (n, _) in enumerate(model.named_parameters()) if i in bad]
        raise RuntimeError(f"ranks hold different weights for {names[:5]}: training diverged")


class ObjectiveModule(nn.Module):
    """``model`` and its objective as one module whose ``forward(clip, step)`` returns
    ``(loss, terms)``, so ``DistributedDataParallel`` sees the whole computation (objectives
    call the model's parts, not its ``forward``)."""

    def __init__(self, model: nn.Module, step_fn: Any) -> None:
        super().__init__()
        self.model = model
        self.step_fn = step_fn

    def forward(self, clip: torch.Tensor, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        return self.step_fn(self.model, clip, step)


def all_reduce_sum_(t: torch.Tensor) -> torch.Tensor:
    """In-place sum over ranks (no-op in one process)."""
    if active():
        dist.all_reduce(t)
    return t


def mean_(t: torch.Tensor) -> torch.Tensor:
    """In place: the mean over ranks (no-op in one process)."""
    if active():
        all_reduce_sum_(t).div_(dist.get_world_size())
    return t


def any_over_ranks(flag: bool, device: torch.device) -> bool:
    """True on every rank when it is true on any (e.g. one rank's loss went NaN)."""
    if not active():
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def broadcast_(t: torch.Tensor, src: int = 0) -> torch.Tensor:
    """In place: rank ``src``'s values on every rank (no-op in one process)."""
    if active():
        dist.broadcast(t, src=src)
    return t
