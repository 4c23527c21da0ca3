"""Collection on Ray with 2 local workers: the same shards as the local pool, resumable."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from latentplay.agents.policies import RandomPolicy
from latentplay.rollouts import EpisodeReader
from latentplay.rollouts.collect import collect
from latentplay.rollouts.format import read_sidecar
from latentplay.rollouts.worker import CollectSpec

ray = pytest.importorskip("ray", reason="Ray is the optional extra latentplay[distributed]")
# One local Ray at a time: under pytest-xdist every Ray test runs on the same worker.
pytestmark = pytest.mark.xdist_group("ray")

ROOT = Path(__file__).resolve().parents[1]
HELPERS = Path(__file__).parent / "helpers"


def _spec(policy=None, **kw) -> CollectSpec:
    base = dict(
        env_id="latentplay/Push-v0",
        policy_factory=policy or functools.partial(RandomPolicy),
        episodes=6,
        steps=10,
        shard_episodes=2,
        seed=3,
        env_kwargs={"width": 32, "height": 32},
    )
    base.update(kw)
    return CollectSpec(**base)


def _digests(root: Path) -> list[str]:
    return [s["sha256"] for s in json.loads((root / "meta.json").read_text())["shards"]]


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray of 2 CPUs for the module (collect() then neither starts nor stops it)."""
    sys.path.insert(0, str(HELPERS))
    env = {"PYTHONPATH": os.pathsep.join([str(HELPERS), os.environ.get("PYTHONPATH", "")])}
    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env}
    )
    yield
    ray.shutdown()
    sys.path.remove(str(HELPERS))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("local") / "ds"
    collect(_spec(), out, workers=2, progress=False)
    return out


@pytest.mark.parametrize("shared_fs", [True, False], ids=["shared-fs", "object-store"])
def test_ray_writes_the_shards_of_the_local_pool(
    local_ray, reference: Path, tmp_path: Path, shared_fs: bool
) -> None:
    out = tmp_path / "ray"
    result = collect(
        _spec(),
        out,
        workers=2,
        progress=False,
        launcher="ray",
        ray_options={"shared_fs": shared_fs},
    )
    assert (result.episodes, result.shards_written) == (6, 3)
    assert _digests(out) == _digests(reference), "Ray shards differ from the local pool's"
    meta = json.loads((out / "meta.json").read_text())
    assert meta["complete"] and [s["file"] for s in meta["shards"]] == [
        f"shards/shard-{i:05d}.h5" for i in range(3)
    ]
    assert len(EpisodeReader(out)) == 6  # every checksum verified
    assert not list((out / "shards").glob(".*")), "temporary files were left behind"


def test_a_failed_ray_task_is_named_and_resume_completes_the_run(local_ray, tmp_path: Path) -> None:
    from failing_policy import FailingRandomPolicy

    armed = tmp_path / "armed"
    armed.touch()
    spec = _spec(
        policy=functools.partial(FailingRandomPolicy, armed=str(armed), after=25),
        episodes=8,
        policy_config={"name": "failing"},
    )
    out = tmp_path / "ds"
    with pytest.raises(
        RuntimeError,
        match=r"Ray task of shard shard-0000\d \(episodes \d-\d\) failed: RuntimeError: inj",
    ):
        collect(spec, out, workers=2, progress=False, launcher="ray")
    meta = json.loads((out / "meta.json").read_text())
    assert not meta["complete"]
    EpisodeReader(out)  # what meta.json lists is intact: every listed shard passes its checksum
    # Every visible shard file has a sidecar that verifies it; a sidecar whose shard was not
    # yet renamed into place (a task cancelled in between) is allowed and ignored.
    shards = sorted((out / "shards").glob("shard-*.h5"))
    assert all(read_sidecar(p.with_suffix(".json")) is not None for p in shards)
    sidecars = [read_sidecar(p) for p in (out / "shards").glob("shard-*.json")]
    complete = sum(s is not None for s in sidecars)
    assert complete == len(shards) >= 1, "a visible shard is not complete"
    armed.unlink()  # the fault was transient
    again = collect(spec, out, workers=2, progress=False, launcher="ray", resume=True)
    assert again.shards_reused == complete and again.shards_written == 4 - complete
    ref = tmp_path / "ref"
    collect(spec, ref, workers=1, progress=False)
    assert _digests(out) == _digests(ref)
    reader = EpisodeReader(out)
    assert sorted(int(e[1]) for e in reader.episodes) == list(range(8)), "lost or doubled"


def test_unknown_ray_option_is_named(local_ray, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown ray option\(s\) \['adress'\]"):
        collect(_spec(), tmp_path / "x", progress=False, launcher="ray", ray_options={"adress": 1})


def test_collect_script_with_launcher_ray(reference: Path, tmp_path: Path) -> None:
    """The command line end to end: a Ray of its own with 2 workers, then a resume."""
    out = tmp_path / "cli"
    args = [
        sys.executable,
        str(ROOT / "scripts" / "collect.py"),
        "env=push",
        "policy=random",
        "episodes=6",
        "steps=10",
        "shard_episodes=2",
        "seed=3",
        "workers=2",
        "launcher=ray",
        "env.kwargs.width=32",
        "env.kwargs.height=32",
        "preview.episodes=0",
        "progress=false",
        f"out={out}",
    ]
    subprocess.run(args, check=True, capture_output=True, timeout=300)
    assert _digests(out) == _digests(reference)
    again = subprocess.run(
        [*args, "resume=true"], check=True, capture_output=True, text=True, timeout=300
    )
    assert "0 shards written, 3 kept" in again.stdout


def test_a_shard_that_does_not_match_its_sidecar_is_never_landed(tmp_path: Path) -> None:
    from latentplay.rollouts.ray_launcher import land_shard

    info = {"bytes": 5, "sha256": "0" * 64}
    with pytest.raises(OSError, match=r"shard-00004\.h5: the shard that came back"):
        land_shard(tmp_path, 4, info, b"12345")
    assert list(tmp_path.iterdir()) == [], "a mismatched shard or its sidecar was written"


def test_a_shard_the_driver_cannot_see_is_named(tmp_path: Path) -> None:
    from latentplay.rollouts.ray_launcher import _check_visible

    with pytest.raises(FileNotFoundError, match=r"shard-00002\.h5: .*ray\.shared_fs=false"):
        _check_visible(tmp_path, 2, {"bytes": 10})
