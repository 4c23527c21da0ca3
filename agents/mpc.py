"""Receding-horizon control in the real env: plan, execute the first actions, observe, replan.

Controllers turn (frames so far, true state) into env actions; only the oracle reads the true
state. :func:`run_episode` scores success the way the tasks define it: the end effector
(Reach) or the task's object (Push) within ``SUCCESS_M[task]`` metres of the goal at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from latentplay.agents.grounding import Grounding
from latentplay.agents.planners import SamplingPlanner
from latentplay.agents.planners.costs import (
    GoalImageCost,
    MeanCost,
    ModelRolloutCost,
    PushCost,
    push_shaping,
)
from latentplay.agents.simulator import SimulatorModel
from latentplay.agents.state_grounding import StateGrounding
from latentplay.envs.arm import OBJECT_HALF_HEIGHT, ArmEnv, ArmState
from latentplay.utils.frames import to_tensor_frames
from latentplay.world_models.protocol import Actions, StartState, WorldModel

SUCCESS_M = {"reach": 0.02, "push": 0.03}  # end effector (Reach) or the object (Push) to goal
COSTS = ("goal", "push")  # goal: to the goal image; push: push_shaping on part positions


class Controller(Protocol):
    def reset(self, env: ArmEnv) -> None: ...

    def act(self, frames: list[np.ndarray], state: ArmState) -> np.ndarray:
        """-> env actions (k, 3) to execute before asking again."""


def goal_distance(env: ArmEnv) -> float:
    """Metres between the goal and the end effector (reach) or the task's object (push: slot
    0, unless the scene's object set left it empty)."""
    gt = env.ground_truth()
    pos = gt["ee_pos"][:2] if env.task == "reach" else gt["object_pos"][env.target_object(), :2]
    return float(np.linalg.norm(pos - gt["goal"]))


@dataclass
class EpisodeResult:
    success: bool
    final_distance_m: float
    start_distance_m: float
    # the nearest the goal came at any step, and whether that was within the success radius:
    # tells a plan that got there and left (pushed past) from one that never arrived
    closest_distance_m: float
    reached: bool
    steps: int
    replan_ms: list[float] = field(default_factory=list)


def run_episode(
    env: ArmEnv, controller: Controller, seed: int, max_steps: int = 50
) -> EpisodeResult:
    """One episode from ``env.reset(seed=seed)``; the env must render pixels."""
    obs, _ = env.reset(seed=seed)
    controller.reset(env)
    frames, start, steps, replan_ms = [obs], goal_distance(env), 0, []
    final = closest = start
    while steps < max_steps:
        t0 = time.perf_counter()
        actions = np.atleast_2d(controller.act(frames, env.get_state()))
        replan_ms.append(1e3 * (time.perf_counter() - t0))
        for a in actions[: max_steps - steps]:
            obs, *_ = env.step(a)
            frames.append(obs)
            steps += 1
            final = goal_distance(env)
            closest = min(closest, final)
    radius = SUCCESS_M[env.task]
    return EpisodeResult(final < radius, final, start, closest, closest < radius, steps, replan_ms)


class RandomController:
    """Uniform random env actions (the lower baseline)."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def reset(self, env: ArmEnv) -> None:
        pass

    def act(self, frames: list[np.ndarray], state: ArmState) -> np.ndarray:
        return self.rng.uniform(-1, 1, (1, 3))


def _check_plan_args(cost: str, repeat: int, execute: int, settle_px: float = 0.0) -> None:
    if cost not in COSTS:
        raise ValueError(f"cost={cost!r}; expected one of {COSTS}")
    if repeat < 1 or execute < 1:
        raise ValueError(f"repeat={repeat}, execute={execute}; expected each >= 1")
    if settle_px < 0 or (settle_px > 0 and cost != "push"):
        raise ValueError(
            f"settle_px={settle_px} with cost={cost}; expected 0, or >= 0 pixels with cost=push"
        )


class Settle:
    """Leave a pushed object where it is once it is at its goal. While ``within`` (the object
    read within the settle radius at a replan), the arm stops: first the last command is
    taken back (its negation, as long, the paddle's turn left alone), then it holds still.
    Holding still alone is not enough: the arm's controller target runs up to 3 cm ahead of
    an arm that pushes, so a paused arm goes on pushing. The plan is made all the same (its
    warm start stays current should the object leave the radius)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.last: np.ndarray | None = None
        self.settled = False

    def __call__(self, actions: np.ndarray, within: bool) -> np.ndarray:
        if not within:
            self.settled, self.last = False, actions.copy()
            return actions
        out = np.zeros_like(actions)
        if not self.settled and self.last is not None:
            out = -self.last
            out[:, 2] = 0.0
        self.settled, self.last = True, None
        return out


class OracleController:
    """The planner with the true simulator as its model (the upper bound): env actions, each
    held ``repeat`` env steps, cost from true positions at the last step. ``cost="goal"``: the
    env's own reward terms (distance to the goal; for Push plus half the end-effector-to-object
    distance); ``cost="push"``: :func:`push_shaping` on the true table-plane positions of the
    end effector, object 0 and the goal, ``behind_px`` converted to metres at the objects'
    height (the learned models' push cost, on the truth); ``settle_px`` (> 0) likewise, the
    radius within which the object is left at its goal (:class:`Settle`)."""

    def __init__(
        self,
        make_env: Callable[[], ArmEnv],
        planner: SamplingPlanner,
        execute: int = 1,
        *,
        repeat: int = 1,
        cost: str = "goal",
        behind_px: float = 5.0,
        settle_px: float = 0.0,
    ) -> None:
        _check_plan_args(cost, repeat, execute, settle_px)
        self.sim, self.planner, self.execute = SimulatorModel(make_env), planner, execute
        self.repeat, self.cost_kind, self.behind_px = repeat, cost, behind_px
        self.settle_px, self.settle = settle_px, Settle()

    def reset(self, env: ArmEnv) -> None:
        self.planner.reset()
        self.settle.reset()
        self.task = env.task
        z = OBJECT_HALF_HEIGHT  # pixels per metre on the plane of the objects' centres
        ends = env.camera.world_to_pixel(np.array([[0.0, 0.0, z], [0.1, 0.0, z]]))
        px_per_m = float(np.linalg.norm(ends[1] - ends[0]) / 0.1)
        self.behind_m, self.settle_m = self.behind_px / px_per_m, self.settle_px / px_per_m

    def _score(self, env: ArmEnv, info: dict) -> float:
        if self.cost_kind == "goal" or self.task != "push":
            return -info["reward_dist"] - info.get("reward_near", 0.0)
        ee = torch.as_tensor(info["ee_pos"][:2])
        obj = torch.as_tensor(info["object_pos"][env.target_object(), :2])
        goal = torch.as_tensor(info["goal"])
        return float(push_shaping(ee[None], obj[None], goal, self.behind_m)[0])

    def _cost(self, state: ArmState) -> Callable[[Actions], torch.Tensor]:
        env = self.sim.env

        def cost(actions: Actions) -> torch.Tensor:
            a = actions.continuous.detach().cpu().numpy()
            out = np.empty(len(a))
            for i, seq in enumerate(a):  # one restore per sample, then its steps in order
                env.set_state(state)
                steps = np.repeat(seq, self.repeat, axis=0)
                for act in steps[:-1]:
                    env.advance(act)  # only the last step's info is scored
                out[i] = self._score(env, env.step(steps[-1])[-1])
            return torch.from_numpy(out).float()

        return cost

    def act(self, frames: list[np.ndarray], state: ArmState) -> np.ndarray:
        plan = self.planner.plan(self._cost(state), executed=self.execute)
        out = np.repeat(plan.actions.continuous[0, : self.execute].cpu().numpy(), self.repeat, 0)
        if not self.settle_px:
            return out
        env = self.sim.env  # the object's true distance to its goal now
        env.set_state(state)
        return self.settle(out, goal_distance(env) < self.settle_m)


class ModelController:
    """The planner over a learned model's actions, toward a goal image; the first ``execute``
    planned actions go to the env through ``grounding``, each held ``repeat`` env steps (as
    the model held it in planning; a :class:`StateGrounding`'s model plans env actions, which
    go as they are). ``context``: frames each replan reads (2: the model sees how things
    move). ``cost="goal"``: :class:`GoalImageCost` in ``space``;
    ``"push"``: :class:`PushCost` on the model's part positions. ``members``: more models of
    the same action space (env actions, each through its own grounding) that score every
    candidate too; the plan minimizes the mean of all their costs (:class:`MeanCost`).
    ``settle_px`` (> 0, push cost): the object read within this many pixels of its goal (the
    models' mean reading) is left there (:class:`Settle`)."""

    def __init__(
        self,
        model: WorldModel,
        planner: SamplingPlanner,
        grounding: Grounding | StateGrounding,
        *,
        members: list[WorldModel] | tuple[WorldModel, ...] = (),
        space: str = "pixels",
        context: int = 1,
        execute: int = 1,
        chunk: int | None = None,
        repeat: int = 1,
        cost: str = "goal",
        behind_px: float = 5.0,
        settle_px: float = 0.0,
        device: str | torch.device = "cpu",
    ) -> None:
        _check_plan_args(cost, repeat, execute, settle_px)
        if context < 1:
            raise ValueError(f"context={context}; expected >= 1 frame per replan")
        for m in members:
            if m.action_spec != model.action_spec:
                raise ValueError(
                    f"ensemble member {m.name} plans {m.action_spec}; expected the action space"
                    f" of {model.name}, {model.action_spec} (ensembles plan env actions: "
                    "grounding.kind=rollout)"
                )
        if members and not isinstance(grounding, StateGrounding):
            raise ValueError(
                "an ensemble plans env actions, each model through its own state grounding: "
                "grounding.kind=rollout"
            )
        self.planner, self.grounding = planner, grounding
        self.models = [model, *members]  # the plan's model first
        self.space, self.context, self.execute, self.chunk = space, context, execute, chunk
        self.repeat, self.cost_kind, self.behind_px = repeat, cost, behind_px
        self.settle_px, self.settle = settle_px, Settle()
        self.device = torch.device(device)

    def reset(self, env: ArmEnv) -> None:
        self.planner.reset()
        self.settle.reset()
        self.goal = to_tensor_frames(env.render_goal(), self.device)
        # the push cost's parts, each model's own, read at the first replan
        self.parts: list[tuple[int, int] | None] = [None] * len(self.models)

    def _cost(self, i: int, x: torch.Tensor) -> ModelRolloutCost:
        model = self.models[i]
        if self.cost_kind == "push":
            push = PushCost(
                model,
                x,
                self.goal,
                behind_px=self.behind_px,
                chunk=self.chunk,
                repeat=self.repeat,
                parts=self.parts[i],
            )
            self.parts[i] = (push.object, push.pusher)
            return push
        return GoalImageCost(
            model, x, self.goal, space=self.space, chunk=self.chunk, repeat=self.repeat
        )

    def act(self, frames: list[np.ndarray], state: ArmState) -> np.ndarray:
        ctx = np.stack(frames[-self.context :])
        x = to_tensor_frames(ctx, self.device)[None]
        for model in self.models:
            if isinstance(model, StartState):  # e.g. the end-effector view: the arm's pose
                model.set_start(state)
        costs = [self._cost(i, x) for i in range(len(self.models))]
        cost = costs[0] if len(costs) == 1 else MeanCost(costs)
        plan = self.planner.plan(cost, executed=self.execute)
        first = Actions(*(None if a is None else a[0, : self.execute] for a in plan.actions))
        out = np.repeat(self.grounding.to_env(first).cpu().numpy(), self.repeat, 0)
        if not self.settle_px:
            return out
        read = float(torch.stack([c.to_goal_px for c in costs]).mean())  # settle_px: PushCosts
        return self.settle(out, read < self.settle_px)
