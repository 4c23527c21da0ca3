"""Counterfactual answers by abduction (world_models/keypoints/abduction.py): what the
intervention does not reach follows the observed factual branch, exactly; what it reaches
follows the model. Known answers from a toy world whose true and modelled physics differ."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentplay.world_models.keypoints import Keypoints
from latentplay.world_models.keypoints.abduction import abduce, follow, same_parts
from latentplay.world_models.keypoints.model import KeypointState
from latentplay.world_models.protocol import Abduces, Actions

# Toy world in the dynamics' units: keypoint 0 is an arm moved by the action; keypoints 1 and
# 2 are objects, pushed along with the arm's step when it ends within REACH of them.
REACH, RADIUS = 0.15, 0.3


def _toy_step(gain: float, drift: torch.Tensor | None = None):
    """One step of the toy world: pushes carry ``gain`` times the arm's step (the truth pushes
    harder than the model believes), plus ``drift (K, 2)`` per step that no model knows of."""

    def step(s: KeypointState, a: torch.Tensor) -> KeypointState:
        disp = torch.zeros_like(s.pos)
        disp[:, 0] = a
        arm = s.pos[:, 0] + a
        touched = (s.pos[:, 1:] - arm[:, None]).norm(dim=-1) < REACH
        disp[:, 1:] = gain * a[:, None] * touched[..., None]
        if drift is not None:
            disp = disp + drift
        return KeypointState(s.pos + disp, disp, s.presence)

    return step


def _rollout(step, start: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """``(1, T+1, K, 2)`` positions from ``start (1, K, 2)``."""
    s = KeypointState(start, torch.zeros_like(start))
    out = [start]
    for t in range(actions.shape[1]):
        s = step(s, actions[:, t])
        out.append(s.pos)
    return torch.stack(out, 1)


def _follow(
    model_step, obs: torch.Tensor, start: torch.Tensor, acts, f_acts, radius=RADIUS, apart=None
):
    never = lambda p: torch.ones(1, obs.shape[2], dtype=torch.bool)  # noqa: E731
    return follow(
        model_step,
        obs,
        None,
        KeypointState(start, torch.zeros_like(start)),
        acts,
        f_acts,
        never,
        torch.tensor([True, False, False]),
        radius,
        start_tol=0.01,
        step_tol=0.005,
        move_tol=0.01,
        keep_apart=apart,
    )


# The arm moves right along y = 0 and meets object 1 at x = 0.4; object 2 is far away.
START = torch.tensor([[[0.0, 0.0], [0.4, 0.0], [-0.8, 0.8]]])
RIGHT = torch.tensor([0.1, 0.0]).expand(1, 8, 2).clone()


def test_unchanged_branches_reproduce_the_observation_where_the_model_is_wrong() -> None:
    drift = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.02, -0.01]])
    truth = _toy_step(gain=1.5, drift=drift)
    obs = _rollout(truth, START, RIGHT)  # pushes 1.5x, object 2 drifts: the model knows neither
    got = _follow(_toy_step(gain=1.0), obs, START.clone(), RIGHT, RIGHT)
    assert bool(got.tied.all())
    torch.testing.assert_close(got.pos, obs[:, 1:])


def test_an_object_pushed_only_in_the_factual_branch_stays_put_far_ones_follow() -> None:
    drift = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.02, -0.01]])
    truth = _toy_step(gain=1.5, drift=drift)
    obs = _rollout(truth, START, RIGHT)
    assert float((obs[0, -1, 1] - obs[0, 0, 1]).norm()) > 0.3  # the factual push happened
    away = -RIGHT  # the counterfactual arm goes left instead
    # A model that misses pushes altogether: its steps never tell the branches apart for
    # object 1, so only the factual arm nearing it can untie it.
    got = _follow(_toy_step(gain=0.0), obs, START.clone(), away, RIGHT)
    # The arm follows the model under its own actions, from the first step.
    assert not bool(got.tied[0, :, 0].any())
    torch.testing.assert_close(got.pos[0, :, 0], START[0, 0] + away[0].cumsum(0))
    # Object 1 is untied as the factual arm nears it and stays where it was: no ghost push.
    torch.testing.assert_close(got.pos[0, :, 1], START[0, 1].expand(8, 2))
    assert not bool(got.tied[0, -1, 1])
    # Object 2, which nothing nears in either branch, follows its observed drift exactly.
    assert bool(got.tied[0, :, 2].all())
    torch.testing.assert_close(got.pos[0, :, 2], obs[0, 1:, 2])
    # Without the reach rule the factual push would show in the answer.
    blind = _follow(_toy_step(gain=0.0), obs, START.clone(), away, RIGHT, radius=0.0)
    assert float((blind.pos[0, -1, 1] - START[0, 1]).norm()) > 0.3


def test_a_moved_object_is_imagined_from_its_new_place() -> None:
    truth = _toy_step(gain=1.5)
    obs = _rollout(truth, START, RIGHT)
    start = START.clone()
    start[0, 1] = torch.tensor([0.4, 0.5])  # moved out of the arm's path
    got = _follow(_toy_step(gain=1.0), obs, start, RIGHT, RIGHT)
    assert not bool(got.tied[0, :, 1].any())
    torch.testing.assert_close(got.pos[0, :, 1], start[0, 1].expand(8, 2))
    torch.testing.assert_close(got.pos[0, :, 0], obs[0, 1:, 0])  # the arm: as observed


def test_a_still_changed_object_does_not_untie_what_passes_near_it() -> None:
    """Object 2 moved next to object 1's path, where nothing touches it: it stays put, so it
    cannot push object 1, which follows its observed 1.5x push exactly all the way (a model
    step would push it 1.0x) although it passes within the interaction radius; and the same
    with the branches' roles swapped."""
    truth = _toy_step(gain=1.5)
    obs = _rollout(truth, START, RIGHT)
    start = START.clone()
    start[0, 2] = torch.tensor([0.6, 0.2])
    passes = (obs[0, 1:, 1] - start[0, 2]).norm(dim=-1)
    assert (
        float(passes.min()) < RADIUS
        and float((obs[0, 1:, 0] - start[0, 2]).norm(dim=-1).min()) > REACH
    )
    got = _follow(_toy_step(gain=1.0), obs, start, RIGHT, RIGHT)
    assert not bool(got.tied[0, :, 2].any())
    torch.testing.assert_close(got.pos[0, :, 2], start[0, 2].expand(8, 2))
    assert bool(got.tied[0, :, :2].all())
    torch.testing.assert_close(got.pos[0, :, :2], obs[0, 1:, :2])
    # The mirror case: object 2 sits beside the path in the factual video, and the
    # counterfactual moves it far away. Still in the observation, it unties nothing either.
    beside = START.clone()
    beside[0, 2] = torch.tensor([0.6, 0.2])
    obs = _rollout(truth, beside, RIGHT)
    assert float((obs[0, 1:, 1] - obs[0, 1:, 2]).norm(dim=-1).min()) < RADIUS
    got = _follow(_toy_step(gain=1.0), obs, START.clone(), RIGHT, RIGHT)
    assert not bool(got.tied[0, :, 2].any())
    assert bool(got.tied[0, :, :2].all())
    torch.testing.assert_close(got.pos[0, :, :2], obs[0, 1:, :2])


def test_an_added_object_in_the_way_is_shoved_on_by_the_observed_push() -> None:
    """A chained push: object 2 is added 0.25 ahead of object 1 on its observed path, and
    neither the toy model nor its steps push one object with another. Kept 0.15 apart (a
    model's ``keep_apart``), object 1 follows its observed 1.5x push exactly (tied: object 2
    moves only by being shoved) and shoves object 2 on, exactly 0.15 ahead of it once they
    meet; without it object 1 runs into object 2 (0.1 apart)."""
    truth = _toy_step(gain=1.5)
    obs = _rollout(truth, START, RIGHT)
    start = START.clone()
    start[0, 2] = torch.tensor([0.65, 0.0])
    model = Keypoints(image_size=64, num_keypoints=3, action_dim=2)
    model.apart_px[1, 2] = model.apart_px[2, 1] = 0.15 * 32  # 0.15 units in px at 64x64
    got = _follow(_toy_step(gain=1.0), obs, start, RIGHT, RIGHT, apart=model.keep_apart)
    assert bool(got.tied[0, :, 1].all())
    torch.testing.assert_close(got.pos[0, :, 1], obs[0, 1:, 1])
    ahead = torch.maximum(obs[0, 1:, 1, 0] + 0.15, torch.tensor(0.65))
    assert float(ahead[-1]) > 0.9  # it was shoved a long way
    torch.testing.assert_close(got.pos[0, :, 2, 0], ahead, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.pos[0, :, 2, 1], torch.zeros(8))
    through = _follow(_toy_step(gain=1.0), obs, start, RIGHT, RIGHT)
    assert float((through.pos[0, :, 2] - through.pos[0, :, 1]).norm(dim=-1).min()) < 0.11


def test_a_pixel_shows_a_real_frame_where_its_part_is_where_that_frame_has_it() -> None:
    """A 16x16 frame, parts reach pixels within 3 px of their keypoint: part 0 is at the same
    place in the answer and the real frame, part 1 moved away (x 3 -> 12), part 2 is absent in
    both (and placed differently); then part 1 moved beside part 0."""
    size, px = 16, 2 / 16
    at = lambda x, y: [(x + 0.5) * px - 1, (y + 0.5) * px - 1]  # noqa: E731  pixel -> units
    answer = torch.tensor([[at(8, 3), at(12, 12), at(0, 0)]])
    seen = torch.tensor([[at(8, 3), at(3, 12), at(2, 0)]])
    present = torch.tensor([[True, True, False]])
    got = same_parts(answer, present, seen, present, size, own=3 * px, same=0.5 * px)[0, 0]
    assert got[3, 8] == 1 and got[3, 10] == 1  # part 0: at its place in both
    assert got[12, 12] == 0 and got[12, 3] == 0  # part 1: where it is now, where it was
    assert got[12, 7] == 1  # >= 4 px from part 1 in either: background in both
    assert got[0, 0] == 1  # an absent part owns nothing
    # part 0 a pixel off in the answer: its pixels are the rendering's
    moved = answer.clone()
    moved[0, 0, 0] += px
    got = same_parts(moved, present, seen, present, size, own=3 * px, same=0.5 * px)[0, 0]
    assert got[3, 8] == 0 and got[12, 7] == 1
    # part 1 moved beside part 0 (2 px right of it): part 0's pixels within reach of part 1
    # are the rendering's (the real frame lacks part 1 there), those beyond it stay real
    beside = answer.clone()
    beside[0, 1] = torch.tensor(at(10, 3))
    got = same_parts(beside, present, seen, present, size, own=3 * px, same=0.5 * px)[0, 0]
    assert got[3, 8] == 0 and got[3, 9] == 0  # nearer part 0, but part 1 is within reach
    assert got[3, 6] == 1  # 2 px from part 0, 4 px from part 1: part 0's alone, real
    assert got[12, 3] == 0 and got[12, 12] == 1  # where part 1 was: rendered; far: background


def _frames(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = np.random.default_rng(seed)
    x = np.full((1, n, 3, size, size), 60, np.uint8)
    for t in range(n):  # a bright square moving right over a still dark one
        x[0, t, :, 12:18, 4 + t : 10 + t] = 230
        x[0, t, 0, 22:28, 20:26] = 10
    x[..., :2, :] = g.integers(0, 255, (1, n, 3, 2, size), dtype=np.uint8)
    return torch.from_numpy(x)


def test_the_model_reproduces_an_unchanged_branch_as_observed() -> None:
    torch.manual_seed(0)
    model = Keypoints(image_size=32, num_keypoints=4, action_dim=2).eval()
    model.set_background(_frames(6)[0])
    assert isinstance(model, Abduces)
    video = _frames(6)
    got = abduce(model, video, video[:, :1])
    assert bool(got.tied.all())
    torch.testing.assert_close(got.frames, video[:, 1:].float() / 255, atol=1e-5, rtol=0)
    answer = model.counterfactual(video, video[:, :1], None)
    torch.testing.assert_close(answer, got.frames)


def test_bad_shapes_are_named() -> None:
    model = Keypoints(image_size=32, num_keypoints=4, action_dim=2).eval()
    video = _frames(6)
    with pytest.raises(ValueError, match=r"expected \(B, T\+1, 3, H, W\) and \(B, 1, 3, H, W\)"):
        abduce(model, video, video[:, :2])
    with pytest.raises(ValueError, match=r"actions of shape \(1, 3, 2\); expected \(1, 5, 2\)"):
        abduce(model, video, video[:, :1], torch.zeros(1, 3, 2))
    with pytest.raises(ValueError, match="continuous"):
        model.counterfactual(
            video, video[:, :1], Actions(None, torch.zeros(1, 5, dtype=torch.long))
        )
