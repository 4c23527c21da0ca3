"""Shared test set-up: datasets built once per session, and `gpu` tests skipped when there is
no CUDA device.

Session datasets are read-only: a test that damages or extends one copies it first.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist each worker owns one of the machine's cores: one intra-op thread per
    worker, inherited by the subprocesses its tests start, so that workers never oversubscribe
    the CPU (two 2-thread trainings on 2 cores run several times slower than one after the
    other)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not any(item.get_closest_marker("gpu") for item in items):
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; none here")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def toy_dataset(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``toy_dataset(episodes=..., steps=..., size=..., num_local=...)``: the known-answer
    sprite dataset (:func:`latentplay.rollouts.toy.make_toy_dataset`) with those settings,
    written once per session for each distinct set of them."""
    from latentplay.rollouts.toy import make_toy_dataset

    root = tmp_path_factory.mktemp("toys")

    @functools.cache
    def make(**kw: int) -> Path:
        name = "_".join(f"{k}{v}" for k, v in sorted(kw.items())) or "default"
        return make_toy_dataset(root / name, **kw)

    return make


@pytest.fixture(scope="session")
def push_toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The push toy (:func:`latentplay.rollouts.toy.make_push_toy_dataset`, 64 seeded
    episodes: the ones the keypoint model's known-answer bars were measured on), written once
    per session."""
    from latentplay.rollouts.toy import make_push_toy_dataset

    return make_push_toy_dataset(tmp_path_factory.mktemp("push_toy") / "toy", episodes=64)


@pytest.fixture(scope="session")
def push_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small Push-v0 dataset collected once per session: 6 scripted episodes of 12 steps at
    32x32 with segmentation masks, seed 5, in 3 shards of 2 episodes, by 2 workers."""
    from helpers.datasets import push_spec

    from latentplay.rollouts.collect import collect

    out = tmp_path_factory.mktemp("push") / "push"
    collect(push_spec(), out, workers=2, progress=False)
    return out
