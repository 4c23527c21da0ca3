"""Collection policies: what drives the arm while videos are recorded.

Every policy is built per env by a factory taking the action space (a Hydra ``_partial_``
config gives one), gets a fresh per-episode RNG in :meth:`Policy.reset`, and acts on the
observation and the info dict. Scripted policies read ground truth from ``info``: that is
fine for *collecting*; the ground truth still never reaches a world model's training input.
A policy that needs its env itself (a planner renders the goal image) defines ``bind(env)``;
collection calls it once with the unwrapped env it records from, before the first episode.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
from gymnasium import spaces

if TYPE_CHECKING:  # typing only: collection workers need no MuJoCo import from here
    from latentplay.envs.arm import ArmEnv

PolicyFactory = Callable[..., "Policy"]


@runtime_checkable
class Policy(Protocol):
    name: str

    def reset(self, rng: np.random.Generator, info: dict[str, Any]) -> None:
        """Start an episode; all randomness of the episode comes from ``rng``."""

    def act(self, obs: Any, info: dict[str, Any]) -> np.ndarray:
        """Action for the current observation (env action space, float32)."""


def _box(action_space: spaces.Space) -> spaces.Box:
    if not isinstance(action_space, spaces.Box) or len(action_space.shape) != 1:
        raise ValueError(f"policies need a 1-D Box action space; got {action_space}")
    return action_space


class RandomPolicy:
    """Temporally correlated uniform-ish noise, so the arm makes coherent strokes.

    AR(1) process per dimension: ``a_t = rho * a_{t-1} + scale * sqrt(1 - rho^2) * eps_t``,
    ``eps ~ N(0, 1)``, clipped to the action bounds. ``correlation=0`` gives white noise.
    """

    name = "random"

    def __init__(
        self, action_space: spaces.Space, correlation: float = 0.85, scale: float = 0.8
    ) -> None:
        if not 0.0 <= correlation < 1.0:
            raise ValueError(f"correlation={correlation}; expected 0 <= correlation < 1")
        self.space = _box(action_space)
        self.correlation, self.scale = correlation, scale
        self._rng: np.random.Generator | None = None  # set by reset(): no unseeded fallback
        self._a = np.zeros(self.space.shape)

    def reset(self, rng: np.random.Generator, info: dict[str, Any]) -> None:
        self._rng = rng
        self._a = rng.uniform(-self.scale, self.scale, self.space.shape)

    def act(self, obs: Any, info: dict[str, Any]) -> np.ndarray:
        if self._rng is None:
            raise RuntimeError("RandomPolicy.act() before reset(rng, info)")
        rho = self.correlation
        eps = self._rng.standard_normal(self.space.shape)
        self._a = rho * self._a + self.scale * np.sqrt(1 - rho * rho) * eps
        return np.clip(self._a, self.space.low, self.space.high).astype(np.float32)


class ScriptedPushPolicy:
    """Goes to an object and pushes it in a random direction, turning the wrist in segments.

    For the arm envs (``info`` has ``ee_pos``, ``object_pos``, ``object_active``). Each stroke:
    pick an active object and a random point inside the arena, move behind the object
    (``approach`` m) and push it towards the point for ``push_steps`` steps, pick again.
    Aiming at inner points keeps objects off the walls. With no active object it reaches random
    waypoints. The wrist runs in segments of 3-10 steps turning one way, the other, or not
    (``wrist_speed``): a discrete local action, as BAIR's gripper. With probability
    ``aim_at_object`` a stroke aims at another active object instead of a random point, so
    the pushed object pushes that one (chained pushes for PushMulti).
    """

    name = "scripted"

    def __init__(
        self,
        action_space: spaces.Space,
        speed: float = 0.8,
        approach: float = 0.055,
        push_steps: tuple[int, int] = (6, 14),
        wrist_speed: float = 0.7,
        noise: float = 0.1,
        ee_step: float = 0.02,
        aim_at_object: float = 0.0,
    ) -> None:
        self.space = _box(action_space)
        if not 0.0 <= aim_at_object <= 1.0:
            raise ValueError(f"aim_at_object={aim_at_object}; expected a probability in [0, 1]")
        self.aim_at_object = aim_at_object
        if self.space.shape != (3,):
            raise ValueError(f"ScriptedPushPolicy drives (dx, dy, dwrist); got {self.space}")
        self.speed, self.approach, self.push_steps = speed, approach, tuple(push_steps)
        self.wrist_speed, self.noise, self.ee_step = wrist_speed, noise, ee_step
        self._rng: np.random.Generator | None = None  # set by reset(): no unseeded fallback

    def reset(self, rng: np.random.Generator, info: dict[str, Any]) -> None:
        self._rng = rng
        self._phase, self._left = "pick", 0
        self._wrist, self._wrist_left = 0.0, 0
        self._obj, self._dir, self._waypoint = -1, np.zeros(2), np.zeros(2)

    @property
    def phase(self) -> str:
        """Where the current stroke is: ``pick``, ``approach`` (going behind the object),
        ``push`` or ``reach`` (a waypoint, when no object is active)."""
        return self._phase

    @property
    def target(self) -> int:
        """The slot of the object the current stroke pushes (-1 before the first)."""
        return self._obj

    @property
    def direction(self) -> np.ndarray:
        """The current stroke's unit push direction in the table plane (x, y)."""
        return self._dir.copy()

    def _towards(self, ee: np.ndarray, target: np.ndarray) -> np.ndarray:
        step = (target - ee) / self.ee_step
        n = np.linalg.norm(step)
        return step if n <= self.speed else step * (self.speed / n)

    def act(self, obs: Any, info: dict[str, Any]) -> np.ndarray:
        rng = self._rng
        if rng is None:
            raise RuntimeError("ScriptedPushPolicy.act() before reset(rng, info)")
        if "ee_pos" not in info:
            raise ValueError(
                "ScriptedPushPolicy needs the arm envs' ground truth (info['ee_pos'], "
                "info['object_pos']); use policy=random or sb3 for other envs"
            )
        ee = np.asarray(info["ee_pos"])[:2]
        active = np.flatnonzero(np.asarray(info.get("object_active", [])))
        if self._phase == "pick":
            if active.size:
                self._obj = int(rng.choice(active))
                positions = np.asarray(info["object_pos"])[:, :2]
                obj = positions[self._obj]
                others = active[active != self._obj]
                if self.aim_at_object > 0 and others.size and rng.random() < self.aim_at_object:
                    aim = positions[int(rng.choice(others))] - obj
                else:
                    aim = rng.uniform(-0.09, 0.09, 2) - obj
                if np.linalg.norm(aim) < 1e-3:
                    aim = rng.standard_normal(2)
                self._dir = aim / np.linalg.norm(aim)
                self._phase = "approach"
            else:
                self._waypoint = rng.uniform(-0.11, 0.11, 2)
                self._phase = "reach"
            self._left = 25  # give up on a stroke that does not get anywhere
        self._left -= 1
        if self._phase == "reach":
            xy = self._towards(ee, self._waypoint)
            if np.linalg.norm(self._waypoint - ee) < 0.01 or self._left <= 0:
                self._phase = "pick"
        else:
            obj = np.asarray(info["object_pos"])[self._obj, :2]
            if self._phase == "approach":
                behind = np.clip(obj - self._dir * self.approach, -0.13, 0.13)
                xy = self._towards(ee, behind)
                if np.linalg.norm(behind - ee) < 0.012 or self._left <= 0:
                    self._phase = "push"
                    self._left = int(rng.integers(self.push_steps[0], self.push_steps[1] + 1))
            else:  # push through the object along the stroke direction
                xy = self._dir * self.speed
                if self._left <= 0:
                    self._phase = "pick"
        if self._wrist_left <= 0:
            self._wrist = float(rng.choice([-1.0, 0.0, 1.0])) * self.wrist_speed
            self._wrist_left = int(rng.integers(3, 11))
        self._wrist_left -= 1
        a = np.append(xy + self.noise * rng.standard_normal(2), self._wrist)
        return np.clip(a, self.space.low, self.space.high).astype(np.float32)


class SB3Policy:
    """Any saved Stable-Baselines3 model (``.zip``). The algorithm is read from ``algo``
    (``PPO``, ``SAC``, ...). With ``obs_type="pixels_state"`` envs the model gets the part of
    the observation its own observation space asks for."""

    name = "sb3"

    def __init__(
        self,
        action_space: spaces.Space,
        path: str | Path,
        algo: str = "PPO",
        deterministic: bool = False,
        device: str = "cpu",
    ) -> None:
        import stable_baselines3 as sb3

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"SB3 model file {str(path)!r} does not exist")
        cls = getattr(sb3, algo, None)
        if cls is None:
            known = [n for n in ("A2C", "DDPG", "DQN", "PPO", "SAC", "TD3") if hasattr(sb3, n)]
            raise ValueError(f"algo={algo!r} is not a Stable-Baselines3 algorithm; one of {known}")
        self.space = _box(action_space)
        self.model = cls.load(str(path), device=device)
        if self.model.action_space.shape != self.space.shape:
            raise ValueError(
                f"{path}: the model acts in {self.model.action_space}, the env in {self.space}"
            )
        self.deterministic = deterministic
        self._obs_key = self._pick_obs_key(self.model.observation_space)

    @staticmethod
    def _pick_obs_key(space: spaces.Space) -> str | None:
        if isinstance(space, spaces.Dict):
            return None
        if isinstance(space, spaces.Box) and len(space.shape) == 3:
            return "pixels"
        return "state"

    def reset(self, rng: np.random.Generator, info: dict[str, Any]) -> None:
        import torch

        # SB3 samples from torch's global RNG: keep a private one, seeded per episode, and
        # swap it in around predict() so the caller's torch RNG is left as it was.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(rng.integers(2**31)))
            self._torch_rng = torch.get_rng_state()

    def act(self, obs: Any, info: dict[str, Any]) -> np.ndarray:
        import torch

        if getattr(self, "_torch_rng", None) is None:
            raise RuntimeError("SB3Policy.act() before reset(rng, info)")
        x = obs[self._obs_key] if isinstance(obs, dict) and self._obs_key else obs
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self._torch_rng)
            action, _ = self.model.predict(x, deterministic=self.deterministic)
            self._torch_rng = torch.get_rng_state()
        return np.clip(action, self.space.low, self.space.high).astype(np.float32)


class MixturePolicy:
    """Each episode draws one component policy with the given weights."""

    name = "mixture"

    def __init__(
        self,
        action_space: spaces.Space,
        components: Sequence[PolicyFactory],
        weights: Sequence[float] | None = None,
    ) -> None:
        if not components:
            raise ValueError("MixturePolicy needs at least one component")
        w = np.ones(len(components)) if weights is None else np.asarray(weights, np.float64)
        if w.shape != (len(components),) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError(
                f"weights={weights}; expected {len(components)} non-negative numbers, not all 0"
            )
        self.policies = [make(action_space) for make in components]
        self.weights = w / w.sum()
        self.current: Policy = self.policies[0]

    def reset(self, rng: np.random.Generator, info: dict[str, Any]) -> None:
        self.current = self.policies[int(rng.choice(len(self.policies), p=self.weights))]
        self.current.reset(rng, info)

    def act(self, obs: Any, info: dict[str, Any]) -> np.ndarray:
        return self.current.act(obs, info)


@dataclass
class ScriptedRun:
    """An episode start driven by :class:`ScriptedPushPolicy` (see :func:`scripted_run`)."""

    policy: ScriptedPushPolicy  # as it stood when the run ended (its phase and stroke)
    actions: list[np.ndarray]  # the actions taken
    infos: list[dict[str, Any]]  # ground truth at reset and after each action
    states: list[Any]  # the env's full state at the same instants
    frames: list[np.ndarray]  # renders at the same instants (render=True)
    stopped: bool = False  # ``stop`` ended the run (else the step budget did)


def scripted_run(
    env: ArmEnv,
    seed: int,
    steps: int,
    stop: Callable[[ScriptedRun], bool] | None = None,
    *,
    render: bool = False,
    **policy_kwargs: Any,
) -> ScriptedRun:
    """Reset the arm env ``env`` with ``seed`` and let a :class:`ScriptedPushPolicy`
    (``policy_kwargs``; its RNG seeded with ``seed`` too) act for up to ``steps`` steps: the
    warm-up from which the poke and counterfactual benchmarks start their queries. Before each
    step, once the policy has chosen its action, ``stop(run)`` may end the run; that action
    is then not taken (``run.policy.phase`` tells what it was about to do)."""
    _, info = env.reset(seed=seed)
    policy = ScriptedPushPolicy(env.action_space, **policy_kwargs)
    policy.reset(np.random.default_rng(seed), info)
    run = ScriptedRun(policy, [], [info], [env.get_state()], [env.render_rgb()] if render else [])
    for _ in range(steps):
        action = policy.act(None, info)
        if stop is not None and stop(run):
            run.stopped = True
            break
        info = env.step(action)[-1]
        run.actions.append(action)
        run.infos.append(info)
        run.states.append(env.get_state())
        if render:
            run.frames.append(env.render_rgb())
    return run
