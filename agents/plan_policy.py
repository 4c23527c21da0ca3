"""Learned plans as a collection policy: episodes where the planning models take the arm.

A model trained on scripted strokes errs most where plans go (the approach behind an object,
the nudges near the goal), and the planner seeks out exactly those errors. Model-based agents
therefore tune their models on the data their own plans collect (DAgger for system
identification; the data loops of PETS and PlaNet). ``policy=planner`` records such episodes
with the planning set-up of ``scripts/plan.py`` (a model or an ensemble of keypoint models,
each through its saved state grounding); ``scripts/train.py init=<model>`` tunes a model on
them beside its first data.

The planner reads frames only; the env is bound (``bind``) for the goal image the task shows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from latentplay.agents.mpc import ModelController
from latentplay.agents.state_grounding import EnvActionView, load_state_grounding
from latentplay.agents.views import PLAN_WITHOUT, load_for_planning


class PlannerPolicy:
    """``checkpoint`` (a checkpoint or shipped name) plans env actions through its saved
    ``grounding`` (a ``grounding_<N>.pt`` of ``scripts/plan.py`` or a shipped name), scored
    with the ``ensemble`` models (each through its ``ensemble_groundings`` entry) on the mean
    of their costs; ``planner(spec, device=...)`` builds the sampling planner. ``execute``,
    ``repeat``, ``context``, ``cost``, ``behind_px`` and ``settle_px`` as in
    ``scripts/plan.py``. Models load when the policy is bound to its env (once per collection
    worker), on ``device`` with ``threads`` torch threads (1: two workers keep to two cores).
    Each episode's planner noise is seeded from the episode's RNG."""

    name = "planner"

    def __init__(
        self,
        action_space: spaces.Space,
        *,
        checkpoint: str,
        grounding: str,
        planner: Callable[..., Any],
        ensemble: Sequence[str] = (),
        ensemble_groundings: Sequence[str] = (),
        execute: int = 2,
        repeat: int = 2,
        context: int = 2,
        cost: str = "push",
        behind_px: float = 5.0,
        settle_px: float = 0.0,
        calibrations_off: Sequence[str] = PLAN_WITHOUT,
        imagination: str = "auto",
        device: str = "cpu",
        threads: int | None = 1,
    ) -> None:
        if len(ensemble) != len(ensemble_groundings):
            raise ValueError(
                f"ensemble={list(ensemble)} and ensemble_groundings={list(ensemble_groundings)}:"
                " expected one saved grounding per ensemble model"
            )
        if threads is not None and threads < 1:
            raise ValueError(f"threads={threads}; expected >= 1 or null (torch's default)")
        self.models = [(checkpoint, grounding), *zip(ensemble, ensemble_groundings, strict=True)]
        self.planner_factory = planner
        self.plan_args = dict(
            execute=execute,
            repeat=repeat,
            context=context,
            cost=cost,
            behind_px=behind_px,
            settle_px=settle_px,
        )
        self.calibrations_off = list(calibrations_off)
        self.imagination, self.device, self.threads = imagination, torch.device(device), threads
        self.env: Any = None
        self.controller: ModelController | None = None
        self.frames: list[np.ndarray] = []
        self.queue: list[np.ndarray] = []

    def bind(self, env: Any) -> None:
        self.env = env
        if self.controller is not None:
            return
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        views = []
        for name, grounding_name in self.models:
            model, *_ = load_for_planning(
                name,
                "full",
                env,
                calibrations_off=self.calibrations_off,
                imagination=self.imagination,
                device=self.device,
            )
            grounding = load_state_grounding(grounding_name, model, self.device)
            views.append(EnvActionView(model, grounding))
        first = views[0]
        self.controller = ModelController(
            first,
            self.planner_factory(first.action_spec, device=self.device),
            first.grounding,
            members=views[1:],
            device=self.device,
            **self.plan_args,
        )

    def reset(self, rng: np.random.Generator, info: dict[str, Any]) -> None:
        if self.controller is None:
            raise RuntimeError(
                "PlannerPolicy needs its env for the goal image: bind(env) first (collection "
                "does it)"
            )
        self.controller.planner.generator.manual_seed(int(rng.integers(2**62)))
        self.controller.reset(self.env)
        self.frames, self.queue = [], []

    def act(self, obs: Any, info: dict[str, Any]) -> np.ndarray:
        if self.controller is None:
            raise RuntimeError("PlannerPolicy.act() before bind(env) and reset(rng, info)")
        self.frames.append(obs["pixels"])  # collection's envs give pixels and state
        if not self.queue:  # env actions, clipped to the box by the state grounding
            self.queue = list(self.controller.act(self.frames, self.env.get_state()))
        return self.queue.pop(0).astype(np.float32)
