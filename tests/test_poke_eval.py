"""The poke benchmark measures what it claims: MuJoCo's own frames score perfectly, frames
that never change score zero, and chain queries are ones where the pushed object hits another."""

from __future__ import annotations

import numpy as np
import pytest

from latentplay.envs.arm import PushMultiEnv
from latentplay.evaluation.detector import ObjectDetector
from latentplay.evaluation.poke import MOVED_M, _px_per_m, build_queries, score_pokes


@pytest.fixture(scope="module")
def setup():
    env = PushMultiEnv(width=64, height=64, time_limit=None)
    detector, ppm = ObjectDetector.from_env(env), _px_per_m(env)
    env.close()
    return build_queries(6, 4, steps=6), detector, ppm


def test_queries_are_what_they_claim(setup) -> None:
    queries, _, ppm = setup
    assert [q.kind for q in queries].count("chain") == 4
    assert 100 < ppm < 200  # the 0.32 m arena spans ~45 of the 64 px
    for q in queries:
        assert q.frames.shape == (7, 64, 64, 3) and q.ee_px.shape == (7, 2)
        if q.kind == "chain":  # the pushed object moved another one more than 1 cm
            travel = np.linalg.norm(q.obj_m[-1, q.hit] - q.obj_m[0, q.hit])
            assert q.hit != q.pushed and travel > MOVED_M
    # the end effector moves by about the same pixels every step (a straight push)
    steps = np.linalg.norm(np.diff(queries[0].ee_px, axis=0), axis=1)
    assert steps[1:].std() < 0.5 and steps.mean() > 1.0


def test_true_frames_score_perfectly_and_frozen_frames_score_zero(setup) -> None:
    queries, detector, ppm = setup
    truth = np.stack([q.frames[1:] for q in queries])
    perfect = score_pokes(queries, truth, detector, ppm)
    assert perfect["eval/poke/angle_match"] == 1.0
    assert perfect["eval/poke/chain_reproduced"] == 1.0
    frozen = np.stack([np.repeat(q.frames[:1], 6, axis=0) for q in queries])
    none = score_pokes(queries, frozen, detector, ppm)
    assert none["eval/poke/angle_match"] == 0.0 and none["eval/poke/chain_reproduced"] == 0.0
