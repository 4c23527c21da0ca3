"""Training and sampling speed of the world models: GLASS per size, YODA per size and ODE
setting, and data-parallel training under torchrun."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def bench_glass(
    sizes: Sequence[str] = ("s", "paper"),
    batch: int = 16,
    seq_len: int = 8,
    steps: int = 3,
    repeats: int = 3,
    image_size: int = 64,
) -> list[dict[str, Any]]:
    """Training transitions/s (GMA + LMA, forward, backward, the trainer's Adam) per GLASS
    size, on random 64x64 clips, channels_last, in this process. Median over repeats of
    ``steps`` steps."""
    import torch

    from latentplay.world_models.glass import Glass
    from latentplay.world_models.glass.model import describe
    from latentplay.world_models.glass.train import GlassObjective, GlassSchedule
    from latentplay.world_models.train import adam

    objective = GlassObjective(
        GlassSchedule(gma_warmup_steps=0, seq_len_start=seq_len, seq_len_end=seq_len)
    )
    rows = []
    for size in sizes:
        torch.manual_seed(0)
        model = Glass(size=size, image_size=image_size).to(memory_format=torch.channels_last)
        opt = adam(model.parameters(), 4e-4, torch.device("cpu"))
        clip = torch.rand(batch, seq_len, 3, image_size, image_size)

        def step(model: Any = model, opt: Any = opt, clip: Any = clip) -> None:
            loss, _ = objective(model, clip, 10_000)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        step()  # warm-up: allocator, mkldnn primitives
        rates = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            rates.append(steps * batch * (seq_len - 1) / (time.perf_counter() - t0))
        rows.append(
            {
                "name": f"GLASS size={size}",
                "params": describe(model)["params"]["total"],
                "masker_params": describe(model)["params"]["masker"],
                "transitions_per_s": statistics.median(rates),
                "min": min(rates),
                "max": max(rates),
                "batch": batch,
                "seq_len": seq_len,
                "repeats": repeats,
            }
        )
    base = rows[0]["transitions_per_s"]
    for r in rows:
        r["x_first"] = r["transitions_per_s"] / base
    return rows


def bench_yoda(
    settings: Sequence[tuple[str, str, int, bool]] = (
        ("s", "euler", 1, False),
        ("s", "euler", 3, False),  # the default
        ("s", "euler", 5, False),
        ("s", "euler", 10, False),
        ("s", "heun", 5, False),
        ("s", "euler", 20, False),
        ("xs", "euler", 3, False),
        ("m", "euler", 3, False),
        ("s", "euler", 1, True),
        ("s", "euler", 3, True),
        ("m", "euler", 3, True),
    ),
    repeats: int = 5,
    image_size: int = 64,
    checkpoint: str | None = None,
    batch: int = 16,
    autoencoder: str | None = None,
    latent_patch: int | None = None,
    precision: str = "auto",
) -> list[dict[str, Any]]:
    """Seconds per generated frame (batch 1, a random poke, decoded) per YODA size, solver, ODE
    steps and space (pixels, or the latents of ``autoencoder``), median over ``repeats``, beside
    the 0.3 s target and what YODA's own sampler (100 RK4 steps = 400 network evaluations) would
    cost at the same per-evaluation time. Also the training samples/s (forward, backward, the
    trainer's Adam at ``batch``) per size and space as each trains (pixels: the optical flow of
    each step's clips computed in the step; latents: drawn with their flows from the caches a
    latent model builds once, on a small toy dataset), and the latent's rate over the pixel
    model's of its size, beside the ratio of their training steps' network FLOPs (what the rate
    ratio would be if both ran at the same FLOP rate; the pixel model's optical flow aside).
    ``checkpoint``: time that model's size (weights do not change the cost; the default is
    random weights); ``autoencoder``: the latent rows' (default: an untrained one of the default
    shape); ``latent_patch``: their net's stem patch (None: the model's default); ``precision``:
    the training rows' as ``trainer.precision`` means it here (``auto``: bf16 autocast where the
    CPU computes bf16 natively, as training does by default)."""

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from latentplay.evaluation.poke.scoring import step_times
    from latentplay.rollouts.dataset import ClipDataset
    from latentplay.rollouts.toy import make_toy_dataset
    from latentplay.world_models.autoencoder import FrameAutoencoder
    from latentplay.world_models.checkpoint import save_checkpoint
    from latentplay.world_models.train import adam, uses_bf16
    from latentplay.world_models.yoda import Yoda
    from latentplay.world_models.yoda.train import YodaObjective

    rows, train_rate, train_flops = [], {}, {}
    bf16 = uses_bf16(precision, torch.device("cpu"))
    with tempfile.TemporaryDirectory() as tmp:
        clips = ClipDataset(
            make_toy_dataset(Path(tmp) / "toy", episodes=8, steps=16, size=image_size),
            clip_length=8,
            cache=True,
        )
        if autoencoder is None:
            torch.manual_seed(0)
            ae = FrameAutoencoder(image_size=image_size)
            autoencoder = str(save_checkpoint(Path(tmp) / "ae.pt", model=ae, step=0))
        for size, solver, steps, latent in settings:
            space = {"autoencoder": autoencoder, "patch": latent_patch} if latent else {}
            torch.manual_seed(0)
            model = Yoda(
                size=size, image_size=image_size, solver=solver, sample_steps=steps, **space
            ).eval()
            model.to(memory_format=torch.channels_last)  # as load_model gives it
            times = step_times(model, "cpu", repeats)
            evals = steps if solver == "euler" else 2 * steps - 1
            sec = statistics.median(times)
            if (size, latent) not in train_rate:
                tm = Yoda(size=size, image_size=image_size, **space).train()
                tm.to(memory_format=torch.channels_last)
                params = [p for p in tm.parameters() if p.requires_grad]
                opt = adam(params, 1e-4, torch.device("cpu"))
                clip = torch.rand(batch, 8, 3, image_size, image_size)
                # as each trains: pixels compute the flow of the step's clips; a latent model
                # draws latents and flows from its caches (built in the warm-up step)
                obj = YodaObjective(dataset=clips if latent else None)
                rates = []
                for i in range(1 + repeats):
                    t0 = time.perf_counter()
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                        loss, _ = obj(tm, clip, i)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    if i:  # the first is warm-up
                        rates.append(batch / (time.perf_counter() - t0))
                train_rate[size, latent] = statistics.median(rates)
                # the step's network work (matmuls, convolutions, attention; forward and
                # backward), counted once in fp32: the rate ratio's compute-bound ceiling
                with FlopCounterMode(display=False) as flops:
                    loss, _ = obj(tm, clip, 1 + repeats)
                    loss.backward()
                train_flops[size, latent] = flops.get_total_flops() / batch
            pixel_rate = train_rate.get((size, False))
            pixel_flops = train_flops.get((size, False))
            rows.append(
                {
                    "name": f"YODA size={size} {'latent' if latent else 'pixels'} "
                    f"{solver} {steps} steps",
                    "params": sum(p.numel() for p in model.net.parameters()),
                    "evaluations": evals,
                    "s_per_frame": sec,
                    "min": min(times),
                    "max": max(times),
                    "x_target": sec / 0.3,
                    "paper_sampler_s": sec / evals * 400,
                    "train_samples_per_s": train_rate[size, latent],
                    "train_precision": "bf16" if bf16 else "fp32",
                    "x_pixel_train": train_rate[size, latent] / pixel_rate
                    if pixel_rate
                    else float("nan"),
                    "train_gflop_per_sample": train_flops[size, latent] / 1e9,
                    "x_pixel_flops": pixel_flops / train_flops[size, latent]
                    if pixel_flops
                    else float("nan"),
                    "repeats": repeats,
                }
            )
    return rows


def bench_torchrun(
    procs: Sequence[int] = (1, 2),
    model: str = "glass",
    size: str = "s",
    batch: int = 16,
    steps: int = 40,
    skip: int = 20,
    repeats: int = 3,
    image_size: int = 64,
) -> list[dict[str, Any]]:
    """Training samples/s of ``scripts/train.py`` in one plain process and under
    ``torchrun --nproc_per_node=n`` (DDP, gloo), same global batch, on a synthetic dataset of
    ``image_size`` frames. Rates come from the run's own metrics.jsonl (training compute time,
    excluding start-up, checkpoints and samples) over steps ``skip..steps``, identical steps in
    every row (GLASS's curriculum changes the cost per step)."""
    import json
    import shutil
    import subprocess
    import sys

    from latentplay.rollouts.toy import make_toy_dataset

    root = Path(__file__).resolve().parents[1]  # the repository: scripts/ sits beside bench/
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    rows = []
    with tempfile.TemporaryDirectory(prefix="lp-bench-ddp-") as tmp:
        data = make_toy_dataset(Path(tmp) / "toy", episodes=32, steps=16, size=image_size)
        env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
        runs = [("python, 1 process", [sys.executable], 1)]
        runs += [
            (
                f"torchrun, {n} process{'es' if n > 1 else ''}",
                [torchrun, "--standalone", f"--nproc_per_node={n}"],
                n,
            )
            for n in procs
        ]
        for label, launcher, n in runs:
            rates = []
            for r in range(repeats):
                out = Path(tmp) / f"run-{n}-{len(rows)}-{r}"
                cmd = [
                    *launcher,
                    str(root / "scripts" / "train.py"),
                    f"model={model}",
                    f"model.size={size}",
                    f"data={data}",
                    f"out={out}",
                    f"trainer.batch_size={batch}",
                    f"trainer.max_steps={steps}",
                    "trainer.max_minutes=null",
                    "trainer.log_every=1",
                    "trainer.sample_every=1000000",
                    "trainer.progress=false",
                ]
                subprocess.run(cmd, check=True, capture_output=True, env=env, timeout=1800)
                log = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
                by_step = {row["step"]: row["elapsed_s"] for row in log}
                seconds = by_step[steps] - by_step[skip]
                rates.append((steps - skip) * batch / seconds)
            rows.append(
                {
                    "name": f"{model} {size} {image_size}x{image_size}, {label}",
                    "processes": n,
                    "samples_per_s": statistics.median(rates),
                    "min": min(rates),
                    "max": max(rates),
                    "global_batch": batch,
                    "steps_timed": steps - skip,
                    "threads_per_process": os.cpu_count() if n == 1 else 1,
                    "repeats": repeats,
                }
            )
    base = rows[0]["samples_per_s"]
    for r in rows:
        r["x_one_process"] = r["samples_per_s"] / base
    return rows
