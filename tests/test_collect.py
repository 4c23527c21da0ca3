"""Collection end to end: shards, meta.json, splits, exact replay from stored state, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from helpers.datasets import push_spec

from latentplay.agents.policies import RandomPolicy, ScriptedPushPolicy
from latentplay.rollouts import ClipDataset, CorruptShardError, DatasetError, EpisodeReader
from latentplay.rollouts.collect import collect
from latentplay.rollouts.format import read_sidecar
from latentplay.rollouts.video import write_preview
from latentplay.rollouts.worker import CollectSpec

ROOT = Path(__file__).resolve().parents[1]


def _spec(**kw) -> CollectSpec:
    """The session push_dataset's spec (tests/helpers/datasets.py), without masks unless
    asked for."""
    return push_spec(**{"masks": False, **kw})


@pytest.fixture(scope="module")
def dataset(push_dataset: Path) -> Path:
    return push_dataset


def test_meta_describes_the_dataset(dataset: Path) -> None:
    meta = json.loads((dataset / "meta.json").read_text())
    assert meta["complete"] and meta["episodes_written"] == 6
    assert meta["env_id"] == "latentplay/Push-v0" and meta["camera"] == "top"
    assert (meta["width"], meta["height"], meta["fps"]) == (32, 32, 20)
    assert len(meta["shards"]) == 3 and all(len(s["sha256"]) == 64 for s in meta["shards"])
    assert meta["package_version"] and meta["git_commit"]
    splits = meta["splits"]
    assert sorted(splits["train"] + splits["val"] + splits["test"]) == list(range(6))


def test_episode_contents_and_shapes(dataset: Path) -> None:
    reader = EpisodeReader(dataset)
    assert len(reader) == 6
    frames = reader.frames(0)
    assert frames.shape == (13, 32, 32, 3) and frames.dtype == np.uint8
    gt = reader.ground_truth(0)
    assert gt["actions"].shape == (12, 3) and gt["rewards"].shape == (12,)
    assert gt["object_pos"].shape == (13, 4, 3) and gt["ee_pixel"].shape == (13, 2)
    assert gt["masks"].shape == (13, 32, 32)
    assert gt["state"]["physics"].shape[0] == 13
    total = gt["reward_dist"] + gt["reward_near"] + gt["reward_ctrl"]
    np.testing.assert_allclose(gt["rewards"], total)
    reader.close()


def test_stored_state_branches_exactly(dataset: Path) -> None:
    """Restore the stored state at step k, replay the stored actions: the stored frames return."""
    reader = EpisodeReader(dataset)
    gt = reader.ground_truth(3)
    frames = reader.frames(3)
    env = gym.make("latentplay/Push-v0", width=32, height=32)
    try:
        u = env.unwrapped
        env.reset(seed=0)
        k = 4
        u.set_state(u.state_from_arrays({n: v[k] for n, v in gt["state"].items()}))
        np.testing.assert_array_equal(u.render_rgb(), frames[k])
        for t in range(k, 12):
            obs, *_ = env.step(gt["actions"][t])
            np.testing.assert_array_equal(obs, frames[t + 1])
    finally:
        env.close()
        reader.close()


def _shard_digests(root: Path) -> list[str]:
    return [s["sha256"] for s in json.loads((root / "meta.json").read_text())["shards"]]


def test_same_episodes_whatever_the_worker_count(dataset: Path, tmp_path: Path) -> None:
    """Shards are byte-identical (frames, ground truth, state) with 1 or 2 workers."""
    collect(_spec(masks=True), tmp_path / "one", workers=1, progress=False)
    assert _shard_digests(dataset) == _shard_digests(tmp_path / "one")


def test_resume_redoes_a_damaged_shard(dataset: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(dataset, copy)
    shard = copy / "shards" / "shard-00002.h5"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, wrong content
    shard.write_bytes(bytes(data))
    result = collect(_spec(masks=True), copy, resume=True, progress=False)
    assert (result.shards_written, result.shards_reused) == (1, 2)
    assert _shard_digests(copy) == _shard_digests(dataset)


def test_resume_refuses_another_split(dataset: Path) -> None:
    with pytest.raises(ValueError, match="split_fractions"):
        collect(_spec(masks=True, split_fractions=(0, 0, 1)), dataset, resume=True, progress=False)


def test_a_bad_policy_fails_before_anything_is_written(tmp_path: Path) -> None:
    spec = _spec(env_id="latentplay/DMC-reacher-easy-v0")  # scripted pushes need an arm env
    with pytest.raises(ValueError, match="ScriptedPushPolicy"):
        collect(spec, tmp_path / "bad", progress=False)
    assert not (tmp_path / "bad" / "meta.json").exists()


def test_steps_beyond_the_time_limit_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="time_limit"):
        collect(_spec(steps=150), tmp_path / "long", progress=False)
    collect(
        _spec(steps=120, episodes=1, env_kwargs={"time_limit": None}),
        tmp_path / "ok",
        progress=False,
    )


def test_existing_dataset_needs_resume(dataset: Path) -> None:
    with pytest.raises(FileExistsError, match="resume=true"):
        collect(_spec(masks=True), dataset, progress=False)


def test_resume_refuses_another_run(dataset: Path) -> None:
    with pytest.raises(ValueError, match="seed: stored 5 vs now 6"):
        collect(_spec(masks=True, seed=6), dataset, resume=True, progress=False)


def test_resume_of_a_complete_run_writes_nothing(dataset: Path) -> None:
    result = collect(_spec(masks=True), dataset, resume=True, progress=False)
    assert (result.shards_written, result.shards_reused, result.episodes) == (0, 3, 6)


def test_corrupt_shards_are_named(dataset: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(dataset, copy)
    shard = copy / "shards" / "shard-00001.h5"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(CorruptShardError, match=r"shard-00001\.h5: checksum mismatch"):
        EpisodeReader(copy)
    shard.write_bytes(bytes(data[: len(data) // 3]))
    with pytest.raises(CorruptShardError, match=r"shard-00001\.h5: truncated"):
        EpisodeReader(copy)
    # Unverified readers still name the file when HDF5 cannot read it.
    with pytest.raises(CorruptShardError, match=r"shard-00001\.h5"):
        reader = EpisodeReader(copy, verify=False)
        reader.frames(reader.indices()[2])
    shard.unlink()
    with pytest.raises(CorruptShardError, match=r"shard-00001\.h5: listed in meta\.json"):
        EpisodeReader(copy)


def test_not_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"no meta\.json"):
        EpisodeReader(tmp_path)


def test_clip_dataset_gives_frames_only_by_default(dataset: Path) -> None:
    ds = ClipDataset(dataset, split=None, clip_length=4, stride=3, frame_skip=2)
    # 13 frames, span (4-1)*2+1 = 7: starts 0, 3, 6 -> 3 clips per episode.
    assert len(ds) == 6 * 3
    clip = ds[1]
    assert isinstance(clip, torch.Tensor)
    assert clip.shape == (4, 3, 32, 32) and clip.dtype == torch.uint8
    ep, start = ds.index[1]
    frames = ds.reader.frames(int(ep))
    np.testing.assert_array_equal(clip.numpy(), frames[start : start + 7 : 2].transpose(0, 3, 1, 2))


def test_clip_dataset_ground_truth_on_request(dataset: Path) -> None:
    ds = ClipDataset(dataset, split=None, clip_length=3, frame_skip=2, with_gt=True)
    clip, gt = ds[0]
    assert clip.shape[0] == 3
    assert gt["actions"].shape == (2, 2, 3)  # (T - 1, frame_skip, A)
    assert gt["object_pos"].shape == (3, 4, 3)
    full = ds.reader.ground_truth(int(ds.index[0][0]))
    np.testing.assert_array_equal(gt["actions"].reshape(4, 3), full["actions"][:4])


def test_clip_dataset_splits_partition(dataset: Path) -> None:
    meta = json.loads((dataset / "meta.json").read_text())
    reader = EpisodeReader(dataset)
    seen: list[int] = []
    for split in ("train", "val", "test"):
        ids = [int(reader.episodes[e][1]) for e in reader.indices(split)]
        assert ids == meta["splits"][split]
        seen += ids
    assert sorted(seen) == list(range(6)), "splits are disjoint and cover every episode"
    train = ClipDataset(dataset, split="train", clip_length=2)
    assert {int(reader.episodes[e][1]) for e in train.index[:, 0]} == set(meta["splits"]["train"])
    with pytest.raises(ValueError, match="clip_length"):
        ClipDataset(dataset, clip_length=0)
    with pytest.raises(ValueError, match="no clip of 99 frames"):
        ClipDataset(dataset, clip_length=99)


def test_preview_files(dataset: Path) -> None:
    paths = write_preview(dataset, episodes=4, scale=2, fmt="mp4")
    assert [p.name for p in paths] == ["preview.mp4", "preview.png"]
    assert all(p.stat().st_size > 1000 for p in paths)
    import imageio.v3 as iio

    video = iio.imread(paths[0])
    assert video.shape[0] == 13 and video.shape[-1] == 3


def test_scripted_policy_touches_objects_in_most_episodes() -> None:
    env = gym.make("latentplay/PushMulti-v0")
    policy = ScriptedPushPolicy(env.action_space)
    touched = 0
    try:
        for ep in range(10):
            obs, info = env.reset(seed=ep)
            policy.reset(np.random.default_rng(ep), info)
            contact = False
            for _ in range(50):
                obs, *_, info = env.step(policy.act(obs, info))
                contact |= bool(info["contact_arm_object"].any())
            touched += contact
    finally:
        env.close()
    assert touched >= 5, f"only {touched}/10 episodes touched an object"


def test_random_policy_is_temporally_correlated() -> None:
    space = gym.spaces.Box(-1, 1, (3,), np.float32)
    policy = RandomPolicy(space, correlation=0.9, scale=0.3)  # small scale: clipping is rare
    policy.reset(np.random.default_rng(0), {})
    a = np.stack([policy.act(None, {}) for _ in range(4000)])
    lag1 = np.mean([np.corrcoef(a[:-1, d], a[1:, d])[0, 1] for d in range(3)])
    assert lag1 == pytest.approx(0.9, abs=0.03)


def _ray_workers_alive() -> bool:
    """Any live (not zombie) Ray worker or daemon on this machine, read from /proc."""
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            args = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if state != "Z" and ("ray::" in args or "raylet" in args or "gcs_server" in args):
            return True
    return False


# Per launcher: the policy's delay per action, the sidecars to wait for before the kill, and
# the fewest shards visible after it (Ray tasks in flight complete theirs after the kill).
KILL_AT = {"local": (0.002, 3, 0), "ray": (0.004, 2, 2)}


@pytest.mark.parametrize(
    "launcher", ["local", pytest.param("ray", marks=pytest.mark.xdist_group("ray"))]
)
def test_collect_is_resumable_after_sigkill(tmp_path: Path, launcher: str) -> None:
    """SIGKILL the whole collection mid-run (parent, forkserver and workers; or the driver and
    its local Ray), resume it: the same episodes as an uninterrupted local run. The Ray case
    waits for the killed run's Ray processes to end: no other Ray may run beside it (this
    module starts none)."""
    if launcher == "ray":
        pytest.importorskip("ray", reason="Ray is the optional extra latentplay[distributed]")
    delay, wait_for, min_visible = KILL_AT[launcher]
    out = tmp_path / "killed"
    args = [
        sys.executable,
        str(ROOT / "scripts" / "collect.py"),
        "env=push",
        "policy=random",
        f"+policy.delay={delay}",
        "policy._target_=slow_policy.SlowRandomPolicy",
        "episodes=24",
        "steps=15",
        "shard_episodes=2",
        "workers=2",
        "env.kwargs.width=32",
        "env.kwargs.height=32",
        "preview.episodes=0",
        "progress=false",
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent / "helpers")}
    killed = [*args, f"launcher={launcher}", f"out={out}"]
    proc = subprocess.Popen(killed, env=env, start_new_session=True, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while len(list((out / "shards").glob("*.json"))) < wait_for:
        assert proc.poll() is None, "collection ended before it could be killed"
        assert time.monotonic() < deadline, "collection made no progress"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    while launcher == "ray" and _ray_workers_alive():  # tasks in flight finish, then exit
        assert time.monotonic() < deadline, "Ray workers outlived their driver"
        time.sleep(0.2)
    visible = list((out / "shards").glob("shard-*.h5"))
    killed_at = len(list((out / "shards").glob("*.json")))
    assert killed_at < 12, "the run finished before the kill: make it slower"
    assert min_visible <= len(visible) < 12
    # No corrupt shard is visible: whatever meta.json lists passes its checksum, and every
    # visible shard file has a valid sidecar (a partial shard only exists as a hidden .tmp).
    meta = json.loads((out / "meta.json").read_text())
    assert not meta["complete"]  # (it lists the shards done by its last rewrite, <= 2 s old)
    EpisodeReader(out)  # verifies every listed checksum
    for h5 in visible:
        assert read_sidecar(h5.with_suffix(".json")) is not None, f"{h5} visible but incomplete"

    again = subprocess.run(
        [*killed, "resume=true"], env=env, check=True, capture_output=True, text=True, timeout=300
    )
    assert f"{len(visible)} kept" in again.stdout  # every complete shard was kept
    ref = tmp_path / "ref"
    subprocess.run([*args, f"out={ref}"], env=env, check=True, stdout=subprocess.DEVNULL)

    resumed, reference = EpisodeReader(out), EpisodeReader(ref)  # verifies every checksum
    assert len(resumed) == len(reference) == 24
    assert [e[1] for e in resumed.episodes] == [e[1] for e in reference.episodes]
    assert _shard_digests(out) == _shard_digests(ref), "shards differ from an uninterrupted run"
    assert not list((out / "shards").glob(".*")), "temporary files were left behind"


def test_a_policy_that_asks_is_bound_to_the_env_it_records(tmp_path: Path) -> None:
    from helpers.goal_policy import TowardGoalPolicy

    spec = _spec(policy_factory=TowardGoalPolicy, episodes=2, shard_episodes=1)
    collect(spec, tmp_path / "goal", workers=2, progress=False)
    reader = EpisodeReader(tmp_path / "goal")
    for i in range(2):
        gt = reader.ground_truth(i)
        want = np.clip(10.0 * (gt["goal"][:-1] - gt["ee_pos"][:-1, :2]), -1, 1)
        np.testing.assert_allclose(gt["actions"][:, :2], want, atol=1e-6)
        # the arm went where the bound env's goal lay: it came nearer than it started
        dist = np.linalg.norm(gt["ee_pos"][:, :2] - gt["goal"], axis=-1)
        assert dist[-1] < 0.5 * dist[0]
    reader.close()
