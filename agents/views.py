"""Views of a world model that planners and the counterfactual harness drive, behind one
:func:`model_view`. A view wraps a model and never changes it.

- ``full``: the model itself.
- ``global``: GLASS's global motion analysis alone (:class:`~latentplay.world_models.glass.
  global_model.GlassGlobal`): global shifts, ~100x cheaper steps than the full model.
- ``ee_poke``: a sparse-flow (YODA-style) model driven the way the arm is driven
  (:class:`EndEffectorPoke`): one poke per step at the end effector's pixel, with the end
  effector's pixel motion.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from latentplay.agents.grounding import camera_jacobian
from latentplay.envs.arm import EE_STEP, ArmEnv, ArmState
from latentplay.world_models.checkpoint import load_model
from latentplay.world_models.compiling import use_imagination
from latentplay.world_models.glass import Glass
from latentplay.world_models.glass.global_model import GlassGlobal
from latentplay.world_models.protocol import (
    Actions,
    ActionSpec,
    Calibrated,
    Sampling,
    SparseFlowControl,
    WorldModel,
    rollout,
)

VIEWS = ("full", "global", "ee_poke")
# calibrations plans imagine without: rest_px, still objects' dead zone, hides a gentle push's
# first steps from the cost
PLAN_WITHOUT = ("rest_px",)


@dataclass
class EndEffectorState:
    inner: Any  # the wrapped model's state
    ee_px: torch.Tensor  # (B, 2) end-effector pixel (x, y)


class EndEffectorPoke:
    """A sparse-flow model narrowed to what a robot can do: move its end effector.

    The model's own actions are ``k`` pixels with vectors anywhere in the frame; this view's
    action is the 2-D motion of the end effector in normalized image units (as GLASS's global
    shift: one unit is half the frame), so the planners and the analytic grounding serve it
    unchanged. Where the end effector is comes from the agent's own arm (its state through the
    calibrated camera) when planning starts (:meth:`set_start`), and then moves with the pokes:
    control-time knowledge of the robot's own body; the model itself learned from frames only.
    ``sample_steps``: ODE steps per generated frame (None: the model's own).
    """

    name = "yoda-ee"

    def __init__(
        self, model: SparseFlowControl, env: ArmEnv, sample_steps: int | None = None
    ) -> None:
        if not isinstance(model, SparseFlowControl):
            raise ValueError(
                f"{type(model).__name__} takes no sparse-flow controls; model_view=ee_poke needs "
                "a sparse-flow model (model=yoda)"
            )
        if sample_steps is not None and int(sample_steps) < 1:
            raise ValueError(f"sample_steps={sample_steps}; expected >= 1 ODE step")
        self.model, self.env = model, env
        self.image_size = model.image_size
        self.sample_steps = None if sample_steps is None else int(sample_steps)
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
        inner = self.model.step_control(state.inner, control, self.sample_steps)
        return EndEffectorState(inner, state.ee_px + vec)

    def decode(self, state: EndEffectorState) -> torch.Tensor:
        return self.model.decode(state.inner)

    def rollout(self, context: torch.Tensor, actions: Actions) -> torch.Tensor:
        return rollout(self, context, actions)


def default_view(model: WorldModel) -> str:
    """The view that acts through the arm: ``ee_poke`` for a sparse-flow model, else ``full``."""
    return "ee_poke" if isinstance(model, SparseFlowControl) else "full"


def model_view(
    model: WorldModel,
    view: str,
    env: ArmEnv | None = None,
    sample_steps: int | None = None,
) -> WorldModel:
    """The world model that ``view`` (one of :data:`VIEWS`) makes of ``model``; ``env``: the
    arm env an ``ee_poke`` view follows; ``sample_steps``: ODE steps per frame of an ``ee_poke``
    view (None: the model's). The model itself is never changed."""
    if view not in VIEWS:
        raise ValueError(
            f"model_view={view!r}; expected 'full', 'global' (GLASS) or 'ee_poke' (YODA)"
        )
    if sample_steps is not None and not isinstance(model, Sampling):
        raise ValueError(
            f"sample_steps={sample_steps}: a {type(model).__name__} "
            "model does not sample its frames; leave sample_steps=null"
        )
    if sample_steps is not None and view != "ee_poke":
        raise ValueError(
            f"sample_steps={sample_steps} sets the ODE steps of model_view=ee_poke; with "
            f"model_view={view} leave it null"
        )
    if view == "full":
        return model
    if view == "global":
        if not isinstance(model, Glass):
            raise ValueError(
                f"model_view=global is GLASS's global motion analysis; a "
                f"{type(model).__name__} has none: use model_view=full or ee_poke"
            )
        return GlassGlobal(model)
    if env is None:
        raise ValueError("model_view=ee_poke follows an arm: pass the env it acts in")
    return EndEffectorPoke(model, env, sample_steps)


def without_calibrations(model: Any, names: list[str] | tuple[str, ...]) -> list[str]:
    """Turn the calibrations ``names`` off in ``model`` and return them: a :class:`Calibrated`
    model's (a name it does not calibrate is an error); a model without calibrations has
    none to turn off."""
    if not isinstance(model, Calibrated):
        return []
    names = list(dict.fromkeys(names))  # once each, in order
    unknown = sorted(set(names) - set(model.calibrations))
    if unknown:
        raise ValueError(
            f"calibrations_off={unknown}: {type(model).__name__} calibrates "
            f"{list(model.calibrations)}"
        )
    for name in names:
        model.calibration_off(name)
    return names


def load_for_planning(
    name: str,
    view: str,
    env: ArmEnv | None,
    *,
    sample_steps: int | None = None,
    calibrations_off: list[str] | tuple[str, ...] = PLAN_WITHOUT,
    imagination: str = "eager",
    device: str | torch.device = "cpu",
) -> tuple[Any, dict[str, Any], list[str], bool]:
    """A checkpoint or shipped model as plans imagine it: loaded on ``device``, its
    ``calibrations_off`` turned off, its steps compiled or eager (``imagination``:
    :func:`~latentplay.world_models.compiling.use_imagination`), seen through ``view`` in
    ``env``. Returns the view, the checkpoint, the calibrations turned off and whether its
    steps were compiled."""
    model, ckpt = load_model(name, device)
    turned_off = without_calibrations(model, calibrations_off)
    compiled = use_imagination(model, imagination, device)
    return model_view(model, view, env, sample_steps), ckpt, turned_off, compiled
