"""Data-parallel training under torchrun with 2 CPU processes (gloo), end to end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from latentplay.rollouts import ClipDataset
from latentplay.world_models.checkpoint import load_model, read_checkpoint
from latentplay.world_models.train import Batcher

ROOT = Path(__file__).resolve().parents[1]
HELPER = Path(__file__).parent / "helpers" / "ddp_toy.py"
TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"


@pytest.fixture(scope="module")
def toy(toy_dataset) -> Path:
    return toy_dataset(episodes=24, steps=12, size=32)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


def _torchrun(*args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess:
    cmd = [TORCHRUN, "--standalone", "--nproc_per_node=2", *args]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_env(**env))
    if check and run.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{run.stderr[-3000:]}")
    return run


def _python(*args: str) -> None:
    subprocess.run(
        [sys.executable, *args], check=True, capture_output=True, timeout=300, env=_env()
    )


def test_batcher_ranks_split_one_global_batch(toy: Path) -> None:
    ds = ClipDataset(toy, clip_length=2, cache=True)
    whole = Batcher(ds, 6, seed=1).next()
    parts = [Batcher(ds, 6, seed=1, rank=r, world_size=2).next() for r in range(2)]
    torch.testing.assert_close(parts[0], whole[0::2])
    torch.testing.assert_close(parts[1], whole[1::2])
    with pytest.raises(ValueError, match=r"batch_size=5 .* multiple of 2"):
        Batcher(ds, 5, seed=1, rank=0, world_size=2)


def test_two_ranks_train_what_one_process_trains(toy: Path, tmp_path: Path) -> None:
    """Same global batch, averaged gradients: the 2-rank model equals the 1-process one."""
    _torchrun(str(HELPER), str(toy), str(tmp_path / "ddp"), "10", "8")
    _python(str(HELPER), str(toy), str(tmp_path / "one"), "10", "8")
    ddp = read_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pt")
    one = read_checkpoint(tmp_path / "one" / "checkpoints" / "last.pt")
    assert (ddp["world_size"], one["world_size"], ddp["step"]) == (2, 1, 10)
    assert len(ddp["rng"]["torch_ranks"]) == 2
    moved = max((one["model"][k] - 0).abs().max().item() for k in one["model"])
    assert moved > 0.05
    for k, v in one["model"].items():
        torch.testing.assert_close(ddp["model"][k], v, rtol=0, atol=2e-6, msg=k)
    # Rank 0 alone logged: one line per step, each the mean over ranks.
    lines = (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(ln)["step"] for ln in lines] == list(range(1, 11))
    ddp_loss = [json.loads(ln)["train/loss/total"] for ln in lines]
    one_loss = [
        json.loads(ln)["train/loss/total"]
        for ln in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()
    ]
    np.testing.assert_allclose(ddp_loss, one_loss, rtol=1e-5)


def test_a_nan_loss_on_one_rank_stops_every_rank(toy: Path, tmp_path: Path) -> None:
    run = _torchrun(str(HELPER), str(toy), str(tmp_path / "x"), "6", "8", "nan", check=False)
    assert run.returncode != 0  # (a hang would fail the 300 s timeout instead)
    for rank in (0, 1):
        assert f"[rank{rank}]: FloatingPointError: loss is" in run.stderr, run.stderr[-2000:]
    assert "not finite on at least one rank" in run.stderr


@pytest.mark.gpu
def test_two_ranks_on_cuda_use_nccl_and_train_what_one_process_trains(
    toy: Path, tmp_path: Path
) -> None:
    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 CUDA devices")
    _torchrun(str(HELPER), str(toy), str(tmp_path / "ddp"), "10", "8", DDP_TOY_DEVICE="cuda")
    _python(str(HELPER), str(toy), str(tmp_path / "one"), "10", "8")
    ddp = read_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pt")
    one = read_checkpoint(tmp_path / "one" / "checkpoints" / "last.pt")
    for k, v in one["model"].items():
        torch.testing.assert_close(ddp["model"][k], v, rtol=1e-4, atol=1e-5, msg=k)


def test_a_rank_that_drifts_alone_is_caught(toy: Path, tmp_path: Path) -> None:
    run = _torchrun(str(HELPER), str(toy), str(tmp_path / "x"), "6", "8", "diverge", check=False)
    assert run.returncode != 0
    assert "ranks hold different weights for ['net.0.bias']" in run.stderr
    # Rank 1 drifted during step 3, after the checkpoint of step 3: that one is kept.
    kept = read_checkpoint(tmp_path / "x" / "checkpoints" / "last.pt")
    assert kept["step"] == 3


def test_glass_checkpoint_moves_between_torchrun_and_one_process(toy: Path, tmp_path: Path) -> None:
    """scripts/train.py under torchrun, resumed in one process, resumed under torchrun again."""
    out = tmp_path / "run"
    common = [
        "model=glass",
        "model.size=xs",
        "model.schedule.gma_warmup_steps=2",  # the local actions (and VQ sync) from step 2
        f"data={toy}",
        "trainer.max_minutes=null",
        "trainer.batch_size=4",
        "trainer.log_every=2",
        "trainer.sample_every=1000",
        "trainer.progress=false",
        f"out={out}",
    ]
    script = str(ROOT / "scripts" / "train.py")
    _torchrun(script, *common, "trainer.max_steps=4")
    assert read_checkpoint(out / "checkpoints" / "last.pt")["world_size"] == 2
    _python(script, *common, "trainer.max_steps=8", "resume=true")
    ckpt = read_checkpoint(out / "checkpoints" / "last.pt")
    assert (ckpt["step"], ckpt["world_size"]) == (8, 1)
    _torchrun(script, *common, "trainer.max_steps=12", "resume=true")
    ckpt = read_checkpoint(out / "checkpoints" / "last.pt")
    assert (ckpt["step"], ckpt["world_size"]) == (12, 2)
    steps = [json.loads(ln)["step"] for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6, 8, 10, 12], "log lines lost or doubled across the resumes"
    model, _ = load_model(out / "checkpoints" / "last.pt")
    frames = ClipDataset(toy, clip_length=3)[0][None]
    assert torch.isfinite(model.rollout(frames[:, :1], model.infer_actions(frames))).all()
