"""The contract every world model implements; planners, grounding and evaluation use only this.

Frames are ``(B, T, 3, H, W)``, uint8 in [0, 255] or float in [0, 1]; decoded frames are float in
[0, 1]. A model's state is opaque to callers and passed explicitly (DreamerV3 style), so a
rollout can branch from any state without touching the model.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass, replace
from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch


@dataclass(frozen=True)
class ActionSpec:
    """The learned action space.

    ``continuous``: dimension of the continuous part (GLASS: 2, the global image shift in
    normalized grid units, +x right, +y down; one unit is half the frame's width/height);
    ``continuous_bound``: the magnitude a planner should sample within;
    ``discrete``: number of discrete local actions (GLASS: K codes), 0 for none;
    ``sparse_points``: number of sparse flow points (YODA), 0 for none.
    """

    continuous: int = 0
    continuous_bound: float = 1.0
    discrete: int = 0
    sparse_points: int = 0


class Actions(NamedTuple):
    """Learned actions. Sequences: ``continuous (B, T, C) float``, ``discrete (B, T) long``;
    one step: ``(B, C)`` and ``(B,)``. A part the spec does not have is None."""

    continuous: torch.Tensor | None = None
    discrete: torch.Tensor | None = None

    def at(self, t: int) -> Actions:
        """The actions of step t of a sequence."""
        return Actions(
            None if self.continuous is None else self.continuous[:, t],
            None if self.discrete is None else self.discrete[:, t],
        )

    def __len__(self) -> int:  # number of steps of a sequence
        ref = self.continuous if self.continuous is not None else self.discrete
        return 0 if ref is None else int(ref.shape[1])


@runtime_checkable
class WorldModel(Protocol):
    action_spec: ActionSpec

    def encode(self, frames: torch.Tensor) -> Any:
        """Context frames ``(B, T, 3, H, W)`` -> state after the last one."""

    def infer_actions(self, frames: torch.Tensor) -> Actions:
        """Sequence parsing: the learned actions between consecutive frames ``(B, T-1, ...)``."""

    def step(self, state: Any, actions: Actions) -> Any:
        """One transition under one step of learned actions (batched over B)."""

    def decode(self, state: Any) -> torch.Tensor:
        """State -> frame ``(B, 3, H, W)`` float in [0, 1]."""

    def rollout(self, context: torch.Tensor, actions: Actions) -> torch.Tensor:
        """Encode ``context``, step through ``actions``, decode: ``(B, T_actions, 3, H, W)``."""


def check_actions(spec: ActionSpec, actions: Actions, batch: int | None = None) -> None:
    """Raise ``ValueError`` naming the part for one step of actions that does not fit ``spec``:
    wrong shape, NaN/inf, or a discrete id outside ``[0, spec.discrete)``."""
    c, d = actions.continuous, actions.discrete
    if spec.continuous:
        if c is None or c.ndim != 2 or c.shape[1] != spec.continuous:
            got = None if c is None else tuple(c.shape)
            raise ValueError(f"continuous actions of shape {got}; expected (B, {spec.continuous})")
        if not torch.isfinite(c).all():
            raise ValueError("continuous actions hold NaN or inf; expected finite values")
    if spec.discrete:
        if d is None or d.ndim != 1:
            got = None if d is None else tuple(d.shape)
            raise ValueError(f"discrete actions of shape {got}; expected (B,) ids")
        if d.is_floating_point() and not torch.equal(d, d.round()):
            frac = d[d != d.round()]
            raise ValueError(
                f"discrete actions must be whole ids; got {len(frac)} fractional, e.g. "
                f"{frac[:5].tolist()}"
            )
        if len(d) and (int(d.min()) < 0 or int(d.max()) >= spec.discrete):
            raise ValueError(
                f"discrete action ids in [{int(d.min())}, {int(d.max())}]; expected ids in "
                f"[0, {spec.discrete})"
            )
    sizes = {len(x) for x in (c, d) if x is not None}
    if batch is not None:
        sizes.add(batch)
    if len(sizes) > 1:
        raise ValueError(f"action parts and state disagree on the batch size: {sorted(sizes)}")


def to_float_frames(frames: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] or float [0, 1] frames -> float32 in [0, 1]."""
    if frames.dtype == torch.uint8:
        return frames.float().div_(255.0)
    if not frames.is_floating_point():
        raise TypeError(f"frames of dtype {frames.dtype}; expected uint8 or float in [0, 1]")
    return frames.float()


def repeat_state(state: Any, n: int) -> Any:
    """A model state of batch 1 repeated to batch ``n`` (tensors, and lists, tuples, dicts and
    dataclasses of them, are walked; other values are shared; a state with its own
    ``repeat_batch(n)`` method decides for itself). Branching many rollouts from one state:
    ``model.step(repeat_state(state, n), actions)``."""
    if hasattr(state, "repeat_batch"):
        return state.repeat_batch(n)
    if isinstance(state, torch.Tensor):
        if state.shape[:1] != (1,):
            raise ValueError(f"state tensor of shape {tuple(state.shape)}; expected batch 1")
        return state.expand(n, *state.shape[1:])
    if isinstance(state, tuple) and hasattr(state, "_fields"):  # NamedTuple
        return type(state)(*(repeat_state(s, n) for s in state))
    if isinstance(state, list | tuple):
        return type(state)(repeat_state(s, n) for s in state)
    if isinstance(state, dict):
        return {k: repeat_state(v, n) for k, v in state.items()}
    if is_dataclass(state) and not isinstance(state, type):
        return replace(
            state, **{f.name: repeat_state(getattr(state, f.name), n) for f in fields(state)}
        )
    return state


def rollout(model: WorldModel, context: torch.Tensor, actions: Actions) -> torch.Tensor:
    """The protocol's ``rollout`` from its other methods: encode ``context``, step through
    ``actions``, decode each state -> ``(B, T_actions, 3, H, W)``."""
    state = model.encode(context)
    frames = []
    for t in range(len(actions)):
        state = model.step(state, actions.at(t))
        frames.append(model.decode(state))
    return torch.stack(frames, dim=1)
