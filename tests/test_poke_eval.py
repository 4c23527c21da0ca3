"""The poke benchmark measures what it claims: MuJoCo's own frames score perfectly, frames
that never change score zero, and chain queries are ones where the pushed object hits another."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from latentplay.envs.arm import PushMultiEnv
from latentplay.evaluation.detector import MOVED_M, ObjectDetector
from latentplay.evaluation.poke.queries import build_queries, px_per_m
from latentplay.evaluation.poke.scoring import object_error, score_pokes


@pytest.fixture(scope="module")
def setup():
    env = PushMultiEnv(width=64, height=64, time_limit=None)
    detector, ppm = ObjectDetector.from_env(env), px_per_m(env)
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
    # the end effector pushes on: ~2.3 px a step (unless it is blocked for a while)
    steps = [np.linalg.norm(np.diff(q.ee_px, axis=0), axis=1).mean() for q in queries]
    assert 1.5 < np.median(steps) < 3.5


def test_true_frames_score_perfectly_and_frozen_frames_score_zero(setup) -> None:
    queries, detector, ppm = setup
    truth = np.stack([q.frames[1:] for q in queries])
    perfect = score_pokes(queries, truth, detector, ppm)
    assert perfect["eval/poke/angle_match"] == 1.0
    assert perfect["eval/poke/chain_reproduced"] == 1.0
    # what stays put in the truth is read as the detector reads the truth
    assert perfect["eval/poke/still_moved"] == perfect["eval/poke/still_moved_truth"] < 0.3
    frozen = np.stack([np.repeat(q.frames[:1], 6, axis=0) for q in queries])
    none = score_pokes(queries, frozen, detector, ppm)
    assert none["eval/poke/angle_match"] == 0.0 and none["eval/poke/chain_reproduced"] == 0.0


class ReplayModel:
    """A "model" whose rollouts and pokes replay the real video after their first frame: the
    harness's ceiling."""

    def __init__(self, data) -> None:
        from latentplay.rollouts.format import EpisodeReader

        reader = EpisodeReader(data)
        self.next = {}
        for ep in reader.indices("test"):
            f = reader.frames(ep)
            for t in range(len(f) - 8):
                self.next.setdefault(f[t].tobytes(), f[t + 1 : t + 9])

    def _replay(self, context):
        first = context[:, 0].permute(0, 2, 3, 1).numpy()
        out = np.stack([self.next[f.tobytes()] for f in first])
        return torch.from_numpy(out).permute(0, 1, 4, 2, 3).float() / 255

    def infer_actions(self, frames):
        from latentplay.world_models.protocol import Actions

        return Actions(continuous=torch.zeros(frames.shape[0], frames.shape[1] - 1, 4))

    def rollout(self, context, actions):
        return self._replay(context)

    def poke(self, frames, points, vectors):
        assert points.shape[:3] == (frames.shape[0], 8, 1)  # one poke per step
        return self._replay(frames)

    # The rest of SparseFlowControl, which the object error does not use.
    image_size = 64

    def control_map(self, points, vectors, present=None):
        raise AssertionError("not used by object_error")

    step_control = simulate = control_map


class FrozenModel(ReplayModel):
    def _replay(self, context):
        return (context[:, :1].float() / 255).expand(-1, 8, -1, -1, -1)


def test_object_error_of_the_true_video_is_near_zero_and_of_a_frozen_one_is_copys(
    tmp_path, setup
) -> None:
    import functools

    from latentplay.agents.policies import ScriptedPushPolicy
    from latentplay.rollouts.collect import collect
    from latentplay.rollouts.worker import CollectSpec

    _, detector, ppm = setup
    spec = CollectSpec(
        env_id="latentplay/PushMulti-v0",
        policy_factory=functools.partial(ScriptedPushPolicy, aim_at_object=0.5),
        episodes=12,
        steps=24,
        shard_episodes=6,
        seed=3,
        env_kwargs={"width": 64, "height": 64},
        split_fractions=(0.0, 0.0, 1.0),
    )
    collect(spec, tmp_path / "multi", workers=1, progress=False)
    true = object_error(ReplayModel(tmp_path / "multi"), tmp_path / "multi", detector, ppm)
    assert true["eval/objects/clips"] >= 3
    for suffix in ("", "_parsed"):
        assert true[f"eval/objects/err8{suffix}_px"] < 0.5
        assert true[f"eval/objects/copy_over_model8{suffix}"] > 4
        # the true video moves still objects exactly as often as the detector reads it does
        assert true[f"eval/objects/still_moved{suffix}"] == true["eval/objects/still_moved_truth"]
    frozen = object_error(FrozenModel(tmp_path / "multi"), tmp_path / "multi", detector, ppm)
    assert frozen["eval/objects/copy_over_model8"] == pytest.approx(1.0)
    assert frozen["eval/objects/copy_over_model8_parsed"] == pytest.approx(1.0)
    assert frozen["eval/objects/still_moved_parsed"] == 0.0  # nothing moves in a frozen video


def test_a_poke_run_is_shown_in_another_report(tmp_path) -> None:
    import json

    from latentplay.evaluation.counterfactual.report import included_section
    from latentplay.rollouts.video import write_video

    out = tmp_path / "report"
    sections = []
    trained = {"yoda": "shipped model, trained 37.0 min", "keypoints": "short run (1.0 min)"}
    for run, value in (("yoda", 0.5), ("keypoints", 0.9)):  # two runs' folders named poke
        poke = tmp_path / run / "poke"
        poke.mkdir(parents=True)
        res = {"checkpoint": "c.pt", "eval/poke/angle_match": value, "trained": trained[run]}
        (poke / "poke_results.json").write_text(json.dumps({**res, "rows": []}))
        write_video(np.full((3, 16, 16, 3), int(value * 255), np.uint8), poke / "poke.mp4", fps=2)
        sections.append(included_section(poke, out))
    assert sections[0].table == [{"metric": "eval/poke/angle_match", "value": 0.5}]
    assert [s.title.rsplit(": ", 1)[-1] for s in sections] == ["shipped model", "short run"]
    assert sections[0].videos == [out / "included" / "yoda-poke" / "poke.mp4"]
    assert sections[1].videos == [out / "included" / "keypoints-poke" / "poke.mp4"]
    assert all(s.videos[0].is_file() for s in sections)  # neither copy replaced the other
    with pytest.raises(ValueError, match=r"expected a folder with poke_results\.json"):
        included_section(tmp_path, out)


class BranchReader:
    """A world model without pokes whose latent actions *are* the frames it parsed: its
    rollout replays them. Driven by the actions parsed from MuJoCo's branch, it must score
    like the truth."""

    def infer_actions(self, frames):
        from latentplay.world_models.protocol import Actions

        return Actions(continuous=frames[:, 1:].float().flatten(2) / 255)

    def rollout(self, context, actions):
        b, t = actions.continuous.shape[:2]
        return actions.continuous.reshape(b, t, 3, 64, 64)


def test_a_model_without_pokes_is_driven_by_the_actions_it_parses(setup) -> None:
    from latentplay.evaluation.poke.scoring import predict_pokes

    queries, detector, ppm = setup
    pred = predict_pokes(BranchReader(), queries, torch.device("cpu"))
    assert pred.shape == (len(queries), 6, 64, 64, 3)
    np.testing.assert_array_equal(pred, np.stack([q.frames[1:] for q in queries]))
    assert score_pokes(queries, pred, detector, ppm)["eval/poke/angle_match"] == 1.0


def test_each_kind_video_shows_the_first_queries_whose_object_moved(tmp_path: Path) -> None:
    """poke.mp4 stacks the first four poke queries whose object truly moved, in query order
    (whatever the model made of them; a fifth is left out); chain.mp4, with no moved chain
    query, its first ones."""
    import cv2

    from latentplay.evaluation.poke.queries import PokeQuery
    from latentplay.evaluation.poke.report import write_videos

    def query(kind: str, shade: int) -> PokeQuery:
        frames = np.full((4, 16, 16, 3), shade, np.uint8)
        k = np.zeros((4, 1, 2))
        return PokeQuery(
            kind, 0, frames[:1], frames, np.zeros((4, 2)), k, k, np.ones(1, bool), 0, -1
        )

    queries = [query("poke", 10 * i) for i in range(7)] + [query("chain", 200 + i) for i in (0, 20)]
    moved = [False, True, True, False, True, True, True, False, False]
    results = {"rows": [{"pushed_moved": m} for m in moved]}
    pred = np.stack([q.frames[1:] for q in queries])
    videos = write_videos(tmp_path, results, queries, pred)
    assert [v.name for v in videos] == ["poke.mp4", "chain.mp4"]

    def first_frame(path: Path) -> np.ndarray:
        ok, frame = cv2.VideoCapture(str(path)).read()
        assert ok
        return frame

    poke, chain = first_frame(videos[0]), first_frame(videos[1])
    assert poke.shape[0] == 2 * chain.shape[0]  # four queries, one above the other; two chains
    row = chain.shape[0] // 2
    mid = [int(np.median(poke[r * row : (r + 1) * row, : 16 * 4])) for r in range(4)]
    assert mid == pytest.approx([10, 20, 40, 50], abs=4)  # the truth column of queries 1, 2, 4, 5
