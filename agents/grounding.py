"""Grounding: learned actions <-> env actions, fit from a few labelled transitions.

A labelled transition is a pair of frames whose env action is known; the world model parses
the frames into its learned action (global shift + local id for GLASS). Two maps are fit:

- ``to_env``: learned action -> env action (planning in the learned space, acting in the env);
- ``to_learned``: env action -> learned action (queries written in env terms), the continuous
  part by regression and the discrete part by classification.

``kind="linear"`` fits least squares (and a linear softmax classifier); ``kind="mlp"`` one hidden
layer. A linear ``to_env`` inverts the forward fit (learned shift from env action) for what the
shift determines, and takes only the rest (what the shift does not see, e.g. the wrist) from the
regression of env action on learned action: the learned shift is a noisy reading of the motion,
and regressing on a noisy variable attenuates the gain (errors in variables), so the arm would
move less than the planner asked. With no labels, :meth:`Grounding.analytic` maps the
end-effector displacement an env action commands onto an image shift through the camera
(GLASS's shift is the arm's image motion; one normalized unit is half the frame).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from latentplay.envs.arm import EE_STEP, ArmEnv
from latentplay.rollouts.format import EpisodeReader
from latentplay.utils.frames import to_tensor_frames
from latentplay.world_models.checkpoint import check_frames_fit
from latentplay.world_models.protocol import Actions, ActionSpec, WorldModel

KINDS = ("linear", "mlp")


def _features(cont: torch.Tensor | None, ids: torch.Tensor | None, k: int) -> torch.Tensor:
    parts = []
    if cont is not None:
        parts.append(cont.float())
    if ids is not None and k:
        parts.append(nn.functional.one_hot(ids.long(), k).float())
    if not parts:
        raise ValueError("actions with neither a continuous nor a discrete part")
    return torch.cat(parts, dim=-1)


def _net(din: int, dout: int, kind: str, hidden: int) -> nn.Module:
    if kind == "linear":
        return nn.Linear(din, dout)
    return nn.Sequential(nn.Linear(din, hidden), nn.SiLU(), nn.Linear(hidden, dout))


@dataclass
class _Fitted:
    net: nn.Module
    x_mean: torch.Tensor
    x_std: torch.Tensor

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.x_mean) / self.x_std)


def _fit(
    x: torch.Tensor, y: torch.Tensor, kind: str, classify: int, hidden: int, steps: int, seed: int
) -> _Fitted:
    """Regression (classify=0, MSE) or classification into ``classify`` classes (CE)."""
    torch.manual_seed(seed)
    mean, std = x.mean(dim=0), x.std(dim=0, unbiased=False).clamp(min=1e-6)
    xs = (x - mean) / std
    net = _net(x.shape[1], classify or y.shape[1], kind, hidden)
    if kind == "linear" and not classify:  # closed form, exact
        a = torch.cat([xs, torch.ones(len(xs), 1)], dim=1).double()
        sol = torch.linalg.lstsq(a, y.double()).solution.float()
        with torch.no_grad():
            net.weight.copy_(sol[:-1].T)
            net.bias.copy_(sol[-1])
        return _Fitted(net, mean, std)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss() if classify else nn.MSELoss()
    target = y.long() if classify else y
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(net(xs), target).backward()
        opt.step()
    return _Fitted(net.eval(), mean, std)


def _affine(f: _Fitted) -> tuple[torch.Tensor, torch.Tensor]:
    """A linear :class:`_Fitted` as ``y = x @ A.T + b`` on raw (unstandardized) inputs."""
    a = f.net.weight / f.x_std
    return a, f.net.bias - a @ f.x_mean


def _inverse_forward(forward: _Fitted, regression: _Fitted, din: int) -> _Fitted:
    """``to_env`` from the forward fit ``shift = A env + b`` (C rows) and the regression
    ``env = R x + r`` (x: the shift, then any one-hot local ids):

        env = pinv(A) (shift - b) + (I - pinv(A) A) (R x + r)

    the part of the env action the shift determines by inverting the forward fit, the part it
    does not (A's null space) from the regression. Exact when both fits are."""
    a, b = _affine(forward)
    r, r0 = _affine(regression)
    pinv = torch.linalg.pinv(a.double()).float()  # (E, C)
    null = torch.eye(a.shape[1]) - pinv @ a  # (E, E)
    c = a.shape[0]
    weight = null @ r
    weight[:, :c] += pinv
    lin = nn.Linear(din, a.shape[1])
    with torch.no_grad():
        lin.weight.copy_(weight)
        lin.bias.copy_(null @ r0 - pinv @ b)
    return _Fitted(lin, torch.zeros(din), torch.ones(din))


class Grounding:
    """Maps between a model's learned actions and env actions (fit with :meth:`fit`)."""

    def __init__(
        self,
        spec: ActionSpec,
        env_dim: int,
        *,
        kind: str = "linear",
        hidden: int = 64,
        steps: int = 500,
        seed: int = 0,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind={kind!r}; expected one of {KINDS}")
        self.spec, self.env_dim, self.kind = spec, env_dim, kind
        self.hidden, self.steps, self.seed = hidden, steps, seed
        self._to_env: _Fitted | None = None
        self._to_cont: _Fitted | None = None
        self._to_ids: _Fitted | None = None
        self.labels = 0

    @classmethod
    def analytic(
        cls, spec: ActionSpec, metres_per_unit: float, pixels_per_metre: np.ndarray, image_size: int
    ) -> Grounding:
        """No labels: an env action's x, y command ``metres_per_unit`` of end-effector motion,
        seen as ``pixels_per_metre`` (2x2 Jacobian of the camera at the table's centre, (u, v)
        per (x, y)); the learned shift is that motion in half-frames. Local actions stay
        unmapped (ids map to a zero wrist command; env -> learned ids picks 0)."""
        if spec.continuous != 2:
            raise ValueError(f"analytic grounding maps 2-D shifts; spec has {spec.continuous}")
        jac = torch.as_tensor(pixels_per_metre, dtype=torch.float32).reshape(2, 2)
        to_shift = jac * metres_per_unit / (image_size / 2)  # env xy -> normalized shift
        g = cls(spec, env_dim=3)
        k = spec.discrete
        # to_env: shift -> xy by the inverse; one-hot ids -> 0
        w = torch.zeros(3, 2 + k)
        w[:2, :2] = torch.linalg.inv(to_shift)
        lin = nn.Linear(2 + k, 3)
        with torch.no_grad():
            lin.weight.copy_(w)
            lin.bias.zero_()
        g._to_env = _Fitted(lin, torch.zeros(2 + k), torch.ones(2 + k))
        back = nn.Linear(3, 2)
        with torch.no_grad():
            back.weight.zero_()
            back.weight[:, :2] = to_shift
            back.bias.zero_()
        g._to_cont = _Fitted(back, torch.zeros(3), torch.ones(3))
        if k:
            ids = nn.Linear(3, k)
            with torch.no_grad():
                ids.weight.zero_()
                ids.bias.zero_()
                ids.bias[0] = 1.0
            g._to_ids = _Fitted(ids, torch.zeros(3), torch.ones(3))
        g.labels = 0
        return g

    def fit(self, learned: Actions, env_actions: torch.Tensor) -> Grounding:
        """``learned`` (N, C) / (N,) one step each; ``env_actions`` (N, env_dim)."""
        env_actions = torch.as_tensor(env_actions, dtype=torch.float32)
        n = len(env_actions)
        if env_actions.shape != (n, self.env_dim):
            raise ValueError(
                f"env_actions of shape {tuple(env_actions.shape)}; expected (N, {self.env_dim})"
            )
        if n < 2:
            raise ValueError(f"{n} labelled transitions; grounding needs at least 2")
        x = _features(learned.continuous, learned.discrete, self.spec.discrete)
        if len(x) != n:
            raise ValueError(f"{len(x)} learned actions for {n} env actions")
        args = dict(kind=self.kind, hidden=self.hidden, steps=self.steps, seed=self.seed)
        self._to_env = _fit(x, env_actions, classify=0, **args)
        if learned.continuous is not None:
            self._to_cont = _fit(env_actions, learned.continuous.float(), classify=0, **args)
            if self.kind == "linear":
                self._to_env = _inverse_forward(self._to_cont, self._to_env, x.shape[1])
        if learned.discrete is not None and self.spec.discrete:
            self._to_ids = _fit(env_actions, learned.discrete, classify=self.spec.discrete, **args)
        self.labels = n
        return self

    def _need(self, part: _Fitted | None) -> _Fitted:
        if part is None:
            raise RuntimeError("Grounding is not fit: call fit(learned, env_actions) first")
        return part

    @torch.no_grad()
    def to_env(self, learned: Actions) -> torch.Tensor:
        """Learned actions (..., C) / (...) -> env actions (..., env_dim) clipped to [-1, 1]."""
        x = _features(learned.continuous, learned.discrete, self.spec.discrete)
        lead = x.shape[:-1]
        y = self._need(self._to_env)(x.reshape(-1, x.shape[-1]).cpu())
        return y.reshape(*lead, self.env_dim).clamp(-1, 1)

    @torch.no_grad()
    def to_learned(self, env_actions: torch.Tensor) -> Actions:
        """Env actions (..., env_dim) -> learned actions (continuous (..., C), ids (...))."""
        a = torch.as_tensor(env_actions, dtype=torch.float32)
        lead, flat = a.shape[:-1], a.reshape(-1, self.env_dim)
        cont = ids = None
        if self.spec.continuous:
            cont = self._need(self._to_cont)(flat).reshape(*lead, -1)
        if self.spec.discrete:
            ids = self._need(self._to_ids)(flat).argmax(dim=-1).reshape(lead)
        return Actions(cont, ids)


@torch.no_grad()
def labelled_transitions(
    model: WorldModel,
    reader: EpisodeReader,
    episodes: list[int],
    n: int,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> tuple[Actions, torch.Tensor]:
    """``n`` transitions drawn at random from ``episodes`` of a dataset
    (:class:`~latentplay.rollouts.format.EpisodeReader`): the model's learned actions parsed
    from the frames, and the env actions recorded with them (the labels)."""
    conts, ids, envs = [], [], []
    for ep in episodes:
        frames = to_tensor_frames(reader.frames(ep), device)[None]
        acts = model.infer_actions(frames)
        if acts.continuous is not None:
            conts.append(acts.continuous[0].cpu())
        if acts.discrete is not None:
            ids.append(acts.discrete[0].cpu())
        labels = torch.as_tensor(reader.ground_truth(ep)["actions"], dtype=torch.float32)
        ref = acts.continuous if acts.continuous is not None else acts.discrete
        if ref.shape[1] != len(labels):
            raise ValueError(
                f"episode {ep}: {ref.shape[1]} learned actions for {len(labels)} env actions"
            )
        envs.append(labels)
    env = torch.cat(envs)
    if n > len(env):
        raise ValueError(f"{n} labels asked; the {len(episodes)} episodes have {len(env)}")
    pick = torch.randperm(len(env), generator=torch.Generator().manual_seed(seed))[:n]
    cont = torch.cat(conts)[pick] if conts else None
    disc = torch.cat(ids)[pick] if ids else None
    return Actions(cont, disc), env[pick]


def camera_jacobian(
    env: ArmEnv, xy: tuple[float, float] = (0.0, 0.0), eps: float = 0.01
) -> np.ndarray:
    """(2, 2) pixels per metre of the env camera at table point ``xy``: columns d(u, v)/dx and
    d(u, v)/dy (finite differences of the exact projection)."""
    cam, z = env.camera, 0.075  # height of the arm's links above the table (the seen motion)
    p = np.array([[xy[0], xy[1], z], [xy[0] + eps, xy[1], z], [xy[0], xy[1] + eps, z]])
    uv = cam.world_to_pixel(p)
    return np.stack([(uv[1] - uv[0]) / eps, (uv[2] - uv[0]) / eps], axis=1)


@contextlib.contextmanager
def labelled_episodes(
    model: WorldModel, data: str | Path, transitions: int, hint: str = ""
) -> Iterator[tuple[EpisodeReader, list[int]]]:
    """The dataset ``data`` open, checked to fit ``model`` and to hold recorded env actions
    (``hint`` ends the error if not), with its first training episodes that hold
    ``transitions`` of them (at least 2 episodes)."""
    reader = EpisodeReader(data)
    try:
        check_frames_fit(model, reader.meta, data)
        if reader.missing_ground_truth(["actions"]):
            raise ValueError(
                f"{data} holds imported {reader.imported} without recorded actions: a fit "
                f"grounding needs them as labels{hint}"
            )
        steps = reader.meta.get("steps") or min(e[2] for e in reader.episodes)  # imported: shortest
        yield reader, reader.indices("train")[: max(2, math.ceil(transitions / max(1, steps)))]
    finally:
        reader.close()


def fit_grounding(
    model: WorldModel,
    data: str | Path,
    labels: int,
    *,
    kind: str = "linear",
    device: str | torch.device = "cpu",
) -> Grounding:
    """A grounding fit on ``labels`` transitions drawn from the first training episodes of the
    dataset ``data`` (enough episodes for twice as many, at least 2): the model parses their
    frames, the dataset's recorded env actions are the labels."""
    if labels < 2:
        raise ValueError(f"labels={labels}; a fit grounding needs at least 2 (0: analytic)")
    hint = " (grounding.labels=[0]: the analytic one)"
    with labelled_episodes(model, data, 2 * labels, hint) as (reader, episodes):
        learned, env_actions = labelled_transitions(model, reader, episodes, labels, device=device)
    return Grounding(model.action_spec, env_actions.shape[1], kind=kind).fit(learned, env_actions)


def ground(
    model: WorldModel,
    labels: int,
    env: ArmEnv,
    data: str | Path | None = None,
    *,
    kind: str = "linear",
    device: str | torch.device = "cpu",
) -> Grounding:
    """The grounding of ``model``'s actions in ``env``: ``labels=0`` the camera's analytic map
    (no labels), else :func:`fit_grounding` on ``labels`` transitions of the dataset ``data``."""
    if labels == 0:
        return Grounding.analytic(model.action_spec, EE_STEP, camera_jacobian(env), env.width)
    if data is None:
        raise ValueError("grounding needs labelled transitions: set data=<dataset folder>")
    return fit_grounding(model, data, labels, kind=kind, device=device)
