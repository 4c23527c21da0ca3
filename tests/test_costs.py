"""Planning costs roll a world model out through the protocol alone: a toy model whose frames
show a blob at its state must be steered onto a goal image; GLASS's global view translates."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
import torch

from latentplay.agents.planners import CEM, MPPI
from latentplay.agents.planners.costs import GoalImageCost, ObjectPositionCost
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
