"""Planning costs roll a world model out through the protocol alone: a toy model whose frames
show a blob at its state must be steered onto a goal image; GLASS's global view translates."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
import torch

from latentplay.agents.planners import CEM, MPPI
from latentplay.agents.planners.costs import (
    GoalImageCost,
    ObjectPositionCost,
    PushCost,
    push_shaping,
)
from latentplay.world_models.glass import Glass
from latentplay.world_models.glass.global_model import GlassGlobal, mask_centroid
from latentplay.world_models.protocol import Actions, ActionSpec, repeat_state

SIZE = 40


@dataclass
class BlobState:
    pos: torch.Tensor  # (B, 2) pixels (x, y)


class BlobModel:
    """A blob that moves by the continuous action (pixels); discrete actions do nothing."""

    action_spec = ActionSpec(continuous=2, continuous_bound=4.0, discrete=2)

    def encode(self, frames: torch.Tensor) -> BlobState:
        return BlobState(centroid(frames[:, -1]))

    def step(self, state: BlobState, actions: Actions) -> BlobState:
        return BlobState(state.pos + actions.continuous)

    def decode(self, state: BlobState) -> torch.Tensor:
        return blob(state.pos)

    def embed(self, state: BlobState) -> torch.Tensor:
        return state.pos


def centroid(frames: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> brightness centroid (B, 2) in pixels (x, y)."""
    w = frames[:, 0]
    ys, xs = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    return torch.stack([(w * xs).sum((1, 2)), (w * ys).sum((1, 2))], 1) / w.sum((1, 2))[:, None]


def blob(pos: torch.Tensor) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    d2 = (xs - pos[:, 0, None, None]) ** 2 + (ys - pos[:, 1, None, None]) ** 2
    return torch.exp(-d2 / 32.0)[:, None].expand(-1, 3, -1, -1)


@pytest.mark.parametrize("space", ["pixels", "state"])
@pytest.mark.parametrize("planner_cls", [CEM, MPPI])
def test_goal_image_cost_steers_the_model_onto_the_goal(space: str, planner_cls: type) -> None:
    model, goal_pos = BlobModel(), torch.tensor([[22.0, 19.0]])
    context = blob(torch.tensor([[14.0, 14.0]]))[None]
    cost = GoalImageCost(model, context, blob(goal_pos)[0], space=space, chunk=64)
    planner = planner_cls(model.action_spec, horizon=3, samples=200, elites=20, iterations=10)
    plan = planner.plan(cost)
    end = torch.tensor([14.0, 14.0]) + plan.actions.continuous[0].sum(dim=0)
    torch.testing.assert_close(end, goal_pos[0], atol=0.5, rtol=0)
    start_cost = float(cost(Actions(torch.zeros(1, 3, 2), torch.zeros(1, 3, dtype=torch.long))))
    assert plan.cost < 0.05 * start_cost


def test_object_position_cost_reads_positions_from_decoded_frames() -> None:
    model, context = BlobModel(), blob(torch.tensor([[14.0, 14.0]]))[None]
    cost = ObjectPositionCost(model, context, centroid, torch.tensor([17.0, 14.0]))
    acts = Actions(torch.tensor([[[3.0, 0.0]], [[0.0, 0.0]]]), torch.zeros(2, 1, dtype=torch.long))
    c = cost(acts)
    assert float(c[0]) == pytest.approx(0.0, abs=0.05) and float(c[1]) == pytest.approx(
        3.0, abs=0.05
    )
    with pytest.raises(ValueError, match=r"goal_px of shape \(3,\)"):
        ObjectPositionCost(model, context, centroid, torch.zeros(3))


class PusherModel:
    """Three parts, one per colour channel: 0 the pusher (moves by the action), 1 an arm link
    (0.3 of it), 2 an object that stays put unless the pusher comes within ``REACH`` pixels,
    which shoves it out to that distance (a push)."""

    REACH = 4.0
    action_spec = ActionSpec(continuous=2, continuous_bound=2.0)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames[:, -1]
        return torch.stack([centroid(x[:, [c, c, c]]) for c in range(3)], dim=1)

    def step(self, state: torch.Tensor, actions: Actions) -> torch.Tensor:
        a = actions.continuous
        pusher, link, obj = state[:, 0] + a, state[:, 1] + 0.3 * a, state[:, 2]
        gap = obj - pusher
        d = gap.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        obj = torch.where(d < self.REACH, pusher + gap / d * self.REACH, obj)
        return torch.stack([pusher, link, obj], dim=1)

    def decode(self, state: torch.Tensor) -> torch.Tensor:
        return torch.stack([blob(state[:, c])[:, 0] for c in range(3)], dim=1)

    def state_positions_px(self, state: torch.Tensor) -> torch.Tensor:
        return state


def test_push_shaping_is_the_goal_distance_plus_the_way_to_behind_the_object() -> None:
    obj, goal = torch.tensor([[0.0, 0.0]]), torch.tensor([10.0, 0.0])
    behind = push_shaping(torch.tensor([[-5.0, 0.0]]), obj, goal, behind=5.0)
    beside = push_shaping(torch.tensor([[0.0, 5.0]]), obj, goal, behind=5.0)
    assert float(behind) == pytest.approx(10.0)
    assert float(beside) == pytest.approx(10.0 + 0.5 * 50**0.5)


def test_push_cost_finds_its_parts_and_a_planner_pushes_the_object_home() -> None:
    """Known answer: the goal image moves part 2 (the object), the actions move part 0 (the
    pusher) most; receding-horizon CEM on the push cost goes round the object and pushes it
    to its goal, which lies on the far side of the object from the pusher's start."""
    model = PusherModel()
    state = torch.tensor([[[12.0, 14.0], [10.0, 12.0], [20.0, 20.0]]])
    goal_state = state.clone()
    goal_state[0, 2] = torch.tensor([15.0, 27.0])
    goal = model.decode(goal_state)[0]
    planner = CEM(model.action_spec, horizon=5, samples=200, elites=20, iterations=8)
    first = PushCost(model, model.decode(state)[None], goal, behind_px=5.0)
    assert (first.object, first.pusher) == (2, 0)
    for _ in range(30):
        parts = (first.object, first.pusher)
        cost = PushCost(model, model.decode(state)[None], goal, behind_px=5.0, parts=parts)
        plan = planner.plan(cost)
        state = model.step(state, plan.actions.at(0))
    assert float((state[0, 2] - goal_state[0, 2]).norm()) < 1.5


def test_push_cost_needs_part_positions() -> None:
    with pytest.raises(ValueError, match="BlobModel has no state_positions_px"):
        PushCost(BlobModel(), torch.zeros(1, 1, 3, SIZE, SIZE), torch.zeros(3, SIZE, SIZE))


def test_goal_of_the_wrong_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="expected one frame shaped like the context's"):
        GoalImageCost(BlobModel(), torch.zeros(1, 1, 3, SIZE, SIZE), torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match=r"expected \(1, T, 3, H, W\)"):
        GoalImageCost(BlobModel(), torch.zeros(2, 1, 3, SIZE, SIZE), torch.zeros(3, SIZE, SIZE))


def test_glass_global_view_translates_the_context_foreground() -> None:
    torch.manual_seed(0)
    view = GlassGlobal(Glass(size="xs", image_size=32).eval())
    assert view.action_spec.discrete == 0 and view.action_spec.continuous == 2
    frames = torch.rand(1, 2, 3, 32, 32)
    state = repeat_state(view.encode(frames), 2)
    shift = torch.tensor([[0.25, 0.0], [0.0, 0.0]])  # 4 pixels right, and none
    nxt = view.step(state, Actions(shift, None))
    torch.testing.assert_close(nxt.foreground[1], state.foreground[1])
    torch.testing.assert_close(
        nxt.foreground[0, :, :, 4:], state.foreground[0, :, :, :-4], atol=1e-5, rtol=0
    )
    square = torch.zeros(2, 1, 32, 32)
    square[:, :, 10:14, 8:12] = 1.0  # a mask whose centroid is known: moves with the shift
    boxed = replace(state, origin_mask=square, origin_centroid=mask_centroid(square))
    moved = view.step(boxed, Actions(shift, None))
    torch.testing.assert_close(
        view.embed(moved) - view.embed(boxed), torch.tensor([[0.25, 0.0], [0.0, 0.0]])
    )
    # the embedding needs no image, and equals the centroid of the shifted mask it stands for
    torch.testing.assert_close(view.embed(moved), mask_centroid(moved.mask), atol=1e-5, rtol=0)
    twice = view.step(nxt, Actions(shift, None))
    torch.testing.assert_close(twice.shift[0], torch.tensor([0.5, 0.0]))
    assert view.decode(twice).shape == (2, 3, 32, 32)
