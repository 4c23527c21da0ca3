"""YODA-style world model: the next frame by flow matching, controlled by sparse flow.

What the user (or a planner) controls is a *poke*: ``k`` pixels, each with a motion vector.
The model generates the next frame from the previous one, one randomly chosen earlier frame
(its distance embedded, YODA's cheap memory) and the poke; without a poke (condition dropout at
training) it keeps simulating, so a pushed object can go on to push another.

Ours differs from the original (Davtyan & Favaro, AAAI 2024) in being CPU-sized: it generates
in pixel space at 64x64 (no autoencoder to train first; the stem patchifies 2x2) the
*difference* to the previous frame, which is zero on the static scene, with a network that
predicts that difference (the data) rather than the velocity; the flow comes from
OpenCV (:mod:`.flow`), not RAFT; conditions are dropped per sample, not per batch.

With ``autoencoder`` (a checkpoint of :class:`~latentplay.world_models.autoencoder.
FrameAutoencoder`), it generates in that autoencoder's latent space, as the published YODA
does: the state holds latents, each step generates the next latent's difference, and frames
are decoded only when asked for (``decode``); the pokes, their flow and the control map stay
in pixels. The checkpoint records the autoencoder's sha256 and refuses another file.

Actions (the protocol's ``Actions.continuous``, ``(B, 4k)`` per step): for each of the ``k``
points ``(x, y, dx, dy)``: position in normalized image units (``align_corners=False``: -1 is
the left/top edge, +1 the right/bottom edge) and motion in units of ``flow_scale`` pixels per
step. ``Actions()`` (no continuous part) is the unconditioned step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from latentplay.utils.frames import to_float_frames
from latentplay.world_models.autoencoder.model import FrameAutoencoder, load_autoencoder
from latentplay.world_models.protocol import (
    Actions,
    ActionSpec,
    check_actions,
    rollout,
)
from latentplay.world_models.yoda.flow import FlowEstimator
from latentplay.world_models.yoda.flow_matching import SOLVERS, integrate, velocity_from_data
from latentplay.world_models.yoda.net import SIZES, VelocityNet, YodaSize
from latentplay.world_models.yoda.sparse import null_condition, rasterize, sample_points

PREDICTIONS = ("data", "velocity")  # what the network outputs (see flow_matching)


@dataclass
class YodaState:
    """The frames seen or generated so far (at most ``memory`` of them): ``(B, T, 3, H, W)``,
    or their latents ``(B, T, C, h, w)`` for a latent model; each step conditions on one of
    them drawn at random (YODA's memory frame)."""

    frames: torch.Tensor  # protocol.repeat_state branches it (a dataclass of tensors)
    generated: int = 0  # steps generated since encode (when to re-encode, ``reencode_every``)


class Yoda(nn.Module):
    name: ClassVar[str] = "yoda"

    def __init__(
        self,
        *,
        size: str = "s",
        points: int = 5,
        image_size: int = 64,
        flow_method: str = "farneback",
        flow_scale: float = 4.0,
        memory: int = 7,
        sample_steps: int = 3,
        solver: str = "euler",
        prediction: str = "data",
        spread: float = 1.5,
        autoencoder: str | None = None,
        autoencoder_sha256: str | None = None,
        patch: int | None = None,
    ) -> None:
        super().__init__()
        if size not in SIZES:
            raise ValueError(f"size={size!r}; expected one of {list(SIZES)}")
        if points < 1:
            raise ValueError(f"points={points}; expected >= 1 control points")
        if flow_scale <= 0:
            raise ValueError(f"flow_scale={flow_scale}; expected > 0 (pixels per unit)")
        if memory < 1:
            raise ValueError(f"memory={memory}; expected >= 1 frame")
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction={prediction!r}; expected one of {list(PREDICTIONS)}")
        if solver not in SOLVERS:
            raise ValueError(f"solver={solver!r}; expected one of {list(SOLVERS)}")
        self._args = {
            "size": size,
            "points": points,
            "image_size": image_size,
            "flow_method": flow_method,
            "flow_scale": flow_scale,
            "memory": memory,
            "sample_steps": sample_steps,
            "solver": solver,
            "prediction": prediction,
            "spread": spread,
        }
        self.autoencoder: FrameAutoencoder | None = None
        channels, grid = 3, image_size
        if autoencoder is not None:
            ae, digest = load_autoencoder(autoencoder, autoencoder_sha256)
            if ae.image_size != image_size:
                raise ValueError(
                    f"autoencoder {autoencoder} takes {ae.image_size}x{ae.image_size} frames; "
                    f"expected image_size={image_size}"
                )
            self.autoencoder = ae
            channels, grid = ae.latent_channels, ae.latent_size
            self._args.update(autoencoder=str(autoencoder), autoencoder_sha256=digest)
        # the net's stem patch: 2 on frames (most convolutions at half resolution), 1 on a
        # latent grid unless set
        if patch is not None:  # recorded only when set: older checkpoints stay compatible
            self._args["patch"] = patch
        patch = patch or (1 if autoencoder is not None else 2)
        self.points, self.image_size, self.flow_scale = points, image_size, flow_scale
        self.memory, self.sample_steps, self.solver = memory, sample_steps, solver
        self.prediction, self.spread = prediction, spread
        self.flow = FlowEstimator(flow_method)
        self.net = VelocityNet(SIZES[size], image_size, channels, grid, patch)
        self.generator: torch.Generator | None = None  # set for reproducible sampling
        self.reencode_every = 0  # a latent model: re-encode every n-th generated latent (0: never)

    def model_args(self) -> dict[str, Any]:
        return dict(self._args)

    def set_sampler(
        self, steps: int | None = None, solver: str | None = None, reencode_every: int | None = None
    ) -> None:
        """Change how frames are sampled (ODE steps, solver) after training; ``None`` keeps
        the current setting. The checkpoint's ``model_args`` keep the trained ones.
        ``reencode_every=n`` (a latent model): every n-th generated latent goes through the
        autoencoder (decoded, clipped to [0, 1], encoded), back onto the latents of real
        frames; 0: never."""
        if solver is not None and solver not in SOLVERS:
            raise ValueError(f"solver={solver!r}; expected one of {list(SOLVERS)}")
        if steps is not None and int(steps) < 1:
            raise ValueError(f"sample_steps={steps}; expected >= 1 ODE step")
        if reencode_every is not None:
            if int(reencode_every) < 0:
                raise ValueError(f"reencode_every={reencode_every}; expected >= 0 (0: never)")
            if reencode_every and not self.latent:
                raise ValueError(
                    f"reencode_every={reencode_every}: this YODA generates pixels, it has no "
                    "autoencoder to re-encode through"
                )
            self.reencode_every = int(reencode_every)
        self.sample_steps = self.sample_steps if steps is None else int(steps)
        self.solver = solver or self.solver

    @property
    def latent(self) -> bool:
        return self.autoencoder is not None

    def train(self, mode: bool = True) -> Yoda:
        super().train(mode)
        if self.autoencoder is not None:
            self.autoencoder.eval()  # frozen: never in training mode
        return self

    def to_space(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames ``(..., 3, H, W)`` -> what the model generates: the frames as floats, or
        their latents (no gradient: the autoencoder is frozen)."""
        frames = to_float_frames(frames)
        if self.autoencoder is None:
            return frames
        with torch.no_grad():
            z = self.autoencoder.encode(frames.flatten(0, -4))
        return z.unflatten(0, frames.shape[:-3])

    def to_frames(self, x: torch.Tensor) -> torch.Tensor:
        """What the model generates ``(N, ...)`` -> frames ``(N, 3, H, W)`` in [0, 1]."""
        return x if self.autoencoder is None else self.autoencoder.decode(x)

    @property
    def size(self) -> YodaSize:
        return SIZES[self._args["size"]]

    @property
    def action_spec(self) -> ActionSpec:
        return ActionSpec(
            continuous=4 * self.points, continuous_bound=1.0, sparse_points=self.points
        )

    # ------------------------------------------------------------------ controls
    def controls_to_actions(self, points: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        """Pixels ``(..., k, 2)`` ``(x, y)``, vectors ``(..., k, 2)`` px/step -> ``(..., 4k)``."""
        size = self.image_size
        xy = (points.float() + 0.5) * (2.0 / size) - 1.0
        return torch.cat([xy, vectors.float() / self.flow_scale], dim=-1).flatten(-2)

    def actions_to_controls(self, continuous: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(..., 4k)`` -> pixels ``(..., k, 2)`` and vectors ``(..., k, 2)`` px/step."""
        if continuous.shape[-1] != 4 * self.points:
            raise ValueError(
                f"actions of shape {tuple(continuous.shape)}; expected (..., {4 * self.points}) "
                f"= (x, y, dx, dy) for each of {self.points} points"
            )
        if not torch.isfinite(continuous).all():
            raise ValueError("actions hold NaN or inf")
        a = continuous.reshape(*continuous.shape[:-1], self.points, 4)
        points = (a[..., :2] + 1.0) * (self.image_size / 2.0) - 0.5
        return points, a[..., 2:] * self.flow_scale

    def control_map(
        self,
        points: torch.Tensor,
        vectors: torch.Tensor,
        present: torch.Tensor | None = None,
    ) -> torch.Tensor:
        size = (self.image_size, self.image_size)
        return rasterize(points, vectors, size, self.flow_scale, present, self.spread)

    def null_map(self, b: int, device: torch.device) -> torch.Tensor:
        return null_condition((b, 3, self.image_size, self.image_size), device, self.generator)

    def sparse_controls(
        self, prev: torch.Tensor, nxt: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The controls YODA trains on: ``k`` points drawn from the OpenCV flow prev -> next."""
        flow = self.flow(prev, nxt)
        return sample_points(flow.cpu(), self.points, generator)

    # ------------------------------------------------------------------ generation
    def velocity_field(
        self,
        prev: torch.Tensor,
        memory: torch.Tensor,
        distance: torch.Tensor,
        control: torch.Tensor,
        min_denominator: float = 0.05,
    ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """``v(x_t, t)`` for the difference ``next - prev`` under these conditions (the net
        predicts the data or the velocity, per ``prediction``; see
        :func:`~latentplay.world_models.yoda.flow_matching.velocity_from_data` for
        ``min_denominator``)."""
        tokens = self.net.control_tokens(control)
        logd = distance.float().log()

        def v(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            out = self.net(x, t, prev, memory, logd, control, tokens)
            if self.prediction == "data":
                return velocity_from_data(out, x, t, min_denominator=min_denominator)
            return out

        return v

    def generate(
        self,
        prev: torch.Tensor,
        memory: torch.Tensor,
        distance: torch.Tensor,
        control: torch.Tensor,
        sample_steps: int | None = None,
    ) -> torch.Tensor:
        """The next frame ``(B, 3, H, W)`` in [0, 1] (a latent model: the next latent):
        integrate the ODE from noise to the difference to ``prev`` in ``sample_steps`` steps
        (None: the model's), add it."""
        steps = self.sample_steps if sample_steps is None else int(sample_steps)
        # the clamp below one step's length: the last Euler step lands on the prediction
        v = self.velocity_field(prev, memory, distance, control, min(0.05, 0.999 / steps))
        x0 = torch.randn(prev.shape, generator=self.generator, device=prev.device)
        delta = integrate(v, x0, steps, self.solver)
        return prev + delta if self.latent else (prev + delta).clamp(0.0, 1.0)

    # ------------------------------------------------------------------ WorldModel protocol
    def encode(self, frames: torch.Tensor) -> YodaState:
        return YodaState(self.to_space(frames[:, -self.memory :]))

    def infer_actions(self, frames: torch.Tensor) -> Actions:
        """The sparse flow of each transition (``k`` points drawn from the OpenCV flow, with a
        fixed seed: the same frames always parse to the same actions): ``(B, T-1, 4k)``."""
        frames = to_float_frames(frames)
        b, t = frames.shape[:2]
        gen = torch.Generator().manual_seed(0)
        flow = self.flow(frames[:, :-1], frames[:, 1:]).cpu()  # (B, T-1, 2, H, W)
        pts, vec = sample_points(flow.flatten(0, 1), self.points, gen)
        acts = self.controls_to_actions(pts, vec).reshape(b, t - 1, -1)
        return Actions(continuous=acts.to(frames.device))

    def step(self, state: YodaState, actions: Actions) -> YodaState:
        frames = state.frames
        b = frames.shape[0]
        if actions.continuous is None:
            control = self.null_map(b, frames.device)
        else:
            pts, vec = self.actions_to_controls(actions.continuous.to(frames.device))
            check_actions(self.action_spec, actions, batch=b)  # after its own, clearer, checks
            control = self.control_map(pts, vec)
        return self.step_control(state, control)

    def step_control(
        self, state: YodaState, control: torch.Tensor, sample_steps: int | None = None
    ) -> YodaState:
        """One step under a control map ``(B, 3, H, W)`` (see :meth:`control_map`), sampled with
        ``sample_steps`` ODE steps (None: the model's own)."""
        if sample_steps is not None and int(sample_steps) < 1:
            raise ValueError(f"sample_steps={sample_steps}; expected >= 1 ODE step")
        frames = state.frames
        b, n = frames.shape[:2]
        # the memory frame: drawn among the frames kept, as in training (distance 1..n)
        m = torch.randint(n, (b,), generator=self.generator, device=frames.device)
        memory = frames[torch.arange(b, device=frames.device), m]
        distance = (n - m).float()
        nxt = self.generate(frames[:, -1], memory, distance, control, sample_steps)
        generated = state.generated + 1
        ae = self.autoencoder
        if ae is not None and self.reencode_every and generated % self.reencode_every == 0:
            with torch.no_grad():
                nxt = ae.encode(ae.decode(nxt).clamp(0.0, 1.0))
        frames = torch.cat([frames, nxt[:, None]], dim=1)[:, -self.memory :]
        return YodaState(frames, generated)

    def decode(self, state: YodaState) -> torch.Tensor:
        return self.to_frames(state.frames[:, -1])

    def embed(self, state: YodaState) -> torch.Tensor:
        """The last frame or latent, flattened ``(B, D)``: a latent planner's cost never
        decodes."""
        return state.frames[:, -1].flatten(1)

    def rollout(self, context: torch.Tensor, actions: Actions) -> torch.Tensor:
        return rollout(self, context, actions)

    def simulate(self, context: torch.Tensor, steps: int) -> torch.Tensor:
        """``steps`` unconditioned frames after ``context``: ``(B, steps, 3, H, W)``."""
        state, out = self.encode(context), []
        for _ in range(steps):
            state = self.step(state, Actions())
            out.append(self.decode(state))
        return torch.stack(out, dim=1)

    def teacher_forced(self, frames: torch.Tensor) -> torch.Tensor:
        """One-step predictions from the true frames up to the previous one, under the parsed
        sparse flow of each transition: ``(B, T, ...) -> (B, T-1, 3, H, W)``."""
        frames = to_float_frames(frames)
        acts = self.infer_actions(frames)
        out = []
        for i in range(frames.shape[1] - 1):
            state = self.encode(frames[:, : i + 1])
            out.append(self.decode(self.step(state, acts.at(i))))
        return torch.stack(out, dim=1)

    def random_actions(self, b: int, horizon: int, generator: torch.Generator) -> Actions:
        """Random pokes, for the controllability baseline: uniform positions, vectors of the
        typical training magnitude in random directions."""
        k = self.points
        xy = torch.rand(b, horizon, k, 2, generator=generator) * 2 - 1
        vec = torch.randn(b, horizon, k, 2, generator=generator) * 0.5
        return Actions(continuous=torch.cat([xy, vec], dim=-1).flatten(-2))

    @torch.no_grad()
    def poke(
        self,
        frames: torch.Tensor,
        points: torch.Tensor,
        vectors: torch.Tensor,
        steps: int = 1,
        then: int = 0,
    ) -> torch.Tensor:
        """Generate frames under a poke, then ``then`` frames without control.

        ``frames (B, T, 3, H, W)`` context. ``points`` pixels ``(x, y)`` and ``vectors`` pixels
        per step, both ``(B, n, 2)`` (held for ``steps`` steps) or ``(B, S, n, 2)`` (one poke
        per step, ``S`` steps; ``steps`` is ignored), ``n <= k`` (a poke may use fewer points
        than the model's ``k``). Returns ``(B, steps + then, 3, H, W)`` in [0, 1].
        """
        frames = to_float_frames(frames)
        points, vectors = torch.as_tensor(points).float(), torch.as_tensor(vectors).float()
        b = frames.shape[0]
        if points.shape != vectors.shape or points.shape[-1] != 2 or points.ndim not in (3, 4):
            raise ValueError(
                f"points {tuple(points.shape)} and vectors {tuple(vectors.shape)}; expected both "
                f"({b}, n, 2) or ({b}, steps, n, 2)"
            )
        if points.shape[0] != b:
            raise ValueError(f"a poke for {points.shape[0]} videos; expected both ({b}, n, 2)")
        if points.ndim == 3:
            points = points[:, None].expand(-1, steps, -1, -1)
            vectors = vectors[:, None].expand(-1, steps, -1, -1)
        n = points.shape[2]
        if not 1 <= n <= self.points:
            raise ValueError(f"a poke of {n} points; this model takes 1 to {self.points}")
        if not (torch.isfinite(points).all() and torch.isfinite(vectors).all()):
            raise ValueError("poke points or vectors hold NaN or inf")
        held = points.shape[1]
        state, out = self.encode(frames), []
        for i in range(held + then):
            if i < held:
                c = self.control_map(points[:, i], vectors[:, i]).to(frames.device)
            else:
                c = self.null_map(b, frames.device)
            state = self.step_control(state, c)
            out.append(self.decode(state))
        return torch.stack(out, dim=1)
