"""Planar arm on a walled table: reaching and object pushing, with ground truth beside the pixels.

The three registered tasks share one scene (``assets/arm_table.xml``) and this module:

=========================  ============================  =====================================
id                         class                         objects
=========================  ============================  =====================================
``latentplay/Reach-v0``    :class:`ReachEnv`             none (4 spare slots, parked)
``latentplay/Push-v0``     :class:`PushEnv`              1 red box (3 spare slots)
``latentplay/PushMulti-v0`` :class:`PushMultiEnv`        3 by default, up to 4, push each other
=========================  ============================  =====================================

Everything a counterfactual needs lives here too: :meth:`ArmEnv.get_state` /
:meth:`ArmEnv.set_state` (full MuJoCo integration state, controller target, goal, scene
parameters, RNG) and the interventions :meth:`ArmEnv.move_object`, :meth:`ArmEnv.add_object`,
:meth:`ArmEnv.remove_object`, :meth:`ArmEnv.set_object_mass`, :meth:`ArmEnv.set_object_friction`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import mujoco
import numpy as np
from gymnasium import spaces

from latentplay.envs.base import (
    OBS_TYPES,
    MujocoCameraEnv,
    check_choice,
    check_time_limit,
    validate_action,
)
from latentplay.envs.camera import CameraProjection

ASSET = Path(__file__).parent / "assets" / "arm_table.xml"

MAX_OBJECTS = 4
ARENA_HALF = 0.15  # inner half-size of the walled area (m); walls at +-0.16
EE_LIMIT = 0.13  # end-effector target box (m)
EE_STEP = 0.02  # m per step at |action| = 1
ROT_STEP = 0.15  # rad per step at |action| = 1 (8.6 degrees)
JOINT_STEP = 0.1  # rad per step at |action| = 1, control="joint"
MAX_LAG = 0.03  # the end-effector target never runs further than this ahead of the arm (m)
PADDLE_LIMIT = np.pi / 2  # paddle angle in the world frame stays in [-90, 90] degrees
LINK = 0.19  # upper arm and forearm length (m)
OBJECT_HALF_HEIGHT = 0.02
SUCCESS_DIST = 0.02
CTRL_COST = 0.01
NEAR_WEIGHT = 0.5

# Collision bits, as in the XML header.
BITS_ACTIVE = (1, 3)  # (contype, conaffinity) of an object on the table
BITS_PARKED = (0, 0)
GROUP_VISIBLE, GROUP_HIDDEN = 1, 5

LABEL_BACKGROUND, LABEL_ARM = 0, 1  # segmentation labels; object slot i is 2 + i


@dataclass(frozen=True, eq=False)  # arrays: compare to_arrays() instead
class ArmState:
    """Everything that decides the env's future: restore it and the env replays to the bit.

    ``physics`` is ``mj_getState(mjSTATE_INTEGRATION)`` (time, qpos, qvel, act, ctrl, warm start,
    mocap, applied forces); the other fields are what lives outside MuJoCo's data: the arm
    controller's target, the goal, the scene's intervened parameters, and the reset RNG.
    """

    physics: np.ndarray
    target: np.ndarray  # (3,) end-effector x, y, paddle angle; or joint targets (control="joint")
    goal: np.ndarray  # (2,) goal point in the table plane (m)
    object_active: np.ndarray  # (MAX_OBJECTS,) bool
    object_mass: np.ndarray  # (MAX_OBJECTS,) kg
    object_friction: np.ndarray  # (MAX_OBJECTS,) sliding friction coefficient
    elapsed_steps: int = 0
    rng_state: dict[str, Any] | None = field(default=None, compare=False)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat arrays for storage (``gt/state/*`` in a dataset); the RNG is left out."""
        return {
            f.name: np.asarray(getattr(self, f.name)) for f in fields(self) if f.name != "rng_state"
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> ArmState:
        names = [f.name for f in fields(cls) if f.name != "rng_state"]
        missing = [n for n in names if n not in arrays]
        if missing:
            raise KeyError(f"ArmState.from_arrays: missing keys {missing}; expected {names}")
        kw = {n: np.array(arrays[n]) for n in names}
        kw["elapsed_steps"] = int(kw["elapsed_steps"])
        return cls(**kw)


class ArmEnv(MujocoCameraEnv):
    """Planar 3-joint arm with a wrist paddle on a walled table. Base class of the tasks.

    **Action** ``Box(-1, 1, (3,), float32)``; ``control="ee"`` (default):

    ====  ==========================================  ===================
    idx   meaning                                     at +1
    ====  ==========================================  ===================
    0     end-effector displacement along table x     +2 cm
    1     end-effector displacement along table y     +2 cm
    2     wrist paddle rotation (world frame)         +8.6 deg (0.15 rad)
    ====  ==========================================  ===================

    The end-effector target is kept in a 26 x 26 cm box, never more than 3 cm ahead of the arm,
    and the paddle within +-90 deg; analytic inverse kinematics turns it into position targets
    for the three hinge actuators. ``control="joint"``: the action moves the shoulder, elbow and
    wrist position targets by up to 0.1 rad each. NaN, inf or a wrong shape raise ``ValueError``;
    finite values outside [-1, 1] are clipped.

    **Observation** (``obs_type``): ``"pixels"`` (default) ``(height, width, 3) uint8`` from the
    fixed camera ``top``; ``"state"`` ``(40,) float64``; ``"pixels_state"`` a Dict of both.
    State layout: arm joint angles (3), joint velocities (3), end-effector x, y (2), cos and sin
    of the paddle angle (2), goal x, y (2), then per object slot: active flag, x, y, cos yaw,
    sin yaw, vx, vy (7 x 4). Inactive slots are zeros.

    **Rewards** (each term in ``info``, ``reward`` is their sum): ``reward_dist`` =
    -distance(end effector | object, goal); ``reward_near`` (push tasks) = -0.5 x
    distance(end effector, object), "object" being the first active slot (slot 0, unless a
    scene of varied object sets or an intervention leaves it empty); ``reward_ctrl`` = -0.01 x
    |action|^2. ``info["is_success"]`` when the distance to the goal is under 2 cm. Episodes
    never terminate; they are truncated after ``time_limit`` steps (default 100; None: never).
    The env counts the steps itself (no TimeLimit wrapper), so :meth:`set_state` restores the
    count with everything else.

    **Ground truth** in ``info`` (world units are metres, pixels are (u, v) = (column, row) in
    the rendered frame, continuous, pixel (j, i) covering [j, j+1) x [i, i+1)): ``ee_pos`` (3,),
    ``ee_pixel`` (2,), ``paddle_angle``, ``joint_pos`` (3,), ``object_pos`` (4, 3),
    ``object_quat`` (4, 4), ``object_pixel`` (4, 2), ``object_active`` (4,),
    ``contact_arm_object`` (4,), ``contact_object_object`` (4, 4), ``goal`` (2,), ``goal_pixel``.
    :meth:`render_segmentation` labels pixels 0 background, 1 arm, 2 + i object slot i. "Arm" is
    what moves (links, finger, paddle); its fixed base pillar is scenery and labelled background.

    **Timing**: MuJoCo timestep 10 ms (as Gymnasium's Pusher), ``frame_skip=5`` substeps: 20 steps
    per second. Contacts use a 20 ms time constant (twice the timestep, as MuJoCo advises).

    **Version history**: v0 (initial).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 20}
    camera_name: ClassVar[str] = "top"
    render_camera: ClassVar[str] = "top"
    task: ClassVar[str] = "reach"
    default_objects: ClassVar[int] = 0

    def __init__(
        self,
        *,
        n_objects: int | None = None,
        obs_type: str = "pixels",
        control: str = "ee",
        width: int = 64,
        height: int = 64,
        render_mode: str | None = None,
        show_goal: bool = False,
        render_quality: str = "fast",
        frame_skip: int = 5,
        time_limit: int | None = 100,
    ) -> None:
        min_objects = 0 if self.task == "reach" else 1
        counts = _object_counts(
            self.default_objects if n_objects is None else n_objects, min_objects, type(self)
        )
        check_choice("obs_type", obs_type, OBS_TYPES)
        check_choice("control", control, ("ee", "joint"))
        check_choice("render_mode", render_mode, (None, "rgb_array"))
        check_choice("render_quality", render_quality, ("fast", "pretty"))
        for name, value in (("width", width), ("height", height), ("frame_skip", frame_skip)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name}={value!r}; expected a positive integer")
        # A fixed count fills slots 0..n-1; a range [lo, hi] draws the count per episode and
        # which of slots 0..hi-1 hold the objects (scenes of varied object sets).
        self.n_objects, self._count_range = counts[1], counts if counts[0] != counts[1] else None
        self.obs_type = obs_type
        self.control = control
        self.width, self.height = int(width), int(height)
        self.render_mode = render_mode
        self.show_goal = show_goal
        self.render_quality = render_quality
        self.frame_skip = int(frame_skip)
        self.time_limit = check_time_limit(time_limit)

        self.model = mujoco.MjModel.from_xml_path(str(ASSET))
        self.data = mujoco.MjData(self.model)
        if render_quality == "pretty":
            q = self.model.vis.quality
            q.shadowsize, q.offsamples, q.numslices, q.numstacks = 2048, 4, 28, 16
            self.model.light_castshadow[:] = 1
        self.dt = self.model.opt.timestep * self.frame_skip
        self.metadata = {**self.metadata, "render_fps": round(1.0 / self.dt)}
        self._index_model()

        self._base_mass = self.model.body_mass[self._obj_body].copy()
        self._base_inertia = self.model.body_inertia[self._obj_body].copy()
        self._base_friction = self.model.geom_friction[self._obj_geom, 0].copy()
        self._mass = self._base_mass.copy()
        self._friction = self._base_friction.copy()
        self._active = np.zeros(MAX_OBJECTS, bool)
        self._goal = np.zeros(2)
        self._target = np.zeros(3)
        self._elapsed = 0
        for i in range(MAX_OBJECTS):
            self._park(i)

        self.camera = CameraProjection(self.model, "top", self.width, self.height)

        self.action_space = spaces.Box(-1.0, 1.0, (3,), np.float32)
        pixels = spaces.Box(0, 255, (self.height, self.width, 3), np.uint8)
        state = spaces.Box(-np.inf, np.inf, (12 + 7 * MAX_OBJECTS,), np.float64)
        self.observation_space = {
            "pixels": pixels,
            "state": state,
            "pixels_state": spaces.Dict({"pixels": pixels, "state": state}),
        }[obs_type]

    # ------------------------------------------------------------------ model bookkeeping
    def _index_model(self) -> None:
        m = self.model
        self._arm_joints = [m.joint(n).id for n in ("shoulder", "elbow", "wrist")]
        self._arm_qadr = np.array([m.jnt_qposadr[j] for j in self._arm_joints])
        self._arm_vadr = np.array([m.jnt_dofadr[j] for j in self._arm_joints])
        self._ee_site = m.site("ee").id
        self._goal_site = m.site("goal").id
        self._base_xy = m.body("base").pos[:2].copy()
        self._obj_body = np.array([m.body(f"obj{i}").id for i in range(MAX_OBJECTS)])
        self._obj_geom = np.array([m.geom(f"obj{i}").id for i in range(MAX_OBJECTS)])
        self._obj_qadr = np.array(
            [m.jnt_qposadr[m.joint(f"obj{i}").id] for i in range(MAX_OBJECTS)]
        )
        self._obj_vadr = np.array([m.jnt_dofadr[m.joint(f"obj{i}").id] for i in range(MAX_OBJECTS)])
        self._obj_pos_idx = self._obj_qadr[:, None] + np.arange(3)  # fancy index: (4, 3)
        self._obj_quat_idx = self._obj_qadr[:, None] + np.arange(3, 7)  # (4, 4)
        arm_bodies = {m.body(n).id for n in ("upper_arm", "forearm", "wrist")}  # base: scenery
        # Per-geom lookups: segmentation label, and contact entity (-1 arm, i object, -2 other).
        self.label_of_geom = np.zeros(m.ngeom, np.uint8)
        self._entity_of_geom = np.full(m.ngeom, -2, np.int64)
        for g in range(m.ngeom):
            if m.geom_bodyid[g] in arm_bodies:
                self.label_of_geom[g] = LABEL_ARM
                self._entity_of_geom[g] = -1
        for i, g in enumerate(self._obj_geom):
            self.label_of_geom[g] = 2 + i
            self._entity_of_geom[g] = i

    def _set_collision_bits(self, i: int, bits: tuple[int, int]) -> None:
        """Geom bits, and the body's copy that MuJoCo's broad phase reads (otherwise refreshed
        only by mj_setConst): a body whose copy is 0 collides with nothing."""
        m, g, b = self.model, self._obj_geom[i], self._obj_body[i]
        m.geom_contype[g], m.geom_conaffinity[g] = bits
        m.body_contype[b], m.body_conaffinity[b] = bits

    def _park(self, i: int) -> None:
        """Park slot i under the table: hidden, touching nothing, weightless and at rest."""
        m, d = self.model, self.data
        g = self._obj_geom[i]
        self._set_collision_bits(i, BITS_PARKED)
        m.geom_group[g] = GROUP_HIDDEN
        m.body_gravcomp[self._obj_body[i]] = 1.0
        q = self._obj_qadr[i]
        d.qpos[q : q + 7] = [-0.3 + 0.2 * i, 0.0, -0.3, 1, 0, 0, 0]
        d.qvel[self._obj_vadr[i] : self._obj_vadr[i] + 6] = 0
        self._active[i] = False

    def _activate(self, i: int) -> None:
        m = self.model
        g = self._obj_geom[i]
        self._set_collision_bits(i, BITS_ACTIVE)
        m.geom_group[g] = GROUP_VISIBLE
        m.body_gravcomp[self._obj_body[i]] = 0.0
        self._active[i] = True

    def _place(self, i: int, xy: np.ndarray, yaw: float) -> None:
        q, v = self._obj_qadr[i], self._obj_vadr[i]
        self.data.qpos[q : q + 7] = [
            xy[0],
            xy[1],
            OBJECT_HALF_HEIGHT,
            np.cos(yaw / 2),
            0,
            0,
            np.sin(yaw / 2),
        ]
        self.data.qvel[v : v + 6] = 0

    def _apply_dynamics_params(self) -> None:
        """Write masses and friction into the model and refresh MuJoCo's derived constants."""
        m = self.model
        scale = self._mass / self._base_mass
        m.body_mass[self._obj_body] = self._mass
        m.body_inertia[self._obj_body] = self._base_inertia * scale[:, None]
        m.geom_friction[self._obj_geom, 0] = self._friction
        # mj_setConst recomputes invweight/subtree mass from qpos0 and overwrites data: keep it.
        saved = self.physics_state()
        mujoco.mj_setConst(m, self.data)
        self.restore_physics(saved)

    # ------------------------------------------------------------------ kinematics
    def _ik(self, target: np.ndarray) -> np.ndarray:
        """Joint angles placing the wrist at target[:2] with the paddle at world angle target[2].

        Two equal links: the elbow always bends the same way (no flips); scalar math, it runs
        every step.
        """
        dx, dy = target[0] - self._base_xy[0], target[1] - self._base_xy[1]
        r = min(max(math.hypot(dx, dy), 0.02), 2 * LINK - 1e-4)
        cos_elbow = min(max((r * r - 2 * LINK * LINK) / (2 * LINK * LINK), -1.0), 1.0)
        elbow = math.acos(cos_elbow)
        shoulder = math.atan2(dy, dx) - math.atan2(LINK * math.sin(elbow), LINK * (1 + cos_elbow))
        return np.array([shoulder, elbow, target[2] - shoulder - elbow])

    def _ee(self) -> np.ndarray:
        return self.data.site_xpos[self._ee_site].copy()

    def _paddle_angle(self) -> float:
        return float(self.data.qpos[self._arm_qadr].sum())

    def _set_arm(self, target: np.ndarray) -> None:
        q = self._ik(target)
        self.data.qpos[self._arm_qadr] = q
        self.data.qvel[self._arm_vadr] = 0
        self.data.ctrl[:] = q
        self._target = target.copy() if self.control == "ee" else q.copy()

    # ------------------------------------------------------------------ gymnasium API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        rng = self.np_random
        mujoco.mj_resetData(self.model, self.data)
        self._mass, self._friction = self._base_mass.copy(), self._base_friction.copy()
        for i in range(MAX_OBJECTS):
            self._park(i)
        ee = np.array([rng.uniform(-0.1, 0.1), rng.uniform(0.06, 0.12)])
        self._set_arm(np.array([ee[0], ee[1], rng.uniform(-np.pi / 4, np.pi / 4)]))
        taken = [ee]
        slots: Any = range(self.n_objects)
        if self._count_range is not None:  # extra draws only here: fixed counts keep their seeds
            lo, hi = self._count_range
            slots = np.sort(rng.choice(hi, int(rng.integers(lo, hi + 1)), replace=False))
        for i in slots:
            i = int(i)
            xy = _sample_free(rng, taken, low=(-0.11, -0.11), high=(0.11, 0.05), gap=0.065)
            taken.append(xy)
            self._activate(i)
            self._place(i, xy, rng.uniform(-np.pi, np.pi))
        if self.task == "reach":
            self._goal = rng.uniform(-0.11, 0.11, 2)
        else:
            start = taken[1]
            while True:
                goal = rng.uniform(-0.11, 0.11, 2)
                if np.linalg.norm(goal - start) > 0.06:
                    break
            self._goal = goal
        self._elapsed = 0
        self._update_goal_site()
        self._apply_dynamics_params()  # also runs mj_forward
        return self._obs(), self._info(self._reward_terms(np.zeros(3)))

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        a = validate_action(action, (3,))
        self._advance(a)
        terms = self._reward_terms(a)
        info = self._info(terms)
        truncated = self.time_limit is not None and self._elapsed >= self.time_limit
        return self._obs(), sum(terms.values()), False, truncated, info

    def advance(self, action: Any) -> None:
        """:meth:`step`'s motion alone: the same controller and physics, without the
        observation, reward and info a step also computes (half its time or more). For
        callers that roll the simulator out and read the state only at the end (a planner
        with MuJoCo as its model)."""
        self._advance(validate_action(action, (3,)))

    def _advance(self, a: np.ndarray) -> None:
        if self.control == "ee":  # scalar math: this runs every step
            x, y, phi = self._target
            x = min(max(x + EE_STEP * a[0], -EE_LIMIT), EE_LIMIT)
            y = min(max(y + EE_STEP * a[1], -EE_LIMIT), EE_LIMIT)
            phi = min(max(phi + ROT_STEP * a[2], -PADDLE_LIMIT), PADDLE_LIMIT)
            ee = self.data.site_xpos[self._ee_site]
            dist = math.hypot(x - ee[0], y - ee[1])
            if dist > MAX_LAG:  # blocked arm: do not wind the target up
                x = ee[0] + (x - ee[0]) * (MAX_LAG / dist)
                y = ee[1] + (y - ee[1]) * (MAX_LAG / dist)
            self._target = np.array([x, y, phi])
            self.data.ctrl[:] = self._ik(self._target)
        else:
            self._target = self._target + JOINT_STEP * a
            self.data.ctrl[:] = self._target
        mujoco.mj_step(self.model, self.data, nstep=self.frame_skip)
        # mj_step leaves poses and contacts one substep stale (computed before integrating).
        # Recompute the position stage so frames and ground truth are functions of the state:
        # rendering a restored state then gives the same frame. The warm start is untouched.
        mujoco.mj_fwdPosition(self.model, self.data)
        self._elapsed += 1

    # ------------------------------------------------------------------ observation, info
    def state_vector(self) -> np.ndarray:
        """The ``obs_type=\"state\"`` observation of the current instant."""
        d = self.data
        ee, phi = self._ee(), self._paddle_angle()
        parts = [
            d.qpos[self._arm_qadr],
            d.qvel[self._arm_vadr],
            ee[:2],
            [np.cos(phi), np.sin(phi)],
            self._goal,
        ]
        for i in range(MAX_OBJECTS):
            if not self._active[i]:
                parts.append(np.zeros(7))
                continue
            q, v = self._obj_qadr[i], self._obj_vadr[i]
            yaw = _yaw(d.qpos[q + 3 : q + 7])
            parts.append(
                [1.0, d.qpos[q], d.qpos[q + 1], np.cos(yaw), np.sin(yaw), d.qvel[v], d.qvel[v + 1]]
            )
        return np.concatenate([np.asarray(p, np.float64) for p in parts])

    def _obs(self) -> Any:
        if self.obs_type == "state":
            return self.state_vector()
        if self.obs_type == "pixels":
            return self.render_rgb()
        return {"pixels": self.render_rgb(), "state": self.state_vector()}

    def ground_truth(self) -> dict[str, np.ndarray]:
        """Poses (world and pixel), contacts and goal at the current instant (see class doc)."""
        qpos = self.data.qpos
        ee = self._ee()
        obj_pos = qpos[self._obj_pos_idx]
        goal3 = np.array([self._goal[0], self._goal[1], 0.0])
        pixels = self.camera.world_to_pixel(np.concatenate([ee[None], obj_pos, goal3[None]]))
        arm_obj, obj_obj = self._contacts()
        return {
            "ee_pos": ee,
            "ee_pixel": pixels[0],
            "paddle_angle": np.float64(self._paddle_angle()),
            "joint_pos": qpos[self._arm_qadr],
            "object_pos": obj_pos,
            "object_quat": qpos[self._obj_quat_idx],
            "object_pixel": pixels[1:-1],
            "object_active": self._active.copy(),
            "contact_arm_object": arm_obj,
            "contact_object_object": obj_obj,
            "goal": self._goal.copy(),
            "goal_pixel": pixels[-1],
        }

    def _contacts(self) -> tuple[np.ndarray, np.ndarray]:
        arm_obj = np.zeros(MAX_OBJECTS, bool)
        obj_obj = np.zeros((MAX_OBJECTS, MAX_OBJECTS), bool)
        ncon = self.data.ncon
        if ncon:
            ent = self._entity_of_geom[self.data.contact.geom[:ncon]]  # (ncon, 2)
            for a, b in ent:
                if a == -1 and b >= 0:
                    arm_obj[b] = True
                elif b == -1 and a >= 0:
                    arm_obj[a] = True
                elif a >= 0 and b >= 0:
                    obj_obj[a, b] = obj_obj[b, a] = True
        return arm_obj, obj_obj

    def _reward_terms(self, action: np.ndarray) -> dict[str, float]:
        ee = self.data.site_xpos[self._ee_site]
        goal = self._goal
        ctrl = -CTRL_COST * float(action @ action)
        if self.task == "reach":
            dist = math.hypot(ee[0] - goal[0], ee[1] - goal[1])
            return {"reward_dist": -dist, "reward_ctrl": ctrl}
        q = self._obj_qadr[self.target_object()]
        ox, oy = self.data.qpos[q], self.data.qpos[q + 1]
        return {
            "reward_dist": -math.hypot(ox - goal[0], oy - goal[1]),
            "reward_near": -NEAR_WEIGHT * math.hypot(ee[0] - ox, ee[1] - oy),
            "reward_ctrl": ctrl,
        }

    def target_object(self) -> int:
        """The slot of the object the push task is about: the first active slot (0 unless a scene of
        varied object sets, or an intervention, leaves it empty)."""
        active = np.flatnonzero(self._active)
        return int(active[0]) if active.size else 0

    def _info(self, terms: dict[str, float]) -> dict[str, Any]:
        info: dict[str, Any] = self.ground_truth()
        info.update(terms)
        info["is_success"] = bool(-terms["reward_dist"] < SUCCESS_DIST)
        return info

    # ------------------------------------------------------------------ rendering
    def _update_goal_site(self) -> None:
        """Place the goal marker (call before mj_forward: site poses come from kinematics)."""
        self.model.site_pos[self._goal_site, :2] = self._goal
        self.model.site_rgba[self._goal_site, 3] = 0.6 if self.show_goal else 0.0

    def render_state(self, state: ArmState) -> np.ndarray:
        """Render any state without disturbing the current one."""
        current = self.get_state()
        try:
            self.set_state(state)
            return self.render_rgb()
        finally:
            self.set_state(current)

    def goal_state(self) -> ArmState:
        """The current state with the task solved: the task's object (:meth:`target_object`,
        push) or the end effector (reach) at the goal, everything else unchanged. Render it with
        :meth:`render_goal`."""
        current = self.get_state()
        try:
            if self.task == "reach":
                self._set_arm(np.array([self._goal[0], self._goal[1], self._paddle_angle()]))
            else:
                i = self.target_object()
                q = self._obj_qadr[i]
                self._place(i, self._goal, _yaw(self.data.qpos[q + 3 : q + 7]))
            mujoco.mj_forward(self.model, self.data)
            return self.get_state()
        finally:
            self.set_state(current)

    def render_goal(self) -> np.ndarray:
        """Goal image: the frame of :meth:`goal_state` (for planning toward an image)."""
        return self.render_state(self.goal_state())

    # ------------------------------------------------------------------ full state
    def get_state(self) -> ArmState:
        """Snapshot of everything that decides the future (see :class:`ArmState`)."""
        return ArmState(
            physics=self.physics_state(),
            target=self._target.copy(),
            goal=self._goal.copy(),
            object_active=self._active.copy(),
            object_mass=self._mass.copy(),
            object_friction=self._friction.copy(),
            elapsed_steps=self._elapsed,
            rng_state=self.np_random.bit_generator.state,  # a fresh dict on every read
        )

    def state_from_arrays(self, arrays: dict[str, np.ndarray]) -> ArmState:
        """Rebuild a snapshot stored as ``gt/state/*`` (see :meth:`ArmState.to_arrays`)."""
        return ArmState.from_arrays(arrays)

    def set_state(self, state: ArmState) -> None:
        """Restore a snapshot from :meth:`get_state` (or :meth:`ArmState.from_arrays`)."""
        self.check_physics_shape(state.physics, type(self).__name__)
        for i in range(MAX_OBJECTS):
            self._activate(i) if state.object_active[i] else self._park(i)
        self._mass = np.array(state.object_mass, np.float64)
        self._friction = np.array(state.object_friction, np.float64)
        self._target = np.array(state.target, np.float64)
        self._goal = np.array(state.goal, np.float64)
        self._elapsed = int(state.elapsed_steps)
        if state.rng_state is not None:
            self.np_random.bit_generator.state = state.rng_state  # the setter copies
        self._update_goal_site()
        self._apply_dynamics_params()  # model constants for these masses (mj_setConst)
        self.restore_physics(state.physics)

    # ------------------------------------------------------------------ interventions
    def _check_slot(self, i: int, *, active: bool | None = True) -> int:
        if not (isinstance(i, (int, np.integer)) and 0 <= i < MAX_OBJECTS):
            raise ValueError(f"object index {i!r}; expected an int in 0..{MAX_OBJECTS - 1}")
        if active is not None and bool(self._active[i]) != active:
            state = "active" if active else "free"
            raise ValueError(f"object slot {i} is not {state}; active slots: {self.active_objects}")
        return int(i)

    @property
    def active_objects(self) -> list[int]:
        return [int(i) for i in np.flatnonzero(self._active)]

    def _check_xy(self, xy: Any) -> np.ndarray:
        p = np.asarray(xy, np.float64)
        lim = ARENA_HALF - 0.022
        if p.shape != (2,) or not np.all(np.isfinite(p)) or np.any(np.abs(p) > lim):
            shown = f"({p[0]:.3f}, {p[1]:.3f}) m" if p.shape == (2,) else repr(xy)
            raise ValueError(
                f"position {shown}; expected finite (x, y) with |x|, |y| <= {lim:.3f} m "
                "(on the table)"
            )
        return p

    def move_object(self, i: int, xy: Any, yaw: float | None = None) -> None:
        """do(object i at xy): teleport an active object (at rest) to table position xy (m)."""
        i = self._check_slot(i)
        q = self._obj_qadr[i]
        yaw = _yaw(self.data.qpos[q + 3 : q + 7]) if yaw is None else float(yaw)
        self._place(i, self._check_xy(xy), yaw)
        mujoco.mj_forward(self.model, self.data)

    def add_object(self, xy: Any, yaw: float = 0.0, slot: int | None = None) -> int:
        """do(add an object at xy): activate a free slot (the first unless given); returns it."""
        p = self._check_xy(xy)
        if slot is None:
            free = np.flatnonzero(~self._active)
            if free.size == 0:
                raise ValueError(f"all {MAX_OBJECTS} object slots are active; remove one first")
            slot = int(free[0])
        i = self._check_slot(slot, active=False)
        self._activate(i)
        self._place(i, p, yaw)
        mujoco.mj_forward(self.model, self.data)
        return i

    def remove_object(self, i: int) -> None:
        """do(remove object i): park it out of view with its collisions off."""
        self._park(self._check_slot(i))
        mujoco.mj_forward(self.model, self.data)

    def set_object_mass(self, i: int, mass: float) -> None:
        """do(mass of object i = mass kg); inertia scales with it."""
        i = self._check_slot(i, active=None)
        if not (np.isfinite(mass) and mass > 0):
            raise ValueError(f"mass={mass!r}; expected a positive number of kg")
        self._mass[i] = float(mass)
        self._apply_dynamics_params()

    def set_object_friction(self, i: int, friction: float) -> None:
        """do(sliding friction of object i = friction). MuJoCo takes the larger coefficient of a
        contact pair; the table's is 0.1, so values below 0.1 act as 0.1 on the table."""
        i = self._check_slot(i, active=None)
        if not (np.isfinite(friction) and friction >= 0):
            raise ValueError(f"friction={friction!r}; expected a non-negative number")
        self._friction[i] = float(friction)
        self._apply_dynamics_params()


class ReachEnv(ArmEnv):
    """``latentplay/Reach-v0``: move the end effector to a goal point on the table.

    No objects (all four slots parked; :meth:`add_object` can bring one in). The goal is drawn
    uniformly in a 22 x 22 cm square at reset. Rewards: ``reward_dist``, ``reward_ctrl``.
    See :class:`ArmEnv` for actions, observations, ground truth and version history.
    """

    task = "reach"
    default_objects = 0


class PushEnv(ArmEnv):
    """``latentplay/Push-v0``: push the red box (object slot 0) to a goal point.

    The box starts at a random free spot, the goal at least 6 cm away from it. Rewards:
    ``reward_dist`` (box to goal), ``reward_near`` (end effector to box), ``reward_ctrl``.
    See :class:`ArmEnv` for actions, observations, ground truth and version history.
    """

    task = "push"
    default_objects = 1


class PushMultiEnv(ArmEnv):
    """``latentplay/PushMulti-v0``: several objects (red box, green cylinder, blue box, yellow
    cylinder; ``n_objects`` of them, default 3, up to 4) that push each other. The goal is for
    object 0 (the red box); the others are obstacles and causes. ``n_objects=[lo, hi]`` draws
    per episode how many objects and which of slots 0..hi-1 hold them (the goal is then for the
    first of them): scenes of varied object sets, for models that must handle any. Same rewards as
    :class:`PushEnv`. See :class:`ArmEnv` for actions, observations and ground truth.
    """

    task = "push"
    default_objects = 3


def _yaw(quat: np.ndarray) -> float:
    w, x, y, z = quat
    return float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))


def _object_counts(value: Any, low: int, cls: type) -> tuple[int, int]:
    """``n_objects`` (a count, or ``[lo, hi]``: a count drawn per episode) -> ``(lo, hi)``."""
    sequence = hasattr(value, "__len__") and not isinstance(value, str)  # list, ListConfig
    pair = list(value) if sequence else [value, value]
    ok = len(pair) == 2 and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in pair
    )
    if not ok or not low <= pair[0] <= pair[1] <= MAX_OBJECTS:
        raise ValueError(
            f"n_objects={value!r} for {cls.__name__}; expected an integer in {low}..{MAX_OBJECTS} "
            f"or a range [lo, hi] with {low} <= lo <= hi <= {MAX_OBJECTS}"
        )
    return int(pair[0]), int(pair[1])


def _sample_free(
    rng: np.random.Generator, taken: list[np.ndarray], low: tuple, high: tuple, gap: float
) -> np.ndarray:
    for _ in range(1000):
        xy = rng.uniform(low, high)
        if all(np.linalg.norm(xy - t) >= gap for t in taken):
            return xy
    raise RuntimeError(f"no free spot {gap} m from {len(taken)} others in {low}..{high}")
