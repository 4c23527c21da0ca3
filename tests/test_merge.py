"""Merging datasets: every episode kept bit for bit under its new index, splits kept, bad
sources refused before anything is written."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from latentplay.rollouts.dataset import ClipDataset
from latentplay.rollouts.format import (
    DatasetError,
    EpisodeReader,
    episode_digest,
    load_meta,
    stored_arrays,
)
from latentplay.rollouts.merge import merge_datasets


@pytest.fixture(scope="module")
def sources(toy_dataset: Callable[..., Path]) -> tuple[Path, Path]:
    return toy_dataset(episodes=10, num_local=2), toy_dataset(episodes=7, num_local=3)


def test_every_episode_is_kept_under_its_new_index(sources: tuple[Path, Path], tmp_path: Path):
    out = merge_datasets(list(sources), tmp_path / "merged", progress=False)
    merged = EpisodeReader(out)  # verifies every new shard's checksum
    readers = [EpisodeReader(s) for s in sources]
    assert len(merged) == 17
    pairs = [(r, i) for r in readers for i in range(len(r))]
    for j, (r, i) in enumerate(pairs):
        assert merged.episodes[j][2:] == r.episodes[i][2:]  # length and split
        np.testing.assert_array_equal(merged.frames(j), r.frames(i))
        gt_new, gt_old = merged.ground_truth(j), r.ground_truth(i)
        assert sorted(gt_new) == sorted(gt_old)
        np.testing.assert_array_equal(gt_new["actions"], gt_old["actions"])
    meta = load_meta(out)
    assert meta["episodes"] == 17 and meta["complete"]
    assert [m["first_index"] for m in meta["merged"]] == [0, 10]
    assert "env_kwargs" not in meta  # the sources' num_local differ: no single value holds
    assert [m["env_kwargs"]["num_local"] for m in meta["merged"]] == [2, 3]
    for split in ("train", "val", "test"):
        assert len(meta["splits"][split]) == sum(len(r.indices(split)) for r in readers)
    assert len(ClipDataset(out, clip_length=4, split="train")) > 0


def _digests_of(shard: Path) -> list[str]:
    """Each episode's digest, hashed from the arrays the shard file holds."""
    with h5py.File(shard, "r") as f:
        return [episode_digest(stored_arrays(f, key)) for key in sorted(f["frames"])]


def test_the_new_sidecars_hold_each_episodes_digest(sources: tuple[Path, Path], tmp_path: Path):
    out = merge_datasets(list(sources), tmp_path / "merged", progress=False)
    old = json.loads((sources[1] / "shards" / "shard-00000.json").read_text())
    new = json.loads((out / "shards" / "shard-00001.json").read_text())
    assert new["episode_sha256"] == old["episode_sha256"]  # content unchanged by the new names
    assert new["episode_sha256"] == _digests_of(out / "shards" / "shard-00001.h5")
    assert new["episode_index"] == [10 + i for i in old["episode_index"]]


def test_digests_are_hashed_when_a_sidecar_lacks_them(sources: tuple[Path, Path], tmp_path: Path):
    bare = tmp_path / "bare"
    shutil.copytree(sources[1], bare)
    sidecar = bare / "shards" / "shard-00000.json"
    info = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({k: v for k, v in info.items() if k != "episode_sha256"}))
    out = merge_datasets([sources[0], bare], tmp_path / "merged", progress=False)
    new = json.loads((out / "shards" / "shard-00001.json").read_text())
    assert new["episode_sha256"] == info["episode_sha256"]


def test_bad_sources_are_refused_before_writing(
    sources: tuple[Path, Path], toy_dataset: Callable[..., Path], tmp_path: Path
):
    with pytest.raises(DatasetError, match="height: 32 vs 16"):
        merge_datasets([sources[0], toy_dataset(episodes=4, size=16)], tmp_path / "a")
    assert not (tmp_path / "a").exists()
    imported = tmp_path / "imported"
    imported.mkdir()
    meta = load_meta(sources[1])
    (imported / "meta.json").write_text(json.dumps({**meta, "source": {"kind": "videos"}}))
    with pytest.raises(DatasetError, match="source: 'collected' vs 'videos'"):
        merge_datasets([sources[0], imported], tmp_path / "e")
    with pytest.raises(ValueError, match="at least two"):
        merge_datasets([sources[0]], tmp_path / "b")
    with pytest.raises(ValueError, match="listed twice"):
        merge_datasets([sources[0], sources[0]], tmp_path / "c")
    merge_datasets(list(sources), tmp_path / "d", progress=False)
    with pytest.raises(FileExistsError, match="already holds a dataset"):
        merge_datasets(list(sources), tmp_path / "d", progress=False)


def test_an_incomplete_source_is_refused(sources: tuple[Path, Path], tmp_path: Path):
    part = tmp_path / "part"
    part.mkdir()
    meta = load_meta(sources[1])
    (part / "meta.json").write_text(json.dumps({**meta, "complete": False}))
    with pytest.raises(DatasetError, match="incomplete"):
        merge_datasets([sources[0], part], tmp_path / "out")


def test_merged_imported_datasets_stay_imported(sources: tuple[Path, Path], tmp_path: Path):
    copies = []
    for i, src in enumerate(sources):
        dst = tmp_path / f"imported{i}"
        shutil.copytree(src, dst)
        meta = load_meta(dst)
        (dst / "meta.json").write_text(json.dumps({**meta, "source": {"kind": "videos"}}))
        copies.append(dst)
    out = merge_datasets(copies, tmp_path / "merged", progress=False)
    assert EpisodeReader(out).imported == "videos"
