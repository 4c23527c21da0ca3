"""Drive a sparse-flow (YODA-style) model the way the arm is driven: one poke per step, at the
end effector's pixel, with the end effector's pixel motion.

A sparse-flow model's own actions are ``k`` pixels with vectors anywhere in the frame; a robot
can only move its end effector. :class:`EndEffectorPoke` narrows the model to that: its action
is the 2-D motion of the end effector in normalized image units (as GLASS's global shift: one
unit is half the frame), so the planners and :func:`~latentplay.agents.grounding.
analytic_grounding` serve it unchanged. Where the end effector is comes from the agent's own
arm (its state through the calibrated camera) when planning starts (``set_start``), and then
moves with the pokes. This is control-time knowledge of the robot's own body; the model
itself learned from frames only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from latentplay.agents.grounding import camera_jacobian
from latentplay.envs.arm import EE_STEP, ArmEnv, ArmState
from latentplay.world_models.protocol import Actions, ActionSpec, rollout


@dataclass
class EndEffectorState:
    inner: Any  # the wrapped model's state
    ee_px: torch.Tensor  # (B, 2) end-effector pixel (x, y)


class EndEffectorPoke:
    name = "yoda-ee"

    def __init__(self, model: Any, env: ArmEnv, sample_steps: int | None = None) -> None:
        if not hasattr(model, "step_control"):
            raise ValueError(f"{type(model).__name__} takes no sparse-flow controls")
        self.model, self.env = model, env
        model.set_sampler(sample_steps)
        self.half = model.image_size / 2.0
        jac = camera_jacobian(env)  # pixels per metre, as the analytic grounding reads it
        step_px = float(np.abs(jac).sum(axis=0).max() * EE_STEP)
        self.action_spec = ActionSpec(continuous=2, continuous_bound=float(step_px / self.half))
        self.ee_px: torch.Tensor | None = None

    def set_start(self, state: ArmState) -> None:
        """Where the end effector is now (the arm's own state, through the camera)."""
        saved = self.env.get_state()
        self.env.set_state(state)
        self.ee_px = torch.as_tensor(self.env.ground_truth()["ee_pixel"], dtype=torch.float32)
        self.env.set_state(saved)

    def encode(self, frames: torch.Tensor) -> EndEffectorState:
        if self.ee_px is None:
            raise RuntimeError("EndEffectorPoke.encode() before set_start(state)")
        inner = self.model.encode(frames)
        b = frames.shape[0]
        return EndEffectorState(inner, self.ee_px.to(frames.device).expand(b, 2).clone())

    def infer_actions(self, frames: torch.Tensor) -> Actions:
        raise NotImplementedError(
            "end-effector pokes cannot be parsed from frames alone (where the end effector is "
            "is not in them); ground them analytically (grounding.labels=[0])"
        )

    def step(self, state: EndEffectorState, actions: Actions) -> EndEffectorState:
        if actions.continuous is None or actions.continuous.shape[-1] != 2:
            raise ValueError("end-effector pokes are (B, 2) continuous actions")
        vec = actions.continuous.to(state.ee_px.device) * self.half  # pixels
        # camera pixels have their centres at c + 0.5; the model's controls are pixel indices
        control = self.model.control_map(state.ee_px[:, None] - 0.5, vec[:, None])
        inner = self.model.step_control(state.inner, control)
        return EndEffectorState(inner, state.ee_px + vec)

    def decode(self, state: EndEffectorState) -> torch.Tensor:
        return self.model.decode(state.inner)

    def rollout(self, context: torch.Tensor, actions: Actions) -> torch.Tensor:
        return rollout(self, context, actions)
