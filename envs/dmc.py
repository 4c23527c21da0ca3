"""dm_control suite tasks as latentplay environments: fixed-camera pixels, ground truth aside.

Registered ids (``time_limit=100`` steps): ``latentplay/DMC-reacher-easy-v0`` and
``latentplay/DMC-manipulator-bring_ball-v0``. Any other suite task works through the class::

    import gymnasium as gym
    import latentplay.envs  # noqa: F401  (MUJOCO_GL before dm_control is imported)
    env = gym.make("latentplay/DMC-reacher-easy-v0")
    from latentplay.envs.dmc import DMCEnv
    env = gym.wrappers.TimeLimit(DMCEnv(domain="cheetah", task="run", frame_skip=2), 100)

dm_control is imported here, so this module must be imported after ``latentplay.envs`` (importing
``latentplay.envs.dmc`` runs the package ``__init__`` first, which picks the GL platform).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, ClassVar

import mujoco
import numpy as np
from dm_control import suite
from gymnasium import spaces

from latentplay.envs.base import (
    OBS_TYPES,
    MujocoCameraEnv,
    check_choice,
    check_time_limit,
    set_fast_visuals,
    validate_action,
)
from latentplay.envs.camera import CameraProjection

# Model fields that suite tasks randomise in ``initialize_episode`` (targets, goals, receptacles:
# reacher geom_pos/geom_size, manipulator and stacker body_pos/body_quat, finger site_pos/size,
# fish and swimmer geom_pos, swimmer light_pos, point_mass wrap_prm). They are part of the state:
# without them a restored snapshot would keep the current episode's goal.
MODEL_FIELDS = (
    "body_pos",
    "body_quat",
    "geom_pos",
    "geom_size",
    "site_pos",
    "site_size",
    "light_pos",
    "wrap_prm",
)
LABEL_BACKGROUND = 0  # segmentation: geoms of body b > 0 are labelled min(1 + b, 255)


@dataclass(frozen=True, eq=False)  # arrays: compare to_arrays() instead
class DMCState:
    """Everything that decides a :class:`DMCEnv`'s future; restoring it replays to the bit.

    ``physics`` is ``mj_getState(mjSTATE_INTEGRATION)``; ``model_params`` the concatenated
    :data:`MODEL_FIELDS` (the task's per-episode goal lives in the model); ``rng_state`` and
    ``task_random_state`` are the Gymnasium and dm_control task RNG states (not stored by
    :meth:`to_arrays`, so a state rebuilt from arrays leaves the RNGs as they are).
    """

    physics: np.ndarray
    model_params: np.ndarray
    elapsed_steps: int = 0
    rng_state: dict[str, Any] | None = field(default=None, compare=False)
    task_random_state: tuple[Any, ...] | None = field(default=None, compare=False)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat arrays for storage (``gt/state/*`` in a dataset); the RNGs are left out."""
        return {
            "physics": np.asarray(self.physics),
            "model_params": np.asarray(self.model_params),
            "elapsed_steps": np.asarray(self.elapsed_steps),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> DMCState:
        names = ["physics", "model_params", "elapsed_steps"]
        missing = [n for n in names if n not in arrays]
        if missing:
            raise KeyError(f"DMCState.from_arrays: missing keys {missing}; expected {names}")
        return cls(
            physics=np.array(arrays["physics"], np.float64),
            model_params=np.array(arrays["model_params"], np.float64),
            elapsed_steps=int(arrays["elapsed_steps"]),
        )


def _suite_tasks() -> dict[str, tuple[str, ...]]:
    tasks: dict[str, list[str]] = {}
    for d, t in suite.ALL_TASKS:
        tasks.setdefault(d, []).append(t)
    return {d: tuple(ts) for d, ts in tasks.items()}


class DMCEnv(MujocoCameraEnv):
    """A dm_control suite task (``domain``, ``task``) rendered from a fixed camera.

    **Action** ``Box(-1, 1, (n,), float32)``, ``n`` = the task's actuator count. Each entry is
    mapped linearly onto the dm_control ``action_spec`` bounds (-1 -> minimum, +1 -> maximum;
    :meth:`to_dmc_action`). NaN, inf or a wrong shape raise ``ValueError``; finite values
    outside [-1, 1] are clipped. One step repeats the action ``frame_skip`` (default 1) dm_control
    control steps (manipulator: 10 ms, 10 MuJoCo substeps of 1 ms; reacher: 20 ms, one substep).
    The registered ids repeat each action 4 times.

    **Observation** (``obs_type``):

    ==================  ===============================================================
    ``"pixels"``        ``(height, width, 3) uint8`` from camera ``camera_id`` (default 0)
    ``"state"``         ``(k,) float64``: dm_control's observation dict, flattened in its order
    ``"pixels_state"``  ``Dict(pixels=..., state=...)``
    ==================  ===============================================================

    **Reward**: dm_control's reward (in [0, 1] per control step for the suite) summed over the
    ``frame_skip`` repeats; ``info["reward_task"]`` holds the same value. ``terminated`` is always
    False; ``truncated`` is True when dm_control ends the episode (its time limit, 1000 control
    steps for most tasks, or a task termination; stepping on then raises ``RuntimeError`` until
    :meth:`reset`), or after ``time_limit`` steps (default 100; None: dm_control's limit only),
    counted by the env itself so :meth:`set_state` restores the count.

    **Ground truth** in ``info`` (metres; pixels as in :class:`CameraProjection`): ``qpos`` (nq,),
    ``qvel`` (nv,), ``body_pos`` (nbody, 3) world positions of all bodies (row 0 the world),
    and ``body_pixel`` (nbody, 2) when the camera is fixed in the world body (manipulator's and
    reacher's camera 0 ``fixed`` is; tracking cameras give no pixels). :meth:`render_segmentation`
    labels pixels 0 background (world-body geoms included), ``min(1 + body id, 255)`` otherwise.

    **Rendering**: ``render_quality="fast"`` (default) applies ``set_fast_visuals`` and turns the
    floors' mirror reflections off (a second scene pass: manipulator frames come out the same
    without it and render 2.7x faster; reacher loses faint wall reflections); ``"pretty"``
    keeps dm_control's visuals.

    **Seeding**: every reset reseeds the task's ``np.random.RandomState`` from ``np_random``, so
    ``reset(seed=s)`` fixes the episode. :meth:`get_state` / :meth:`set_state` cover the physics,
    the task's model parameters (goal placement), the step count and both RNGs.

    **Version history**: v0 (initial).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 100}
    camera_name: str = "camera0"

    def __init__(
        self,
        *,
        domain: str,
        task: str,
        obs_type: str = "pixels",
        width: int = 64,
        height: int = 64,
        render_mode: str | None = None,
        camera_id: int | str = 0,
        frame_skip: int = 1,
        time_limit: int | None = 100,
        render_quality: str = "fast",
        task_kwargs: dict[str, Any] | None = None,
    ) -> None:
        tasks = _suite_tasks()
        check_choice("domain", domain, tuple(tasks))
        check_choice(f"task (domain {domain!r})", task, tasks[domain])
        check_choice("obs_type", obs_type, OBS_TYPES)
        check_choice("render_mode", render_mode, (None, "rgb_array"))
        check_choice("render_quality", render_quality, ("fast", "pretty"))
        for name, value in (("width", width), ("height", height), ("frame_skip", frame_skip)):
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"{name}={value!r}; expected a positive integer")
        task_kwargs = dict(task_kwargs or {})
        if "random" in task_kwargs:
            raise ValueError("task_kwargs['random'] is set by DMCEnv; seed with reset(seed=...)")
        self.domain, self.task = domain, task
        self.obs_type = obs_type
        self.width, self.height = int(width), int(height)
        self.render_mode = render_mode
        self.render_quality = render_quality
        self.frame_skip = int(frame_skip)
        self.time_limit = check_time_limit(time_limit)

        # The seed is a placeholder: every reset reseeds env.task.random from np_random.
        self._env = suite.load(domain, task, task_kwargs={**task_kwargs, "random": 0})
        physics = self._env.physics
        self.model: mujoco.MjModel = physics.model.ptr
        self.data: mujoco.MjData = physics.data.ptr
        m = self.model

        self.camera_id = self.render_camera = self._resolve_camera(camera_id)
        self.camera_name = m.camera(self.camera_id).name or f"camera{self.camera_id}"
        try:
            self.camera: CameraProjection | None = CameraProjection(
                m, self.camera_id, self.width, self.height
            )
        except ValueError:  # tracking or body-mounted camera: no fixed projection
            self.camera = None
        if render_quality == "fast":
            set_fast_visuals(m)
            # The suite's floors are mirrors: a second scene pass that costs ~2.7x render time
            # (manipulator: pixel-identical frames without it; reacher: faint wall reflections).
            m.mat_reflectance[:] = 0
        g = m.vis.global_
        g.offwidth, g.offheight = max(g.offwidth, self.width), max(g.offheight, self.height)
        self.label_of_geom = np.where(
            m.geom_bodyid > 0, np.minimum(m.geom_bodyid + 1, 255), LABEL_BACKGROUND
        ).astype(np.uint8)

        spec = self._env.action_spec()
        self._action_low = np.broadcast_to(np.asarray(spec.minimum, np.float64), spec.shape)
        self._action_high = np.broadcast_to(np.asarray(spec.maximum, np.float64), spec.shape)
        if not (np.all(np.isfinite(self._action_low)) and np.all(np.isfinite(self._action_high))):
            raise ValueError(
                f"{domain}/{task} has unbounded actions {spec}; expected finite bounds"
            )
        self._action_shape = tuple(spec.shape)
        self.dt = self._env.control_timestep() * self.frame_skip
        # dm_control's control.Environment.step, unrolled so "pixels" skips get_observation.
        self._n_sub_steps: int = self._env._n_sub_steps
        self._step_limit: float = self._env._step_limit
        self._dm_steps = 0  # dm_control control steps this episode
        self._episode_over = True  # until the first reset
        self.metadata = {**self.metadata, "render_fps": round(1.0 / self.dt)}
        self._elapsed = 0

        self.action_space = spaces.Box(-1.0, 1.0, self._action_shape, np.float32)
        n_state = sum(int(np.prod(s.shape)) for s in self._env.observation_spec().values())
        pixels = spaces.Box(0, 255, (self.height, self.width, 3), np.uint8)
        state = spaces.Box(-np.inf, np.inf, (n_state,), np.float64)
        self.observation_space = {
            "pixels": pixels,
            "state": state,
            "pixels_state": spaces.Dict({"pixels": pixels, "state": state}),
        }[obs_type]

    def _resolve_camera(self, camera: int | str) -> int:
        m = self.model
        names = [m.camera(i).name for i in range(m.ncam)]
        if isinstance(camera, str):
            check_choice("camera_id", camera, tuple(names))
            return names.index(camera)
        if isinstance(camera, (int, np.integer)) and 0 <= camera < m.ncam:
            return int(camera)
        raise ValueError(
            f"camera_id={camera!r}; expected a fixed camera 0..{m.ncam - 1} or a name in {names} "
            "(the free camera -1 is not supported)"
        )

    # ------------------------------------------------------------------ actions
    def to_dmc_action(self, action: Any) -> np.ndarray:
        """[-1, 1] action (validated, clipped) -> dm_control action: -1 -> minimum, +1 -> maximum
        exactly."""
        a = validate_action(action, self._action_shape)
        return 0.5 * (1.0 - a) * self._action_low + 0.5 * (1.0 + a) * self._action_high

    # ------------------------------------------------------------------ gymnasium API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        self._env.task.random.seed(int(self.np_random.integers(2**32)))
        time_step = self._env.reset()
        self._elapsed = self._dm_steps = 0
        self._episode_over = False
        if self.model.nhfield and self._renderer is not None:
            self.close()  # the task may have rewritten a heightfield: re-upload with a new context
        info = dict(self.ground_truth())
        info["reward_task"] = 0.0
        return self._obs(time_step.observation), info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        a = self.to_dmc_action(action)
        if self._episode_over:  # dm_control's own step would silently start a new episode
            raise RuntimeError(f"{self.domain}/{self.task}: the episode is over; call reset()")
        task, physics = self._env.task, self._env.physics
        reward = 0.0
        for _ in range(self.frame_skip):  # as control.Environment.step, minus the observation
            task.before_step(a, physics)
            physics.step(self._n_sub_steps)
            task.after_step(physics)
            reward += float(task.get_reward(physics))
            self._dm_steps += 1
            if self._dm_steps >= self._step_limit or task.get_termination(physics) is not None:
                self._episode_over = True
                break
        self._elapsed += 1
        info = dict(self.ground_truth())
        info["reward_task"] = reward
        observation = None if self.obs_type == "pixels" else task.get_observation(physics)
        truncated = self._episode_over or (
            self.time_limit is not None and self._elapsed >= self.time_limit
        )
        return self._obs(observation), reward, False, truncated, info

    # ------------------------------------------------------------------ observation, info
    @staticmethod
    def _flatten(observation: dict[str, Any]) -> np.ndarray:
        return np.concatenate([np.asarray(v, np.float64).ravel() for v in observation.values()])

    def state_vector(self) -> np.ndarray:
        """The ``obs_type="state"`` observation of the current instant (the task's own)."""
        return self._flatten(self._env.task.get_observation(self._env.physics))

    def _obs(self, observation: dict[str, Any] | None) -> Any:
        if self.obs_type == "state":
            return self._flatten(observation)
        if self.obs_type == "pixels":
            return self.render_rgb()
        return {"pixels": self.render_rgb(), "state": self._flatten(observation)}

    def ground_truth(self) -> dict[str, np.ndarray]:
        """``qpos``, ``qvel``, ``body_pos`` and (fixed world camera only) ``body_pixel``."""
        d = self.data
        gt = {"qpos": d.qpos.copy(), "qvel": d.qvel.copy(), "body_pos": d.xpos.copy()}
        if self.camera is not None:
            gt["body_pixel"] = self.camera.world_to_pixel(gt["body_pos"])
        return gt

    # ------------------------------------------------------------------ rendering
    # ------------------------------------------------------------------ full state
    def _model_params(self) -> np.ndarray:
        return np.concatenate([getattr(self.model, f).ravel() for f in MODEL_FIELDS])

    def get_state(self) -> DMCState:
        """Snapshot of everything that decides the future (see :class:`DMCState`)."""
        return DMCState(
            physics=self.physics_state(),
            model_params=self._model_params(),
            elapsed_steps=self._elapsed,
            rng_state=copy.deepcopy(self.np_random.bit_generator.state),
            task_random_state=copy.deepcopy(self._env.task.random.get_state()),
        )

    def state_from_arrays(self, arrays: dict[str, np.ndarray]) -> DMCState:
        """Rebuild a snapshot stored as ``gt/state/*`` (see :meth:`DMCState.to_arrays`)."""
        return DMCState.from_arrays(arrays)

    def set_state(self, state: DMCState) -> None:
        """Restore a snapshot from :meth:`get_state` (or :meth:`DMCState.from_arrays`)."""
        m = self.model
        self.check_physics_shape(state.physics, f"{self.domain}/{self.task}")
        expected = sum(getattr(m, f).size for f in MODEL_FIELDS)
        if np.shape(state.model_params) != (expected,):
            raise ValueError(
                f"state.model_params has shape {np.shape(state.model_params)}; "
                f"{self.domain}/{self.task} expects ({expected},): it comes from another task"
            )
        params = np.asarray(state.model_params, np.float64)
        start = 0
        for f in MODEL_FIELDS:
            arr = getattr(m, f)
            arr[...] = params[start : start + arr.size].reshape(arr.shape)
            start += arr.size
        self._elapsed = int(state.elapsed_steps)
        if state.rng_state is not None:
            self.np_random.bit_generator.state = copy.deepcopy(state.rng_state)
        if state.task_random_state is not None:
            self._env.task.random.set_state(copy.deepcopy(state.task_random_state))
        self._dm_steps = self._elapsed * self.frame_skip
        self._episode_over = self._dm_steps >= self._step_limit
        self.restore_physics(state.physics)
