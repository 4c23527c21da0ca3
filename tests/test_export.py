"""Minari export: lossless frames, equal actions and rewards, metadata, no silent overwrite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import minari
import numpy as np
import pytest

from latentplay.rollouts import EpisodeReader
from latentplay.rollouts.minari_export import check_dataset_id, export_minari

ROOT = Path(__file__).resolve().parents[1]
EPISODES, STEPS = 6, 12  # the session's push_dataset (tests/conftest.py)


@pytest.fixture(scope="module")
def dataset(push_dataset: Path) -> Path:
    return push_dataset


def test_export_is_lossless(dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MINARI_DATASETS_PATH", raising=False)
    out = tmp_path / "minari"
    path = export_minari(dataset, "latentplay/push-v0", out_dir=out)
    assert path == out.resolve() / "latentplay" / "push-v0"
    assert "MINARI_DATASETS_PATH" not in os.environ  # restored

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(out))
    ds = minari.load_dataset("latentplay/push-v0")
    reader = EpisodeReader(dataset)
    assert ds.total_episodes == len(reader) == EPISODES
    assert ds.total_steps == EPISODES * STEPS
    assert ds.observation_space == gym.spaces.Box(0, 255, (32, 32, 3), np.uint8)
    assert ds.action_space == gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    assert ds.storage.metadata["jpeg_encoding"] is False
    for i, ep in enumerate(ds.iterate_episodes()):
        frames, gt = reader.frames(i), reader.ground_truth(i)
        assert ep.observations.dtype == np.uint8 and ep.observations.shape == frames.shape
        assert ep.observations.tobytes() == frames.tobytes()  # byte-identical
        np.testing.assert_array_equal(ep.actions, gt["actions"])
        assert ep.actions.dtype == np.float32
        np.testing.assert_array_equal(ep.rewards, gt["rewards"])
        assert not ep.terminations.any()
        assert ep.truncations.tolist() == [False] * (STEPS - 1) + [True]
        np.testing.assert_array_equal(ep.infos["object_pos"], gt["object_pos"])

    metas = list(ds.storage.get_episode_metadata(range(EPISODES)))
    stored = json.loads((dataset / "meta.json").read_text())
    for i, m in enumerate(metas):
        assert m["latentplay_episode"] == i
        assert m["split"] in ("train", "val", "test") and i in stored["splits"][m["split"]]
        assert m["seed"] == reader.ground_truth(i)["attrs"]["seed"]
    reader.close()
    info = ds.storage.metadata["latentplay"]
    assert info["source"] == str(dataset.resolve()) and info["env_id"] == "latentplay/Push-v0"
    assert str(dataset.resolve()) in ds.storage.metadata["description"]
    spec = ds.env_spec
    assert spec.id == "latentplay/Push-v0" and spec.max_episode_steps == STEPS
    assert spec.kwargs["obs_type"] == "pixels" and spec.kwargs["width"] == 32


def test_state_obs_match_the_env(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """include_state_obs: the state vectors are the ones the env gives on replay."""
    out = tmp_path / "minari"
    export_minari(dataset, "latentplay/push-state-v0", out_dir=out, include_state_obs=True)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(out))
    ep = minari.load_dataset("latentplay/push-state-v0")[1]
    reader = EpisodeReader(dataset)
    assert ep.observations["pixels"].tobytes() == reader.frames(1).tobytes()
    gt = reader.ground_truth(1)
    env = gym.make("latentplay/Push-v0", obs_type="state", width=32, height=32)
    obs, _ = env.reset(seed=int(gt["attrs"]["seed"]))
    states = [obs]
    for a in gt["actions"]:
        states.append(env.step(a)[0])
    env.close()
    reader.close()
    np.testing.assert_array_equal(ep.observations["state"], np.stack(states))


def test_split_bad_id_and_no_overwrite(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "minari"
    for bad in ("push-v0", "latentplay/push", "latentplay/push-vX", "a b/c-v0", ""):
        with pytest.raises(ValueError, match="namespace/name-v<version>") as e:
            export_minari(dataset, bad, out_dir=out)
        assert repr(bad) in str(e.value)
    assert check_dataset_id("latentplay/push-v0") == "latentplay/push-v0"
    assert not (out / "latentplay").exists()

    meta = json.loads((dataset / "meta.json").read_text())
    split = max(("train", "val", "test"), key=lambda s: len(meta["splits"][s]))
    export_minari(dataset, "latentplay/split-v0", out_dir=out, split=split)
    with pytest.raises(FileExistsError, match="latentplay/split-v0"):
        export_minari(dataset, "latentplay/split-v0", out_dir=out)
    with pytest.raises(ValueError, match="split="):
        export_minari(dataset, "latentplay/split-v1", out_dir=out, split="training")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(out))
    ds = minari.load_dataset("latentplay/split-v0")
    assert ds.total_episodes == len(meta["splits"][split])
    assert ds.storage.metadata["latentplay"]["split"] == split
    episodes = [m["latentplay_episode"] for m in ds.storage.get_episode_metadata(range(len(ds)))]
    assert episodes == meta["splits"][split]


def test_export_script_end_to_end(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "minari"
    env = {k: v for k, v in os.environ.items() if k != "MINARI_DATASETS_PATH"}
    cmd = [sys.executable, str(ROOT / "scripts" / "export.py"), f"data={dataset}"]
    run = subprocess.run(
        [*cmd, "format=minari", "dataset_id=latentplay/cli-v0", f"out={out}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "latentplay/cli-v0" in run.stdout
    assert (out / "latentplay" / "cli-v0" / "data" / "main_data.hdf5").is_file()
    assert not (tmp_path / "outputs").exists()  # Hydra writes nothing of its own

    bad = subprocess.run(
        [*cmd, "format=parquet", "dataset_id=latentplay/cli-v1", f"out={out}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode != 0  # refused when the command line is parsed, naming the key
    assert "'parquet', expected one of [minari]" in bad.stderr and "full_key: format" in bad.stderr
    assert not (out / "latentplay" / "cli-v1").exists()
