"""Costs for the planners: roll a world model out under sampled learned actions and score
the result. The model is reached only through the ``WorldModel`` protocol.

- :class:`GoalImageCost`: distance to a goal image on decoded frames (``space="pixels"``) or in
  the model's own embedding of its state (``space="state"``, models with ``embed(state)``).
- :class:`ObjectPositionCost`: distance of an object, read from the decoded frames by a
  detector (any callable ``frames (N, 3, H, W) -> (N, 2)`` pixel positions), to a goal pixel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from latentplay.utils.frames import to_float_frames
from latentplay.world_models.protocol import Actions, StateEmbedding, WorldModel, repeat_state

REDUCTIONS = ("last", "mean")


def _check(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r}; expected one of {choices}")


class ModelRolloutCost:
    """Roll ``model`` out from the state after ``context`` (B=1) under N sampled sequences,
    in chunks of ``chunk`` samples, and sum ``step_cost(state, t) -> (N,)`` over the steps
    ``reduce`` selects ("last": the final step only, DINO-WM's choice; "mean": every step)."""

    def __init__(
        self,
        model: WorldModel,
        context: torch.Tensor,
        *,
        reduce: str = "last",
        chunk: int | None = None,
    ) -> None:
        _check("reduce", reduce, REDUCTIONS)
        if context.ndim != 5 or context.shape[0] != 1:
            raise ValueError(
                f"context of shape {tuple(context.shape)}; expected (1, T, 3, H, W) frames"
            )
        self.model, self.reduce, self.chunk = model, reduce, chunk
        with torch.no_grad():
            self.state = model.encode(context)

    def step_cost(self, state: Any) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @torch.no_grad()
    def __call__(self, actions: Actions) -> torch.Tensor:
        n, horizon = _batch(actions), len(actions)
        size = self.chunk or n
        out = []
        for lo in range(0, n, size):
            part = Actions(*(None if a is None else a[lo : lo + size] for a in actions))
            state = repeat_state(self.state, _batch(part))
            total = 0.0
            for t in range(horizon):
                state = self.model.step(state, part.at(t))
                if self.reduce == "mean" or t == horizon - 1:
                    total = total + self.step_cost(state)
            out.append(total / (horizon if self.reduce == "mean" else 1))
        return torch.cat(out)


def _batch(actions: Actions) -> int:
    ref = actions.continuous if actions.continuous is not None else actions.discrete
    return int(ref.shape[0])


class GoalImageCost(ModelRolloutCost):
    """Mean squared distance to ``goal`` (3, H, W) frame: pixel MSE, or the MSE between the
    model's embeddings of the rolled-out state and of the goal frame (``space="state"``)."""

    def __init__(
        self,
        model: WorldModel,
        context: torch.Tensor,
        goal: torch.Tensor,
        *,
        space: str = "pixels",
        reduce: str = "last",
        chunk: int | None = None,
    ) -> None:
        _check("space", space, ("pixels", "state"))
        super().__init__(model, context, reduce=reduce, chunk=chunk)
        if goal.ndim != 3 or goal.shape != context.shape[2:]:
            raise ValueError(
                f"goal of shape {tuple(goal.shape)}; expected one frame shaped like the "
                f"context's, {tuple(context.shape[2:])}"
            )
        self.space = space
        goal = to_float_frames(goal)
        if space == "state":
            if not isinstance(model, StateEmbedding):
                raise ValueError(f"{type(model).__name__} has no embed(state): use space=pixels")
            with torch.no_grad():
                self.goal = model.embed(model.encode(goal[None, None].to(context.device)))
        else:
            self.goal = goal.to(context.device)

    def step_cost(self, state: Any) -> torch.Tensor:
        if self.space == "state":
            return (self.model.embed(state) - self.goal).pow(2).mean(dim=1)
        return (self.model.decode(state) - self.goal).pow(2).mean(dim=(1, 2, 3))


class ObjectPositionCost(ModelRolloutCost):
    """Pixel distance between the object ``locate`` finds in the decoded frames and
    ``goal_px`` (u, v); frames where it finds nothing cost ``missing_cost`` pixels."""

    def __init__(
        self,
        model: WorldModel,
        context: torch.Tensor,
        locate: Callable[[torch.Tensor], torch.Tensor],
        goal_px: torch.Tensor,
        *,
        missing_cost: float = 64.0,
        reduce: str = "last",
        chunk: int | None = None,
    ) -> None:
        super().__init__(model, context, reduce=reduce, chunk=chunk)
        self.locate, self.missing_cost = locate, missing_cost
        self.goal_px = torch.as_tensor(goal_px, dtype=torch.float32, device=context.device)
        if self.goal_px.shape != (2,):
            raise ValueError(f"goal_px of shape {tuple(self.goal_px.shape)}; expected (2,)")

    def step_cost(self, state: Any) -> torch.Tensor:
        pos = self.locate(self.model.decode(state))
        d = (pos - self.goal_px).norm(dim=1)
        return torch.nan_to_num(d, nan=self.missing_cost)
