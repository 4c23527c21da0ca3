"""Receding-horizon control in the real env: plan, execute the first actions, observe, replan.

Controllers turn (frames so far, true state) into env actions; only the oracle reads the true
state. :func:`run_episode` scores success the way the tasks define it: the end effector
(Reach) or object 0 (Push) within ``SUCCESS_M[task]`` metres of the goal at the end.
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
from latentplay.agents.planners.costs import GoalImageCost
from latentplay.agents.simulator import SimulatorModel
from latentplay.envs.arm import ArmEnv, ArmState
from latentplay.utils.frames import to_tensor_frames
from latentplay.world_models.protocol import Actions, StartState, WorldModel

SUCCESS_M = {"reach": 0.02, "push": 0.03}  # end effector (Reach) or object 0 (Push) to goal


class Controller(Protocol):
    def reset(self, env: ArmEnv) -> None: ...

    def act(self, frames: list[np.ndarray], state: ArmState) -> np.ndarray:
        """-> env actions (k, 3) to execute before asking again."""


def goal_distance(env: ArmEnv) -> float:
    """Metres between the goal and the end effector (reach) or object 0 (push)."""
    gt = env.ground_truth()
    pos = gt["ee_pos"][:2] if env.task == "reach" else gt["object_pos"][0, :2]
    return float(np.linalg.norm(pos - gt["goal"]))


@dataclass
class EpisodeResult:
    success: bool
    final_distance_m: float
    start_distance_m: float
    steps: int
    replan_ms: list[float] = field(default_factory=list)


def run_episode(
    env: ArmEnv, controller: Controller, seed: int, max_steps: int = 50
) -> EpisodeResult:
    """One episode from ``env.reset(seed=seed)``; the env must render pixels."""
    obs, _ = env.reset(seed=seed)
    controller.reset(env)
    frames, start, steps, replan_ms = [obs], goal_distance(env), 0, []
    while steps < max_steps:
        t0 = time.perf_counter()
        actions = np.atleast_2d(controller.act(frames, env.get_state()))
        replan_ms.append(1e3 * (time.perf_counter() - t0))
        for a in actions[: max_steps - steps]:
            obs, *_ = env.step(a)
            frames.append(obs)
            steps += 1
    final = goal_distance(env)
    return EpisodeResult(final < SUCCESS_M[env.task], final, start, steps, replan_ms)


class RandomController:
    """Uniform random env actions (the lower baseline)."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def reset(self, env: ArmEnv) -> None:
        pass

    def act(self, frames: list[np.ndarray], state: ArmState) -> np.ndarray:
        return self.rng.uniform(-1, 1, (1, 3))


class OracleController:
    """The planner with the true simulator as its model (the upper bound): env actions, cost
    from true positions at the last step: the env's own reward terms (distance to the goal;
    for Push plus half the end-effector-to-object distance)."""

    def __init__(
        self, make_env: Callable[[], ArmEnv], planner: SamplingPlanner, execute: int = 1
    ) -> None:
        self.sim, self.planner, self.execute = SimulatorModel(make_env), planner, execute

    def reset(self, env: ArmEnv) -> None:
        self.planner.reset()
        self.task = env.task

    def _cost(self, state: ArmState) -> Callable[[Actions], torch.Tensor]:
        env = self.sim.env

        def cost(actions: Actions) -> torch.Tensor:
            a = actions.continuous.detach().cpu().numpy()
            out = np.empty(len(a))
            for i, seq in enumerate(a):  # one restore per sample, then its steps in order
                env.set_state(state)
                for act in seq:
                    info = env.step(act)[-1]
                out[i] = -info["reward_dist"] - info.get("reward_near", 0.0)
            return torch.from_numpy(out).float()

        return cost

    def act(self, frames: list[np.ndarray], state: ArmState) -> np.ndarray:
        plan = self.planner.plan(self._cost(state), executed=self.execute)
        return plan.actions.continuous[0, : self.execute].cpu().numpy()


class ModelController:
    """The planner over a learned model's actions, toward a goal image; the first ``execute``
    planned actions go to the env through ``grounding``."""

    def __init__(
        self,
        model: WorldModel,
        planner: SamplingPlanner,
        grounding: Grounding,
        *,
        space: str = "pixels",
        context: int = 1,
        execute: int = 1,
        chunk: int | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.model, self.planner, self.grounding = model, planner, grounding
        self.space, self.context, self.execute, self.chunk = space, context, execute, chunk
        self.device = torch.device(device)

    def reset(self, env: ArmEnv) -> None:
        self.planner.reset()
        self.goal = to_tensor_frames(env.render_goal(), self.device)

    def act(self, frames: list[np.ndarray], state: ArmState) -> np.ndarray:
        ctx = np.stack(frames[-self.context :])
        x = to_tensor_frames(ctx, self.device)[None]
        if isinstance(self.model, StartState):  # e.g. the end-effector view: the arm's pose
            self.model.set_start(state)
        cost = GoalImageCost(self.model, x, self.goal, space=self.space, chunk=self.chunk)
        plan = self.planner.plan(cost, executed=self.execute)
        first = Actions(*(None if a is None else a[0, : self.execute] for a in plan.actions))
        return self.grounding.to_env(first).cpu().numpy()
