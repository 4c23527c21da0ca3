"""The true simulator behind the ``WorldModel`` protocol: the upper bound for planners and the
exactness check of the counterfactual harness.

It cannot read a state from pixels, so it is told the true start state (``set_start``) and
``encode`` returns that state whatever the frames; its actions are the env's own (3 numbers in
[-1, 1]). It steps a private twin of the env (``make_env()`` must build the same env as the one
being controlled), restoring the full state before every transition, so branches never leak.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from latentplay.envs.arm import ArmEnv, ArmState
from latentplay.utils.frames import to_float_frames, to_tensor_frames
from latentplay.world_models.protocol import Actions, ActionSpec, rollout


@dataclass
class SimState:
    """A batch of full env states (and their frames once rendered)."""

    states: list[ArmState]
    frames: torch.Tensor | None = None  # (B, 3, H, W) float in [0, 1]

    def repeat_batch(self, n: int) -> SimState:
        if len(self.states) != 1:
            raise ValueError(f"repeat a batch of 1 state, not {len(self.states)}")
        frames = None if self.frames is None else self.frames.expand(n, -1, -1, -1)
        return SimState(self.states * n, frames)


class SimulatorModel:
    """MuJoCo as a "world model" whose actions are env actions."""

    name = "simulator"
    action_spec = ActionSpec(continuous=3, continuous_bound=1.0)

    def __init__(self, make_env: Callable[[], ArmEnv], device: str | torch.device = "cpu") -> None:
        self.env = make_env()
        self.env.obs_type = "state"  # stepping never renders; decode() renders on demand
        self.device = torch.device(device)
        self._start: ArmState | None = None

    def set_start(self, state: ArmState) -> None:
        """The true state the next ``encode`` starts from."""
        self._start = state

    def encode(self, frames: torch.Tensor) -> SimState:
        if self._start is None:
            raise RuntimeError("SimulatorModel needs set_start(true_state) before encode()")
        return SimState([self._start] * int(frames.shape[0]))

    def infer_actions(self, frames: torch.Tensor) -> Actions:
        raise NotImplementedError("the simulator does not parse videos: give it env actions")

    def step(self, state: SimState, actions: Actions) -> SimState:
        a = actions.continuous.detach().cpu().numpy()
        if a.shape != (len(state.states), 3):
            raise ValueError(f"actions of shape {a.shape}; expected ({len(state.states)}, 3)")
        out = []
        for s, act in zip(state.states, a, strict=True):
            self.env.set_state(s)
            self.env.advance(act)
            out.append(self.env.get_state())
        return SimState(out)

    def decode(self, state: SimState) -> torch.Tensor:
        if state.frames is None:
            frames = np.stack([self.env.render_state(s) for s in state.states])
            state.frames = to_float_frames(to_tensor_frames(frames))
        return state.frames.to(self.device)

    def rollout(self, context: torch.Tensor, actions: Actions) -> torch.Tensor:
        return rollout(self, context, actions)

    def ground_truth(self, state: SimState, key: str) -> np.ndarray:
        """``env.ground_truth()[key]`` for each state of the batch, stacked."""
        out = []
        for s in state.states:
            self.env.set_state(s)
            out.append(self.env.ground_truth()[key])
        return np.stack(out)
