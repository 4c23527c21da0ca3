"""Training loop for world models: time/step budgets, exact resume, logs, samples, checkpoints.

The loop knows nothing of a model's losses: a ``step_fn(model, clip, step) -> (loss, terms)``
does (e.g. :func:`latentplay.world_models.glass.train.GlassObjective`). Batches are drawn by a
NumPy generator whose state is checkpointed with the model, the optimizer and torch's RNG, so
``resume=True`` continues exactly where the last checkpoint left off.

Under ``torchrun`` (``WORLD_SIZE > 1``) the same loop trains data-parallel
(:mod:`latentplay.world_models.distributed`): ``batch_size`` stays the *global* batch, each
rank computes its slice of it, ``DistributedDataParallel`` averages the gradients, and rank 0
alone logs and checkpoints, in the single-process format.
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from latentplay.rollouts.dataset import ClipDataset
from latentplay.rollouts.format import load_meta
from latentplay.utils.device import resolve_device
from latentplay.utils.frames import to_float_frames
from latentplay.utils.io import atomic_path
from latentplay.utils.progress import progress_bar
from latentplay.world_models import distributed
from latentplay.world_models.checkpoint import (
    check_compatible,
    read_checkpoint,
    save_checkpoint,
)
from latentplay.world_models.checkpoint_format import trained_weights
from latentplay.world_models.settings import TrainerSettings
from latentplay.world_models.shipped import resolve_checkpoint

StepFn = Callable[[nn.Module, torch.Tensor, int], tuple[torch.Tensor, dict[str, float]]]


class WeightAverage:
    """Exponential moving average of a model's floating-point parameters (buffers are the
    live model's). ``decay`` per step, with the usual warm-up ``min(decay, (1 + n) / (10 + n))``
    so that early averages do not hold the random initial weights."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay, self.updates = decay, 0
        self.shadow = {
            k: p.detach().clone() for k, p in model.named_parameters() if p.dtype.is_floating_point
        }

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for k, p in model.named_parameters():
            if k in self.shadow:
                self.shadow[k].lerp_(p.detach(), 1.0 - d)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """The saved average and its update count; the decay stays this run's setting."""
        only_saved = sorted(set(state["shadow"]) - set(self.shadow))
        only_model = sorted(set(self.shadow) - set(state["shadow"]))
        if only_saved or only_model:
            raise ValueError(
                f"the saved weight average does not fit the model: only in the average "
                f"{only_saved[:5]}, only in the model {only_model[:5]}"
            )
        self.updates = int(state["updates"])
        for k, v in state["shadow"].items():
            self.shadow[k].copy_(v)


def adam(params: Iterable[nn.Parameter], lr: float, device: torch.device) -> torch.optim.Adam:
    """Adam as the trainer runs it: fused into one kernel per step on devices torch fuses it
    for (CPU, CUDA); its default on a CPU loops over the parameters, several ms a step for a
    model of a few million weights. The same update up to float rounding."""
    fused = device.type in ("cpu", "cuda")
    return torch.optim.Adam(params, lr=lr, fused=fused or None)


@dataclass
class TrainingRun:
    """What a model family's training builder (``configs/model/*.yaml``'s ``_target_``) makes
    for a dataset: the model, its objective, the clips, and optional hooks for :func:`train`."""

    model: nn.Module
    objective: StepFn
    dataset: ClipDataset
    sample_fn: Callable[[nn.Module, torch.Tensor, Path], None] | None = None
    before_checkpoint: Callable[[nn.Module], None] | None = None


NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})  # CPU flags of native bf16 math


def uses_bf16(precision: str, device: torch.device) -> bool:
    """Whether ``trainer.precision`` means bf16 autocast on ``device`` (``auto``: where the
    hardware computes bf16 natively)."""
    if precision != "auto":
        return precision == "bf16"
    return native_bf16(device)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively (CUDA with bf16; a CPU with its flags)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bool(_cpu_flags() & NATIVE_BF16_FLAGS)


def warn_if_emulated_bf16(bf16: bool, device: torch.device) -> None:
    """A RuntimeWarning when bf16 autocast is asked for on a CPU without native bf16 math:
    torch then emulates it, many times slower than fp32 (``auto`` picks fp32 there)."""
    if bf16 and device.type == "cpu" and not native_bf16(device):
        flags = " nor ".join(sorted(NATIVE_BF16_FLAGS))
        warnings.warn(
            f"trainer.precision=bf16 on a CPU without native bf16 (neither {flags} among its "
            "flags): autocast emulates it, many times slower than fp32; "
            "trainer.precision=auto picks fp32 on this CPU",
            RuntimeWarning,
            stacklevel=4,  # the caller of train()
        )


def _trained_in(ckpt: dict, device: torch.device) -> str:
    """ "bf16" or "fp32": what a checkpoint's run computed in (older checkpoints do not record
    it: their trainer.precision read on this device; absent, fp32, the default then)."""
    if "autocast" in ckpt:
        return ckpt["autocast"]
    precision = ckpt.get("trainer", {}).get("precision", "fp32")
    return "bf16" if uses_bf16(precision, device) else "fp32"


def _cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux's /proc/cpuinfo; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def frame_size(data: str | Path) -> int:
    """The side of a dataset's square frames, from its meta.json (models take square frames)."""
    meta = load_meta(data)
    if meta["width"] != meta["height"]:
        raise ValueError(f"{data}: frames are {meta['width']}x{meta['height']}; expected square")
    return int(meta["width"])


def train_model(
    build: Callable[..., TrainingRun],
    data: str | Path,
    settings: TrainerSettings,
    *,
    out: str | Path | None = None,
    split: str = "train",
    resume: bool | str = False,
    config: dict[str, Any] | None = None,
    init: str | Path | None = None,
) -> TrainResult:
    """Build a model family's training run on ``data`` (``build(data=..., split=...)``, e.g. a
    partial of :func:`latentplay.world_models.glass.train.glass_training`) and :func:`train` it
    into ``out`` (None: ``runs/<model name>``). The initial weights come from the run's seed:
    the same command trains the same model, and under torchrun every rank builds the same one.
    ``init``: start instead from the trained weights of a checkpoint or a shipped model's name
    (fine-tuning: the optimizer, step count and time budget start fresh; a resumed run
    continues from its own checkpoint and ignores it)."""
    torch.manual_seed(settings.seed)
    run = build(data=str(data), split=split)
    out = Path(out) if out is not None else Path("runs") / type(run.model).name
    if config is not None:
        config = {**config, "out": str(out)}
    return train(
        run.model,
        run.objective,
        run.dataset,
        out,
        settings,
        resume=resume,
        config=config,
        sample_fn=run.sample_fn,
        before_checkpoint=run.before_checkpoint,
        init=init,
    )


def load_initial_weights(model: nn.Module, init: str | Path) -> None:
    """Copy the trained weights (its moving average, if it has one) of ``init``, a checkpoint
    or a shipped model's name, into ``model``, which must be built with the same settings."""
    path = resolve_checkpoint(init)
    ckpt = read_checkpoint(path, "cpu")
    remedy = f"init={init}: pass the model settings it was trained with."
    check_compatible(path, ckpt, model, remedy)
    model.load_state_dict(trained_weights(ckpt, average=True))


@dataclass
class TrainResult:
    out: Path
    step: int
    seconds: float
    transitions_per_s: float
    last_terms: dict[str, float]


class Batcher:
    """Random clips from an in-memory :class:`ClipDataset` split, by a seeded generator.

    Each call draws the indices of one global batch of ``batch_size`` clips; rank ``r`` of
    ``world_size`` loads and returns only its slice ``r::world_size``. Every rank draws the same
    indices, so the generator's state is one for all ranks and any world size."""

    def __init__(
        self, dataset: ClipDataset, batch_size: int, seed: int, rank: int = 0, world_size: int = 1
    ) -> None:
        if batch_size % world_size:
            raise ValueError(
                f"trainer.batch_size={batch_size} is the global batch and must split evenly over "
                f"{world_size} ranks; expected a multiple of {world_size}"
            )
        self.dataset, self.batch_size = dataset, batch_size
        self.rank, self.world_size = rank, world_size
        self.rng = np.random.default_rng(seed)

    def next(self) -> torch.Tensor:
        idx = self.rng.integers(len(self.dataset), size=self.batch_size)
        return torch.stack([self.dataset[int(i)] for i in idx[self.rank :: self.world_size]])


def _rank_seed(seed: int, rank: int) -> int:
    """torch's seed on a rank: the run's seed on rank 0 (single-process runs unchanged)."""
    return seed if rank == 0 else int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


def _clean_stale_temporaries(folder: Path) -> None:
    """Hidden temporary checkpoints of a killed run (never a complete checkpoint)."""
    for tmp in folder.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop log lines past ``step`` (written after the checkpoint we resume from)."""
    if not path.is_file():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
    path.write_text("".join(ln + "\n" for ln in keep))


def train(
    model: nn.Module,
    step_fn: StepFn,
    data: ClipDataset,
    out: str | Path,
    settings: TrainerSettings,
    resume: bool | str = False,
    config: dict[str, Any] | None = None,
    sample_fn: Callable[[nn.Module, torch.Tensor, Path], None] | None = None,
    before_checkpoint: Callable[[nn.Module], None] | None = None,
    init: str | Path | None = None,
) -> TrainResult:
    """Train ``model`` on clips of ``data`` into the run folder ``out``.

    ``resume``: False (a run already in ``out`` is an error), True (continue it exactly; it
    must exist) or ``"auto"`` (continue when there is one, else start). ``init``: a run that
    starts (not one that resumes) takes the trained weights of that checkpoint or shipped
    model first (:func:`load_initial_weights`).
    ``out/checkpoints/last.pt`` is rewritten atomically every few minutes and at the end;
    ``out/metrics.jsonl`` and TensorBoard logs (``out/tb``) get ``train/loss/*`` every
    ``log_every`` steps; ``sample_fn`` writes videos to ``out/samples`` every ``sample_every``;
    ``before_checkpoint(model)`` runs before each checkpoint (e.g. to recompute statistics that
    only inference reads; it must not change what training computes).
    """
    out = Path(out)
    ckpt_path = out / "checkpoints" / "last.pt"
    if resume not in (True, False, "auto"):
        raise ValueError(f"resume={resume!r}; expected true, false or auto")
    if settings.ema_decay is not None and before_checkpoint is not None:
        # the statistics it computes come from the trained weights, not from their average
        raise ValueError(
            f"trainer.ema_decay={settings.ema_decay} with model={type(model).name}: "
            "its inference statistics are calibrated on the trained weights before each "
            "checkpoint (before_checkpoint); expected trainer.ema_decay=null"
        )
    if resume == "auto":
        resume = ckpt_path.exists()
    if ckpt_path.exists() and not resume:
        raise FileExistsError(
            f"{out} already holds a run; pass resume=true to continue it, or choose another out"
        )
    if init is not None and not resume:
        load_initial_weights(model, init)
    ctx, device, owns_group = distributed.init(resolve_device(settings.device))
    finished = False
    try:
        result = _train(
            ctx,
            device,
            model,
            step_fn,
            data,
            out,
            settings,
            resume,
            config,
            sample_fn,
            before_checkpoint,
        )
        finished = True
        return result
    finally:
        if owns_group:
            if finished:  # every rank done before any tears down gloo (else a rank may abort)
                distributed.dist.barrier()
            distributed.dist.destroy_process_group()


def _train(
    ctx: distributed.Context,
    device: torch.device,
    model: nn.Module,
    step_fn: StepFn,
    data: ClipDataset,
    out: Path,
    settings: TrainerSettings,
    resume: bool,
    config: dict[str, Any] | None,
    sample_fn: Callable[[nn.Module, torch.Tensor, Path], None] | None,
    before_checkpoint: Callable[[nn.Module], None] | None,
) -> TrainResult:
    from torch.utils.tensorboard import SummaryWriter

    ckpt_path = out / "checkpoints" / "last.pt"
    main = ctx.is_main
    torch.manual_seed(_rank_seed(settings.seed, ctx.rank))
    model.to(device)
    bf16 = uses_bf16(settings.precision, device)
    warn_if_emulated_bf16(bf16, device)
    autocast = "bf16" if bf16 else "fp32"  # what "auto" resolves to on this device
    if settings.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = adam(model.parameters(), settings.lr, device)
    average = WeightAverage(model, settings.ema_decay) if settings.ema_decay else None
    batcher = Batcher(data, settings.batch_size, settings.seed, ctx.rank, ctx.world_size)
    step, elapsed = 0, 0.0
    if resume:
        if not ckpt_path.exists():
            raise FileNotFoundError(f"resume=true but {ckpt_path} does not exist")
        ckpt = read_checkpoint(ckpt_path, device)
        check_compatible(ckpt_path, ckpt, model)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        step, elapsed = ckpt["step"], ckpt["elapsed_seconds"]
        was = _trained_in(ckpt, device)
        if was != autocast:  # a run continues in the precision it began in
            raise ValueError(
                f"{ckpt_path} was trained in {was}; here trainer.precision="
                f"{settings.precision!r} means {autocast}: resume it with "
                f"trainer.precision={was}"
            )
        saved = ckpt.get("ema")
        if (average is None) != (saved is None):  # all ranks read it: all raise together
            raise ValueError(
                f"{ckpt_path} was trained with trainer.ema_decay="
                f"{None if saved is None else saved['decay']}; resume it with that value, not "
                f"{settings.ema_decay} (a run cannot gain or lose its weight average)"
            )
        if average is not None:
            try:
                average.load_state_dict(saved)
            except ValueError as e:
                raise ValueError(f"{ckpt_path}: {e}") from e
        batcher.rng.bit_generator.state = ckpt["rng"]["numpy"]
        # torch's generator per rank: the rank's own state when the world size is the one
        # saved, else rank 0 takes the saved state and the others fresh seeds from (seed, step).
        ranks = ckpt["rng"].get("torch_ranks") or [ckpt["rng"]["torch"]]
        if len(ranks) == ctx.world_size:
            torch.set_rng_state(ranks[ctx.rank].cpu())
        elif main:
            torch.set_rng_state(ckpt["rng"]["torch"].cpu())
        else:
            torch.manual_seed(_rank_seed(settings.seed + step, ctx.rank))
        if main:
            _truncate_metrics(out / "metrics.jsonl", step)
    if main:
        (out / "samples").mkdir(parents=True, exist_ok=True)
        ckpt_path.parent.mkdir(exist_ok=True)
        _clean_stale_temporaries(ckpt_path.parent)
    engine: Any = None
    if ctx.distributed:
        from torch.nn.parallel import DistributedDataParallel

        engine = DistributedDataParallel(
            distributed.ObjectiveModule(model, step_fn),
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=settings.find_unused_parameters,
        )

    def checkpoint() -> None:
        distributed.check_in_sync(model, device)
        torch_states = distributed.gather_objects(torch.get_rng_state())
        if not main:
            return
        if before_checkpoint is not None:
            before_checkpoint(model)
        rng = {"numpy": batcher.rng.bit_generator.state, "torch": torch_states[0]}
        if ctx.distributed:
            rng["torch_ranks"] = torch_states
        save_checkpoint(
            ckpt_path,
            model=model,
            optimizer=optimizer.state_dict(),
            step=step,
            elapsed_seconds=elapsed,
            rng=rng,
            trainer=asdict(settings),
            autocast=autocast,
            config=config or {},
            world_size=ctx.world_size,
            ema=None if average is None else average.state_dict(),
        )
        if settings.keep_checkpoints:
            with atomic_path(ckpt_path.with_name(f"step_{step:07d}.pt")) as tmp:
                shutil.copyfile(ckpt_path, tmp)

    writer = SummaryWriter(str(out / "tb"), purge_step=step if resume else None) if main else None
    bar = progress_bar(
        total=settings.max_steps,
        initial=step,
        desc=f"train {type(model).__name__}"
        + (f" x{ctx.world_size} ranks" if ctx.distributed else ""),
        unit="step",
        disable=not (settings.progress and main),
    )
    metrics = open(out / "metrics.jsonl", "a") if main else None
    first_step = step  # a resumed run that takes no step leaves its checkpoint as it is
    last_ckpt, transitions, t_rate = time.monotonic(), 0, 0.0
    terms: dict[str, float] = {}
    clip: torch.Tensor | None = None
    model.train()
    try:
        while True:
            stop = settings.done_fraction(step, elapsed) >= 1.0
            due = time.monotonic() - last_ckpt > settings.checkpoint_every_minutes * 60
            # Rank 0's clock decides for all: ranks must stop and checkpoint at the same step,
            # and step with the same learning rate (a schedule over a time budget reads it).
            stop_v, due_v, elapsed = distributed.broadcast_values([stop, due, elapsed], device)
            stop, due = bool(stop_v), bool(due_v)
            if stop:
                break
            if due and step > 0:
                checkpoint()
                last_ckpt = time.monotonic()
            t0 = time.perf_counter()
            clip = to_float_frames(batcher.next().to(device))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                if engine is not None:
                    loss, terms = engine(clip, step)
                else:
                    loss, terms = step_fn(model, clip, step)
            loss = loss.float()
            # All ranks stop together (a rank raising alone would leave the others waiting in
            # the gradient all-reduce).
            if distributed.any_over_ranks(not bool(torch.isfinite(loss)), device):
                raise FloatingPointError(
                    f"loss is {float(loss)} on rank {ctx.rank} at step {step} (not finite on at "
                    f"least one rank); terms {terms}"
                )
            for group in optimizer.param_groups:
                group["lr"] = settings.lr_at(step, elapsed)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if settings.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
            optimizer.step()
            if average is not None:
                average.update(model)
            dt = time.perf_counter() - t0
            elapsed += dt
            step += 1
            per_clip = getattr(step_fn, "transitions_per_clip", clip.shape[1] - 1)
            transitions += clip.shape[0] * ctx.world_size * per_clip  # all ranks
            t_rate += dt
            bar.update(1)
            if step % settings.log_every == 0:
                logged = distributed.mean_over_ranks(
                    {"total": float(loss.detach()), **terms}, device
                )
            if main and step % settings.log_every == 0:
                rate = transitions / max(t_rate, 1e-9)
                row = {
                    "step": step,
                    "elapsed_s": round(elapsed, 2),
                    "train/transitions_per_s": rate,
                    "train/lr": optimizer.param_groups[0]["lr"],
                }
                row.update({f"train/loss/{k}": v for k, v in logged.items()})
                metrics.write(json.dumps(row) + "\n")
                metrics.flush()
                for k, v in row.items():
                    if k.startswith("train/"):
                        writer.add_scalar(k, v, step)
                bar.set_postfix(loss=f"{logged['total']:.4f}", tps=f"{rate:.0f}")
            if main and sample_fn is not None and step % settings.sample_every == 0:
                model.eval()
                with torch.no_grad():
                    sample_fn(model, clip[:4], out / "samples" / f"step_{step:07d}.mp4")
                model.train()
        if step > first_step or not resume:
            checkpoint()
        if main and sample_fn is not None and clip is not None:
            model.eval()
            with torch.no_grad():
                sample_fn(model, clip[:4], out / "samples" / f"step_{step:07d}.mp4")
    finally:
        if metrics is not None:
            metrics.close()
        if writer is not None:
            writer.close()
        bar.close()
    return TrainResult(
        out=out,
        step=step,
        seconds=elapsed,
        transitions_per_s=transitions / max(t_rate, 1e-9),
        last_terms=terms,
    )
