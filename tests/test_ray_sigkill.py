"""SIGKILL of a Ray collection's driver (and its local Ray), then resume: nothing lost.

In a module of its own: no other Ray may run beside it (it waits for the killed run's Ray
processes to end before resuming).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from latentplay.rollouts import EpisodeReader
from latentplay.rollouts.format import read_sidecar

pytest.importorskip("ray", reason="Ray is the optional extra latentplay[distributed]")

ROOT = Path(__file__).resolve().parents[1]
HELPERS = Path(__file__).parent / "helpers"


def _digests(root: Path) -> list[str]:
    return [s["sha256"] for s in json.loads((root / "meta.json").read_text())["shards"]]


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


def test_ray_collection_killed_by_sigkill_resumes_without_loss(tmp_path: Path) -> None:
    """SIGKILL the driver's whole process group mid-run (its local Ray goes with it), resume."""
    out = tmp_path / "killed"
    args = [
        sys.executable,
        str(ROOT / "scripts" / "collect.py"),
        "env=push",
        "policy=random",
        "+policy.delay=0.004",
        "policy._target_=slow_policy.SlowRandomPolicy",
        "episodes=24",
        "steps=15",
        "shard_episodes=2",
        "workers=2",
        "launcher=ray",
        "env.kwargs.width=32",
        "env.kwargs.height=32",
        "preview.episodes=0",
        "progress=false",
        f"out={out}",
    ]
    env = {**os.environ, "PYTHONPATH": str(HELPERS)}
    proc = subprocess.Popen(args, env=env, start_new_session=True, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while len(list((out / "shards").glob("*.json"))) < 2:
        assert proc.poll() is None, "collection ended before it could be killed"
        assert time.monotonic() < deadline, "collection made no progress"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    while _ray_workers_alive():  # tasks in flight may still finish their shard, then exit
        assert time.monotonic() < deadline, "Ray workers outlived their driver"
        time.sleep(0.2)
    visible = list((out / "shards").glob("shard-*.h5"))
    assert 2 <= len(visible) < 12, "the run finished before the kill: make it slower"
    for h5 in visible:  # whatever is visible is complete; partial shards are hidden .tmp files
        assert read_sidecar(h5.with_suffix(".json")) is not None, f"{h5} visible but incomplete"
    again = subprocess.run(
        [*args, "resume=true"], env=env, check=True, capture_output=True, text=True, timeout=300
    )
    assert f"{len(visible)} kept" in again.stdout
    reader = EpisodeReader(out)  # every checksum verified
    assert [e[1] for e in reader.episodes] == [f"{i:06d}" for i in range(24)]
    assert not list((out / "shards").glob(".*")), "temporary files were left behind"
    # the same episodes as an uninterrupted local run of the same spec
    ref = tmp_path / "ref"
    local = [*[a for a in args if a != "launcher=ray"][:-1], f"out={ref}"]
    subprocess.run(local, env=env, check=True, capture_output=True, timeout=300)
    assert _digests(out) == _digests(ref)
