"""Faults: SIGKILL during training, a checkpoint killed mid-write, damaged shards, full disks.

(SIGKILL during collection: tests/test_collect.py; a failing Ray task: tests/test_ray.py.)
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from latentplay.rollouts import CorruptShardError, EpisodeReader
from latentplay.rollouts.format import Episode, ShardWriter
from latentplay.utils.io import write_json_atomic
from latentplay.world_models import checkpoint as ckpt_mod
from latentplay.world_models.checkpoint import load_model, read_checkpoint, save_checkpoint
from latentplay.world_models.glass import Glass

ROOT = Path(__file__).resolve().parents[1]
HELPERS = Path(__file__).parent / "helpers"


@pytest.fixture(scope="module")
def toy(toy_dataset) -> Path:
    return toy_dataset(episodes=24, steps=12, size=32)


@pytest.fixture(scope="module")
def dataset(push_dataset: Path) -> Path:
    return push_dataset


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------- training
def _train_args(toy: Path, out: Path, steps: int, every_minutes: float) -> list[str]:
    return [
        sys.executable,
        str(ROOT / "scripts" / "train.py"),
        "model=glass",
        "model.size=xs",
        f"data={toy}",
        f"out={out}",
        "trainer.batch_size=4",
        f"trainer.max_steps={steps}",
        "trainer.max_minutes=null",
        "trainer.log_every=1",
        "trainer.sample_every=100000",
        f"trainer.checkpoint_every_minutes={every_minutes}",
        "trainer.progress=false",
    ]


@pytest.mark.slow  # ~40 s: two trainings of 80 steps
def test_training_killed_by_sigkill_resumes_to_the_same_model(toy: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    args = _train_args(toy, out, steps=80, every_minutes=0.01)
    proc = subprocess.Popen(args, start_new_session=True, stdout=subprocess.DEVNULL)
    last = out / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 240
    while not (last.exists() and read_checkpoint(last)["step"] >= 10):
        assert proc.poll() is None, "training ended before it could be killed"
        assert time.monotonic() < deadline, "training wrote no checkpoint"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = read_checkpoint(last)["step"]  # the last good checkpoint survived the kill
    assert 10 <= killed_at < 80
    load_model(last)  # and it rebuilds its model (raises if it cannot)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["step"] >= killed_at  # steps past the checkpoint were logged

    subprocess.run([*args, "resume=true"], check=True, stdout=subprocess.DEVNULL, timeout=300)
    ref = tmp_path / "ref"
    straight = _train_args(toy, ref, steps=80, every_minutes=60)
    subprocess.run(straight, check=True, stdout=subprocess.DEVNULL, timeout=300)
    resumed, reference = read_checkpoint(last), read_checkpoint(ref / "checkpoints" / "last.pt")
    assert resumed["step"] == reference["step"] == 80
    for k, v in reference["model"].items():
        torch.testing.assert_close(resumed["model"][k], v, rtol=0, atol=0, msg=k)
    steps = [json.loads(ln)["step"] for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 81)), "log lines lost or doubled by the kill and resume"


def test_checkpoint_killed_mid_write_never_replaces_the_last_good_one(
    toy: Path, tmp_path: Path
) -> None:
    from latentplay.rollouts import ClipDataset
    from latentplay.world_models.glass.train import GlassObjective
    from latentplay.world_models.settings import TrainerSettings
    from latentplay.world_models.train import train

    def run(steps: int, resume: bool) -> None:
        torch.manual_seed(0)
        model = Glass(size="xs", image_size=32, num_actions=3)
        settings = TrainerSettings(batch_size=2, max_steps=steps, max_minutes=None, progress=False)
        data = ClipDataset(toy, clip_length=4)
        train(model, GlassObjective(), data, tmp_path / "run", settings, resume=resume)

    run(1, resume=False)
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    good = _digest(last)
    killed = subprocess.run(
        [sys.executable, str(HELPERS / "kill_mid_save.py"), str(last)], timeout=120
    )
    assert killed.returncode == -signal.SIGKILL
    assert _digest(last) == good, "a killed write replaced the last good checkpoint"
    assert read_checkpoint(last)["step"] == 1
    stale = list(last.parent.glob(".last.pt.*.tmp"))
    assert len(stale) == 1 and stale[0].stat().st_size > 0  # the half-written file, hidden
    with pytest.raises(ckpt_mod.CheckpointMismatchError, match="not a readable checkpoint"):
        read_checkpoint(stale[0])
    run(2, resume=True)  # resumes from the good one and sweeps the leftover away
    assert read_checkpoint(last)["step"] == 2
    assert not list(last.parent.glob(".*.tmp"))


# ---------------------------------------------------------------------------- damaged shards
def test_bit_flip_in_a_shard_names_the_file_and_the_episode(dataset: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(dataset, copy)
    shard = copy / "shards" / "shard-00001.h5"
    with h5py.File(shard) as f:  # a byte inside the compressed frames of episode 000003
        chunk = f["frames"]["000003"].id.get_chunk_info(0)
        in_frames = chunk.byte_offset + chunk.size // 2
        in_actions = f["gt"]["000002"]["actions"].id.get_offset() + 3
    original = shard.read_bytes()
    for offset, episode in ((in_frames, "000003"), (in_actions, "000002")):
        data = bytearray(original)
        data[offset] ^= 0x20
        shard.write_bytes(bytes(data))
        with pytest.raises(CorruptShardError) as err:
            EpisodeReader(copy)
        msg = str(err.value)
        assert "shard-00001.h5: checksum mismatch" in msg and f"episode(s): {episode}" in msg
        other = "000002" if episode == "000003" else "000003"
        assert other not in msg.split("damaged")[1], "an intact episode was blamed"


def test_truncated_shard_names_the_file_and_its_lost_episodes(
    dataset: Path, tmp_path: Path
) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(dataset, copy)
    shard = copy / "shards" / "shard-00000.h5"
    shard.write_bytes(shard.read_bytes()[:1000])
    with pytest.raises(CorruptShardError, match=r"shard-00000\.h5: truncated.*000000, 000001"):
        EpisodeReader(copy)


# ---------------------------------------------------------------------------- full disks
def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _episode(index: int, t: int = 4, size: int = 8) -> Episode:
    rng = np.random.default_rng(index)
    return Episode(
        index=index,
        seed=index,
        split="train",
        policy="random",
        frames=rng.integers(0, 256, (t + 1, size, size, 3), dtype=np.uint8),
        actions=rng.standard_normal((t, 3)).astype(np.float32),
        rewards=rng.standard_normal(t),
        per_frame={"ee_pixel": rng.standard_normal((t + 1, 2))},
        per_step={},
        state={"physics": rng.standard_normal((t + 1, 5))},
    )


def test_disk_full_while_writing_a_shard_leaves_nothing_visible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = ShardWriter(tmp_path, 0)
    good.add(_episode(0))
    info = good.close()
    before = _digest(tmp_path / "shard-00000.h5")
    writer = ShardWriter(tmp_path, 1)
    writer.add(_episode(2))
    monkeypatch.setattr(h5py.Group, "create_dataset", _no_space)
    with pytest.raises(OSError, match="No space left"):
        writer.add(_episode(3))
    writer.abort()
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard-00000.h5", "shard-00000.json"]
    assert _digest(tmp_path / "shard-00000.h5") == before == info["sha256"]


def test_disk_full_while_writing_json_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "meta.json"
    write_json_atomic(path, {"episodes": 3})
    real = Path.write_text

    def half_then_full(self: Path, text: str, *a, **k):
        real(self, text[: len(text) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", half_then_full)
    with pytest.raises(OSError) as err:
        write_json_atomic(path, {"episodes": 4})
    monkeypatch.undo()
    assert "meta.json was left as it was" in "".join(getattr(err.value, "__notes__", []))
    assert json.loads(path.read_text()) == {"episodes": 3}
    assert [p.name for p in tmp_path.iterdir()] == ["meta.json"]


def test_disk_full_while_writing_a_checkpoint_keeps_the_last_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    model = Glass(size="xs", image_size=32, num_actions=3)
    path = tmp_path / "last.pt"
    save_checkpoint(path, model=model, step=7)
    before = _digest(path)

    def half_then_full(obj, f, *a, **k):
        Path(f).write_bytes(b"\x00" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt_mod.torch, "save", half_then_full)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path, model=model, step=8)
    monkeypatch.undo()
    assert _digest(path) == before and read_checkpoint(path)["step"] == 7
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
