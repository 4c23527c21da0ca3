"""The contract every world model implements; planners, grounding and evaluation use only this.

Frames are ``(B, T, 3, H, W)``, uint8 in [0, 255] or float in [0, 1]; decoded frames are float in
[0, 1]. A model's state is opaque to callers and passed explicitly (DreamerV3 style), so a
rollout can branch from any state without touching the model.

Beside the contract, small runtime-checkable protocols declare what only some models can do
(a frame size, teacher-forced prediction, masks, random actions, a state embedding, keypoints,
a true start state, sampled frames, sparse-flow pokes). Callers ask
``isinstance(model, Capability)``, never ``hasattr`` or a model's name.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
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

    def to(self, device: str | torch.device) -> Actions:
        """The same actions on ``device``."""
        return Actions(*(None if a is None else a.to(device) for a in self))

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


# ---------------------------------------------------------------------------- capabilities
@runtime_checkable
class FixedFrameSize(Protocol):
    """Takes square frames of one size: ``image_size`` pixels a side."""

    image_size: int


@runtime_checkable
class TeacherForcing(Protocol):
    def teacher_forced(self, frames: torch.Tensor) -> torch.Tensor:
        """One-step predictions, each from the true frames up to the previous one:
        ``(B, T, 3, H, W) -> (B, T-1, 3, H, W)`` float in [0, 1]."""


@runtime_checkable
class ForegroundMasks(Protocol):
    def masks(self, frames: torch.Tensor) -> torch.Tensor:
        """The agent's soft mask per frame: ``(B, T, 3, H, W) -> (B, T, 1, H, W)`` in [0, 1]."""


@runtime_checkable
class RandomActions(Protocol):
    def random_actions(self, batch: int, horizon: int, generator: torch.Generator) -> Actions:
        """Random actions at the scale the model saw in training (a baseline's actions):
        ``(batch, horizon, ...)`` on the CPU, drawn from ``generator``."""


@runtime_checkable
class LocalActionUsage(Protocol):
    def local_action_usage(self) -> torch.Tensor:
        """How often each discrete local action was used in training: ``(K,)``, sums to 1."""


@runtime_checkable
class StateEmbedding(Protocol):
    def embed(self, state: Any) -> torch.Tensor:
        """A vector per state, ``(B, D)``, in which a planner can take distances."""


@runtime_checkable
class StateFeatures(Protocol):
    def state_features(self, state: Any) -> torch.Tensor:
        """A flat description of a state, ``(B, F)``, that what moves next can depend on
        (where the parts are and how they last moved): what a state-conditioned grounding
        reads beside an env action."""


@runtime_checkable
class StatePositions(Protocol):
    def state_positions_px(self, state: Any) -> torch.Tensor:
        """Where the model's parts are in a state: ``(B, K, 2)`` pixels (x, y; 0 at the first
        pixel's centre), so a cost can be a geometry of parts (a pusher behind an object)."""


@runtime_checkable
class PartPresence(Protocol):
    def present_parts(self, state: Any) -> torch.Tensor | None:
        """Which of :meth:`StatePositions.state_positions_px`'s parts are in the scene:
        ``(B, K)`` 1 or 0 (None: all of them); an absent part's position means nothing."""


@runtime_checkable
class KeypointTracks(Protocol):
    image_size: int

    def keypoints_px(self, frames: torch.Tensor) -> torch.Tensor:
        """The model's keypoints in pixels, ``(B, T, 3, H, W) -> (B, T, K, 2)`` (x, y; 0 at
        the first pixel's centre)."""


@runtime_checkable
class Abduces(Protocol):
    def counterfactual(
        self, factual: torch.Tensor, start: torch.Tensor, actions: Actions | None = None
    ) -> torch.Tensor:
        """A counterfactual branch given the factual one observed: ``factual (B, T+1, 3, H,
        W)`` the factual video, ``start (B, 1, 3, H, W)`` the counterfactual first frame,
        ``actions`` the counterfactual branch's (None: the factual video's, parsed) ->
        frames ``(B, T, 3, H, W)``. What the intervention does not reach follows the factual
        video (abduction: the observed outcome carries what frames alone do not show)."""


@runtime_checkable
class CompilesSteps(Protocol):
    def compile_steps(self, strict: bool = False) -> None:
        """From here on, ``step`` without gradients (a planner's rollouts) runs through
        ``torch.compile``; steps with gradients (training, fitting a map) stay eager. A
        compiler failure at a first step falls back to eager steps with a warning (raises,
        if ``strict``)."""

    @property
    def steps_compiled(self) -> bool:
        """Whether steps without gradients run compiled (False once a fallback happened)."""


@runtime_checkable
class Calibrated(Protocol):
    """Settings of the model's imagination calibrated after training, stored as buffers
    (a keypoint model's ``rest_px``, ``apart_px``): a user may turn them on or off, and what
    names the learned weights (a grounding's digest) leaves them out. A model with
    calibrations implements both members: without ``calibration_off`` it is not Calibrated,
    and its calibrations would count as weights."""

    calibrations: tuple[str, ...]

    def calibration_off(self, name: str) -> None:
        """Turn the calibration ``name`` off (to what a model without it does)."""


@runtime_checkable
class StartState(Protocol):
    def set_start(self, state: Any) -> None:
        """The true (env) state that the next ``encode`` starts from, for models that cannot
        read all they need from frames: the simulator, a view that needs the arm's pose."""


@runtime_checkable
class Sampling(Protocol):
    """Frames are sampled (an ODE from noise): the noise comes from ``generator`` (None:
    torch's global generator), ``sample_steps`` ODE steps of ``solver`` per frame."""

    generator: torch.Generator | None
    sample_steps: int
    solver: str
    reencode_every: int  # a latent model's re-encoding of what it generates (0: never)

    def set_sampler(
        self, steps: int | None = None, solver: str | None = None, reencode_every: int | None = None
    ) -> None:
        """Change the ODE steps or solver, or how often a latent model re-encodes what it
        generates (None keeps the current one)."""


@runtime_checkable
class SparseFlowControl(Protocol):
    """Controlled by pokes: pixels, each with a motion vector (YODA). Points are pixel
    indices ``(x, y)``, vectors pixels per step, both ``(B, n, 2)``."""

    image_size: int

    def control_map(
        self, points: torch.Tensor, vectors: torch.Tensor, present: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The pokes as the conditioning map the model steps on, ``(B, 3, H, W)``."""

    def step_control(
        self, state: Any, control: torch.Tensor, sample_steps: int | None = None
    ) -> Any:
        """One step under a control map (``sample_steps``: ODE steps, None: the model's)."""

    def poke(
        self,
        frames: torch.Tensor,
        points: torch.Tensor,
        vectors: torch.Tensor,
        steps: int = 1,
        then: int = 0,
    ) -> torch.Tensor:
        """Frames ``(B, steps + then, 3, H, W)`` after a poke from context ``frames``."""

    def simulate(self, context: torch.Tensor, steps: int) -> torch.Tensor:
        """``steps`` frames with no control after ``context``: ``(B, steps, 3, H, W)``."""


@contextlib.contextmanager
def seeded_sampling(model: Any, seed: int, device: str | torch.device = "cpu") -> Iterator[None]:
    """Within the block a :class:`Sampling` model draws its noise from a generator seeded with
    ``seed`` (the same frames every run); afterwards its own generator is back, whatever
    happened. Models that do not sample are left alone."""
    if not isinstance(model, Sampling):
        yield
        return
    saved = model.generator
    model.generator = torch.Generator(device=torch.device(device)).manual_seed(int(seed))
    try:
        yield
    finally:
        model.generator = saved


# ---------------------------------------------------------------------------- helpers
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


def map_states(states: list[Any], leaf: Callable[[list[torch.Tensor]], torch.Tensor]) -> Any:
    """One state built from ``states`` of the same structure (tensors, and lists, tuples,
    dicts and dataclasses of them), each tensor ``leaf`` of the tensors at its place; other
    values are the first state's."""
    first = states[0]
    if isinstance(first, torch.Tensor):
        return leaf(states)
    if isinstance(first, tuple) and hasattr(first, "_fields"):  # NamedTuple
        return type(first)(*(map_states([s[i] for s in states], leaf) for i in range(len(first))))
    if isinstance(first, list | tuple):
        return type(first)(map_states([s[i] for s in states], leaf) for i in range(len(first)))
    if isinstance(first, dict):
        return {k: map_states([s[k] for s in states], leaf) for k in first}
    if is_dataclass(first) and not isinstance(first, type):
        return replace(
            first,
            **{
                f.name: map_states([getattr(s, f.name) for s in states], leaf)
                for f in fields(first)
            },
        )
    return first


def _expand(t: torch.Tensor, n: int) -> torch.Tensor:
    if t.shape[:1] != (1,):
        raise ValueError(f"state tensor of shape {tuple(t.shape)}; expected batch 1")
    return t.expand(n, *t.shape[1:])


def repeat_state(state: Any, n: int) -> Any:
    """A model state of batch 1 repeated to batch ``n`` (tensors, and lists, tuples, dicts and
    dataclasses of them, are walked; other values are shared; a state with its own
    ``repeat_batch(n)`` method decides for itself). Branching many rollouts from one state:
    ``model.step(repeat_state(state, n), actions)``."""
    if hasattr(state, "repeat_batch"):
        return state.repeat_batch(n)
    return map_states([state], lambda ts: _expand(ts[0], n))


def index_state(state: Any, index: torch.Tensor) -> Any:
    """The states at ``index`` (a LongTensor of batch positions) of a batched model state."""
    return map_states([state], lambda ts: ts[0][index.to(ts[0].device)])


def cat_states(states: list[Any]) -> Any:
    """Batched model states of one model, concatenated along the batch."""
    if not states:
        raise ValueError("cat_states of no states")
    return map_states(states, torch.cat)


def rollout(model: WorldModel, context: torch.Tensor, actions: Actions) -> torch.Tensor:
    """The protocol's ``rollout`` from its other methods: encode ``context``, step through
    ``actions``, decode each state -> ``(B, T_actions, 3, H, W)``."""
    state = model.encode(context)
    frames = []
    for t in range(len(actions)):
        state = model.step(state, actions.at(t))
        frames.append(model.decode(state))
    return torch.stack(frames, dim=1)
