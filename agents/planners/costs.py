"""Costs for the planners: roll a world model out under sampled learned actions and score
the result. The model is reached only through the ``WorldModel`` protocol.

- :class:`GoalImageCost`: distance to a goal image on decoded frames (``space="pixels"``) or in
  the model's own embedding of its state (``space="state"``, models with ``embed(state)``).
- :class:`ObjectPositionCost`: distance of an object, read from the decoded frames by a
  detector (any callable ``frames (N, 3, H, W) -> (N, 2)`` pixel positions), to a goal pixel.
- :class:`PushCost`: the push task's shaped cost (:func:`push_shaping`) on the positions of the
  model's own parts (models with ``state_positions_px``): which part is the object and where
  its goal is come from the model's reading of the goal image, which part pushes from what
  the model's actions move most.
- :class:`MeanCost`: the mean of several costs of the same candidates (an ensemble of models).

Every cost can hold each sampled action for ``repeat`` model steps (action repeat: a planner
horizon of H covers H x repeat steps of the env).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from latentplay.utils.frames import to_float_frames
from latentplay.world_models.protocol import (
    Actions,
    PartPresence,
    StateEmbedding,
    StatePositions,
    WorldModel,
    repeat_state,
)

REDUCTIONS = ("last", "mean")


def _check(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r}; expected one of {choices}")


def push_shaping(
    tool: torch.Tensor,
    obj: torch.Tensor,
    goal: torch.Tensor,
    behind: float,
    near_weight: float = 0.5,
) -> torch.Tensor:
    """The push task's cost, ``(N,)`` from positions ``(N, 2)`` (goal ``(2,)``), in their
    units: the object's distance to its goal plus ``near_weight`` times the pusher's distance
    to the spot ``behind`` units behind the object on the line from the goal through it (where
    a push toward the goal starts). A final-distance cost alone does not see that going round
    the object pays off within a short horizon; this one does, at every step."""
    away = goal - obj
    unit = away / away.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    start = obj - behind * unit
    return away.norm(dim=-1) + near_weight * (tool - start).norm(dim=-1)


class ModelRolloutCost:
    """Roll ``model`` out from the state after ``context`` (B=1) under N sampled sequences,
    in chunks of ``chunk`` samples, each action held for ``repeat`` model steps, and sum
    ``step_cost(state) -> (N,)`` over the steps ``reduce`` selects ("last": the final step
    only, DINO-WM's choice; "mean": every planner step)."""

    def __init__(
        self,
        model: WorldModel,
        context: torch.Tensor,
        *,
        reduce: str = "last",
        chunk: int | None = None,
        repeat: int = 1,
    ) -> None:
        _check("reduce", reduce, REDUCTIONS)
        if repeat < 1:
            raise ValueError(f"repeat={repeat}; expected >= 1 model steps per action")
        self.repeat = repeat
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
                for _ in range(self.repeat):
                    state = self.model.step(state, part.at(t))
                if self.reduce == "mean" or t == horizon - 1:
                    total = total + self.step_cost(state)
            out.append(total / (horizon if self.reduce == "mean" else 1))
        return torch.cat(out)


class MeanCost:
    """The mean of several costs of the same candidates, e.g. one per model of an ensemble
    (PETS): a candidate scores well only where every model expects it to, so a plan that
    works through one model's mistakes is not chosen."""

    def __init__(self, costs: list[Callable[[Actions], torch.Tensor]]) -> None:
        if not costs:
            raise ValueError("MeanCost of no costs; expected at least one")
        self.costs = list(costs)

    def __call__(self, actions: Actions) -> torch.Tensor:
        return torch.stack([cost(actions) for cost in self.costs]).mean(dim=0)


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
        repeat: int = 1,
    ) -> None:
        _check("space", space, ("pixels", "state"))
        super().__init__(model, context, reduce=reduce, chunk=chunk, repeat=repeat)
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


class PushCost(ModelRolloutCost):
    """:func:`push_shaping` on the model's parts (pixels; ``behind_px`` pixels behind the
    object). The object is the part the goal image moves most (a goal image shows the scene
    at the episode's start with the object at its goal), its goal where the goal image has it;
    the pusher is the part that ``probes`` random actions move most in one step (the end
    effector: the arm's far end sweeps furthest). Both are read at an episode's start; later
    replans pass them back as ``parts=(object, pusher)`` (the arm has moved away from where
    the goal image shows it by then). ``to_goal_px``: the object's distance to its goal as the
    model reads it now (a 0-d tensor: read back only when a controller asks)."""

    def __init__(
        self,
        model: WorldModel,
        context: torch.Tensor,
        goal: torch.Tensor,
        *,
        behind_px: float = 5.0,
        near_weight: float = 0.5,
        reduce: str = "last",
        chunk: int | None = None,
        repeat: int = 1,
        probes: int = 64,
        seed: int = 0,
        parts: tuple[int, int] | None = None,
    ) -> None:
        if not isinstance(model, StatePositions):
            raise ValueError(
                f"{type(model).__name__} has no state_positions_px(state): the push cost needs "
                "a model with explicit part positions (keypoints); use cost=goal"
            )
        super().__init__(model, context, reduce=reduce, chunk=chunk, repeat=repeat)
        self.behind, self.near_weight = behind_px, near_weight
        with torch.no_grad():
            now = model.state_positions_px(self.state)[0]
            target = to_float_frames(goal)[None, None].to(context.device)
            goal_state = model.encode(target)
            there = model.state_positions_px(goal_state)[0]
            if parts is None:
                parts = self._read_parts(now, there, goal_state, probes, seed)
            self.object, self.pusher = parts
            self.goal = there[self.object]
            self.to_goal_px = (now[self.object] - self.goal).norm()

    def _read_parts(
        self,
        now: torch.Tensor,
        there: torch.Tensor,
        goal_state: Any,
        probes: int,
        seed: int,
    ) -> tuple[int, int]:
        """(object, pusher): the part the goal image moves most, and the part ``probes``
        random actions move most in one step, from part positions ``now`` and ``there``."""
        model, device = self.model, now.device
        # parts a model reads as absent (keypoint presence) are neither object nor pusher
        absent = torch.zeros(len(now), dtype=torch.bool, device=device)
        present = model.present_parts(self.state) if isinstance(model, PartPresence) else None
        if present is not None:
            absent = (present[0] * model.present_parts(goal_state)[0]) == 0
        obj = int((there - now).norm(dim=-1).masked_fill(absent, -1.0).argmax())
        spec = model.action_spec
        g = torch.Generator().manual_seed(seed)
        cont = None
        if spec.continuous:
            cont = torch.randn(probes, spec.continuous, generator=g)
            cont = cont * spec.continuous_bound / 3  # the bound is ~3 std of the actions
        disc = torch.randint(spec.discrete, (probes,), generator=g) if spec.discrete else None
        probe = Actions(
            None if cont is None else cont.to(device),
            None if disc is None else disc.to(device),
        )
        start = repeat_state(self.state, probes)
        moved = model.state_positions_px(model.step(start, probe))
        sweep = (moved - model.state_positions_px(start)).norm(dim=-1).mean(dim=0)
        sweep[obj] = -1.0
        sweep = sweep.masked_fill(absent, -1.0)
        return obj, int(sweep.argmax())

    def step_cost(self, state: Any) -> torch.Tensor:
        pos = self.model.state_positions_px(state)
        return push_shaping(
            pos[:, self.pusher], pos[:, self.object], self.goal, self.behind, self.near_weight
        )
