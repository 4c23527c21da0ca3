"""The trainer's learning-rate schedule and weight average: known values, checkpoints, resume."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import pytest
import torch
from helpers.train_settings import quick_settings
from torch import nn

from latentplay.rollouts.dataset import ClipDataset
from latentplay.world_models.checkpoint import load_model, read_checkpoint
from latentplay.world_models.train import WeightAverage, train
from latentplay.world_models.yoda import Yoda
from latentplay.world_models.yoda.train import YodaObjective, YodaSchedule


@pytest.fixture(scope="module")
def toy(toy_dataset) -> Path:
    return toy_dataset(episodes=16, steps=8, size=32, num_local=1)


_settings = functools.partial(quick_settings, log_every=1)


def _model() -> Yoda:
    torch.manual_seed(0)
    return Yoda(size="xs", image_size=32)


def test_cosine_schedule_known_values() -> None:
    s = _settings(lr=1e-3, max_steps=100, lr_schedule="cosine", lr_min_ratio=0.1)
    assert s.lr_at(0, 0.0) == pytest.approx(1e-3)
    assert s.lr_at(50, 0.0) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))
    assert s.lr_at(100, 0.0) == pytest.approx(1e-4)
    assert s.lr_at(250, 0.0) == pytest.approx(1e-4)  # past the budget: stays at the floor
    # a time budget: whichever fraction is further along decides
    t = _settings(lr=1e-3, max_steps=1000, max_minutes=10, lr_schedule="cosine", lr_min_ratio=0)
    assert t.lr_at(100, 300.0) == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert t.lr_at(750, 60.0) == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 0.75)))
    assert _settings(lr=1e-3).lr_at(3, 1e6) == 1e-3  # constant


def test_trainer_settings_refuse_bad_schedules() -> None:
    with pytest.raises(ValueError, match="lr_schedule='linear'"):
        _settings(lr_schedule="linear")
    with pytest.raises(ValueError, match=r"lr_min_ratio=1\.5"):
        _settings(lr_min_ratio=1.5)
    with pytest.raises(ValueError, match=r"ema_decay=1\.0"):
        _settings(ema_decay=1.0)
    with pytest.raises(ValueError, match=r"ema_decay=0\.0"):
        _settings(ema_decay=0.0)


def test_weight_average_of_a_step_change_known_values() -> None:
    net = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(0.0)
    avg = WeightAverage(net, decay=0.9)
    with torch.no_grad():
        net.weight.fill_(1.0)  # jumps to 1 and stays: the average is 1 - prod(decays)
    keep = 1.0
    for n in range(1, 31):
        avg.update(net)
        keep *= min(0.9, (1 + n) / (10 + n))
        assert float(avg.shadow["weight"]) == pytest.approx(1.0 - keep, abs=1e-6)
    assert 0.95 < float(avg.shadow["weight"]) < 1.0
    assert float(net.weight.detach()) == 1.0  # the live weights are untouched


def test_weight_average_is_checkpointed_resumed_exactly_and_loaded(
    toy: Path, tmp_path: Path
) -> None:
    data = ClipDataset(toy, clip_length=4, cache=True)
    objective = YodaObjective(YodaSchedule(clip_length=4))
    # (a cosine schedule over max_steps=2 would differ from one over 4: constant lr here)
    kw = dict(ema_decay=0.5, lr=1e-3)
    train(_model(), objective, data, tmp_path / "a", _settings(max_steps=4, **kw))
    train(_model(), objective, data, tmp_path / "b", _settings(max_steps=2, **kw))
    train(_model(), objective, data, tmp_path / "b", _settings(max_steps=4, **kw), resume=True)
    a, b = (read_checkpoint(tmp_path / r / "checkpoints" / "last.pt") for r in "ab")
    assert a["ema"]["updates"] == b["ema"]["updates"] == 4
    for k, v in a["ema"]["shadow"].items():
        torch.testing.assert_close(b["ema"]["shadow"][k], v, rtol=0, atol=0, msg=k)
    for k, v in a["model"].items():  # and the trained weights the average follows
        torch.testing.assert_close(b["model"][k], v, rtol=0, atol=0, msg=k)
    # evaluation loads the average; average=False the trained weights
    averaged, _ = load_model(tmp_path / "a" / "checkpoints" / "last.pt")
    trained, _ = load_model(tmp_path / "a" / "checkpoints" / "last.pt", average=False)
    differ = 0
    for k, v in averaged.state_dict().items():
        if k in a["ema"]["shadow"]:
            torch.testing.assert_close(v, a["ema"]["shadow"][k], rtol=0, atol=0, msg=k)
            differ += int(not torch.equal(v, trained.state_dict()[k]))
        else:  # buffers: as trained
            torch.testing.assert_close(v, a["model"][k], rtol=0, atol=0, msg=k)
    assert differ > 0, "the average equals the trained weights: it was never updated"
    # the cosine schedule reaches the optimizer (its logs), falling from the first step
    train(_model(), objective, data, tmp_path / "d", _settings(lr_schedule="cosine", **kw))
    rows = _rows(tmp_path / "d")
    steps = [row["step"] for row in rows]  # logged after the step that used lr_at(step - 1)
    expected = [1e-3 * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (n - 1) / 4))) for n in steps]
    assert steps == [1, 2, 3, 4]
    assert [row["train/lr"] for row in rows] == pytest.approx(expected, rel=1e-12)
    # a run without an average cannot be resumed with one
    train(_model(), objective, data, tmp_path / "c", _settings(max_steps=1))
    with pytest.raises(ValueError, match=r"trained with trainer\.ema_decay=None; .* not 0\.5"):
        train(_model(), objective, data, tmp_path / "c", _settings(max_steps=2, **kw), resume=True)
    # ... nor a run with one lose it
    with pytest.raises(ValueError, match=r"trained with trainer\.ema_decay=0\.5; .* not None"):
        train(_model(), objective, data, tmp_path / "a", _settings(max_steps=5), resume=True)


def _rows(run: Path) -> list[dict]:
    import json

    return [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]


def test_bf16_autocast_trains_in_bf16_resumes_exactly_and_keeps_fp32_weights(
    toy: Path, tmp_path: Path
) -> None:
    from latentplay.world_models.train import uses_bf16

    with pytest.raises(ValueError, match="precision='fp16'"):
        _settings(precision="fp16")
    assert uses_bf16("bf16", torch.device("cpu")) and not uses_bf16("fp32", torch.device("cpu"))
    data = ClipDataset(toy, clip_length=4, cache=True)
    objective = YodaObjective(YodaSchedule(clip_length=4))
    seen: list[torch.dtype] = []

    def spy(model, clip, step):  # the dtype the network's convolutions compute in
        with torch.no_grad():
            seen.append(nn.functional.conv2d(clip[:, 0], torch.ones(1, 3, 1, 1)).dtype)
        return objective(model, clip, step)

    kw = dict(precision="bf16", lr=1e-3)
    train(_model(), spy, data, tmp_path / "a", _settings(max_steps=4, keep_checkpoints=True, **kw))
    kept = sorted(p.name for p in (tmp_path / "a" / "checkpoints").glob("step_*.pt"))
    assert kept == ["step_0000004.pt"]  # the final checkpoint, kept beside last.pt
    assert seen and set(seen) == {torch.bfloat16}
    train(_model(), objective, data, tmp_path / "b", _settings(max_steps=2, **kw))
    train(_model(), objective, data, tmp_path / "b", _settings(max_steps=4, **kw), resume=True)
    a, b = (read_checkpoint(tmp_path / r / "checkpoints" / "last.pt") for r in "ab")
    for k, v in a["model"].items():
        assert not v.is_floating_point() or v.dtype == torch.float32, k
        torch.testing.assert_close(b["model"][k], v, rtol=0, atol=0, msg=k)
    train(_model(), objective, data, tmp_path / "c", _settings(max_steps=4, lr=1e-3))
    c = read_checkpoint(tmp_path / "c" / "checkpoints" / "last.pt")
    assert any(not torch.equal(c["model"][k], v) for k, v in a["model"].items()), (
        "bf16 and fp32 training gave the same weights: autocast did nothing"
    )
    assert (a["autocast"], c["autocast"]) == ("bf16", "fp32")
    # a run continues in the precision it began in, whatever "auto" means on this device
    with pytest.raises(
        ValueError,
        match=r"trained in fp32; here .* means bf16: resume it with trainer\.precision=fp32",
    ):
        train(_model(), objective, data, tmp_path / "c", _settings(max_steps=5, **kw), resume=True)
    with pytest.raises(
        ValueError,
        match=r"trained in bf16; here .* means fp32: resume it with trainer\.precision=bf16",
    ):
        train(
            _model(), objective, data, tmp_path / "a", _settings(max_steps=5, lr=1e-3), resume=True
        )


def test_bf16_on_a_cpu_without_native_bf16_warns(
    toy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Emulated bf16 runs many times slower than fp32: asking for it there is warned about;
    where the CPU has it, or where fp32 runs, nothing is."""
    import warnings

    from latentplay.world_models import train as trainer

    data = ClipDataset(toy, clip_length=4, cache=True)
    objective = YodaObjective(YodaSchedule(clip_length=4))
    monkeypatch.setattr(trainer, "_cpu_flags", lambda: {"avx2", "fma"})
    with pytest.warns(RuntimeWarning, match="trainer.precision=bf16 on a CPU without native"):
        train(_model(), objective, data, tmp_path / "a", _settings(max_steps=1, precision="bf16"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        for precision in ("auto", "fp32"):  # auto means fp32 on this CPU: no warning
            trainer.warn_if_emulated_bf16(
                trainer.uses_bf16(precision, torch.device("cpu")), torch.device("cpu")
            )
        trainer.warn_if_emulated_bf16(True, torch.device("cuda"))  # never a CPU's warning
        monkeypatch.setattr(trainer, "_cpu_flags", lambda: {"avx2", "avx512_bf16"})
        trainer.warn_if_emulated_bf16(True, torch.device("cpu"))


def test_resuming_a_finished_run_leaves_its_checkpoint_as_it_is(toy: Path, tmp_path: Path) -> None:
    """A run re-started with resume=auto after it met its budget takes no step and does not
    rewrite last.pt (a latent model records its autoencoder checkpoint's sha256: a rewrite
    would change it)."""
    data = ClipDataset(toy, clip_length=4, cache=True)
    objective = YodaObjective(YodaSchedule(clip_length=4))
    train(_model(), objective, data, tmp_path / "a", _settings(max_steps=2))
    last = tmp_path / "a" / "checkpoints" / "last.pt"
    before, stamp = last.read_bytes(), last.stat().st_mtime_ns
    train(_model(), objective, data, tmp_path / "a", _settings(max_steps=2), resume="auto")
    assert last.read_bytes() == before and last.stat().st_mtime_ns == stamp
    train(_model(), objective, data, tmp_path / "a", _settings(max_steps=3), resume="auto")
    assert read_checkpoint(last)["step"] == 3  # a resumed run that steps still saves


def test_init_starts_a_new_run_from_trained_weights(toy: Path, tmp_path: Path) -> None:
    from latentplay.world_models.checkpoint import CheckpointMismatchError
    from latentplay.world_models.train import load_initial_weights, train_model
    from latentplay.world_models.yoda.train import yoda_training

    build = functools.partial(
        yoda_training, size="xs", memory=3, schedule=YodaSchedule(clip_length=4)
    )
    first = tmp_path / "first" / "checkpoints" / "last.pt"
    train_model(build, toy, _settings(max_steps=3, lr=1e-2), out=tmp_path / "first")
    trained = read_checkpoint(first)["model"]
    # loaded as they are into a model of the same settings, whatever its own initial weights
    torch.manual_seed(123)
    fresh = Yoda(size="xs", image_size=32, memory=3)
    assert any(not torch.equal(v, trained[k]) for k, v in fresh.state_dict().items())
    load_initial_weights(fresh, first)
    for k, v in fresh.state_dict().items():
        torch.testing.assert_close(v, trained[k], rtol=0, atol=0, msg=k)
    # a fine-tuning run: a fresh step count, and one Adam step moves no weight by more than lr
    lr = 1e-4
    train_model(build, toy, _settings(max_steps=1, lr=lr), out=tmp_path / "tuned", init=first)
    tuned = read_checkpoint(tmp_path / "tuned" / "checkpoints" / "last.pt")
    assert tuned["step"] == 1
    moved = max(
        float((tuned["model"][k].float() - v.float()).abs().max()) for k, v in trained.items()
    )
    assert 0 < moved <= lr * 1.001
    # weights of other settings are refused by name
    other = Yoda(size="xs", image_size=32, memory=2)
    with pytest.raises(CheckpointMismatchError, match=r"memory: 3 vs 2\. init=.*settings"):
        load_initial_weights(other, first)
    # a run that resumes continues its own weights: init is not read
    settings = _settings(max_steps=2, lr=lr)
    train_model(build, toy, settings, out=tmp_path / "tuned", resume=True, init="absent.pt")
    assert read_checkpoint(tmp_path / "tuned" / "checkpoints" / "last.pt")["step"] == 2
