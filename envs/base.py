"""What every latentplay environment offers beside the Gymnasium API (collection relies on it)."""

from __future__ import annotations

import atexit
import weakref
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import mujoco
import numpy as np

OBS_TYPES = ("pixels", "state", "pixels_state")


@runtime_checkable
class GroundTruthEnv(Protocol):
    """The unwrapped env's ground-truth side. Frames go to models; all of this stays in ``gt/``.

    - ``render_rgb()``: ``(H, W, 3) uint8`` from the env's fixed camera (``camera_name``).
    - ``render_segmentation()``: ``(H, W) uint8`` labels, 0 background (env docs give the rest).
    - ``ground_truth()``: named arrays of fixed shape for the current instant.
    - ``get_state()`` / ``set_state()``: a full snapshot; replaying from it is exact to the bit.
    - ``state_from_arrays()``: rebuild a snapshot from its stored ``to_arrays()`` form.
    - ``state_vector()``: the ``obs_type="state"`` observation of the current instant.
    """

    camera_name: str
    width: int
    height: int

    def render_rgb(self) -> np.ndarray: ...
    def render_segmentation(self) -> np.ndarray: ...
    def ground_truth(self) -> dict[str, np.ndarray]: ...
    def get_state(self) -> Any: ...
    def set_state(self, state: Any) -> None: ...
    def state_from_arrays(self, arrays: dict[str, np.ndarray]) -> Any: ...
    def state_vector(self) -> np.ndarray: ...


def validate_action(action: Any, shape: tuple[int, ...]) -> np.ndarray:
    """float64 copy of ``action`` clipped to [-1, 1]; ValueError for a wrong shape or NaN/inf."""
    try:
        a = np.asarray(action, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"action {action!r} is not numeric; expected shape {shape}") from e
    if a.shape != shape:
        raise ValueError(f"action {a.tolist()} has shape {a.shape}; expected {shape} in [-1, 1]")
    if not np.isfinite(a).all():
        raise ValueError(f"action {a.tolist()} has NaN or inf; expected finite values in [-1, 1]")
    return a.clip(-1.0, 1.0)


def check_time_limit(time_limit: int | None) -> int | None:
    if time_limit is None:
        return None
    if isinstance(time_limit, bool) or int(time_limit) != time_limit or time_limit < 1:
        raise ValueError(f"time_limit={time_limit!r}; expected a positive number of steps or None")
    return int(time_limit)


def check_choice(name: str, value: Any, choices: tuple[Any, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r}; expected one of {list(choices)}")


def set_fast_visuals(model: mujoco.MjModel) -> None:
    """Software-rasterizer settings (docs/BENCHMARKS.md: ~100x faster than MuJoCo's defaults):
    no shadow map, no multisampling, coarse primitives, no light casting shadows. Call before
    the first render: the GL context sizes its buffers from these."""
    q = model.vis.quality
    q.shadowsize, q.offsamples, q.numslices, q.numstacks, q.numquads = 0, 0, 8, 3, 1
    model.light_castshadow[:] = 0


_RENDERERS: weakref.WeakSet[mujoco.Renderer] = weakref.WeakSet()
_CLOSE_AT_EXIT: list[bool] = []


def make_renderer(model: mujoco.MjModel, height: int, width: int) -> mujoco.Renderer:
    """A ``mujoco.Renderer`` closed at interpreter exit before EGL is torn down (otherwise its
    destructor prints EGL errors). mujoco registers ``eglTerminate`` with atexit when it makes
    the first context; registering after it makes ours run first."""
    r = mujoco.Renderer(model, height, width)
    _RENDERERS.add(r)
    if not _CLOSE_AT_EXIT:
        atexit.register(_close_renderers)
        _CLOSE_AT_EXIT.append(True)
    return r


def _close_renderers() -> None:
    for r in list(_RENDERERS):
        try:
            r.close()
        except Exception:  # best effort at shutdown
            pass


_INTEGRATION = mujoco.mjtState.mjSTATE_INTEGRATION


class MujocoCameraEnv(gym.Env):
    """Rendering and physics-state plumbing shared by the latentplay MuJoCo envs.

    A subclass sets ``model``, ``data``, ``width``, ``height``, ``render_mode``,
    ``render_camera`` (the fixed camera's name or id) and ``label_of_geom`` (``(ngeom,) uint8``
    segmentation label per geom) in its constructor, and calls ``super().__init__()``.
    """

    model: mujoco.MjModel
    data: mujoco.MjData
    width: int
    height: int
    render_mode: str | None
    render_camera: int | str
    label_of_geom: np.ndarray

    _renderer: mujoco.Renderer | None = None
    _vopt: mujoco.MjvOption | None = None

    def _get_renderer(self) -> mujoco.Renderer:
        if self._renderer is None:
            self._renderer = make_renderer(self.model, self.height, self.width)
            self._vopt = mujoco.MjvOption()
        return self._renderer

    def render_rgb(self) -> np.ndarray:
        """The fixed camera's frame, ``(height, width, 3) uint8``."""
        r = self._get_renderer()
        r.update_scene(self.data, camera=self.render_camera, scene_option=self._vopt)
        return r.render()

    def render_segmentation(self) -> np.ndarray:
        """Per-pixel labels ``(height, width) uint8`` from ``label_of_geom`` (0: background)."""
        r = self._get_renderer()
        r.enable_segmentation_rendering()
        try:
            r.update_scene(self.data, camera=self.render_camera, scene_option=self._vopt)
            seg = r.render()
        finally:
            r.disable_segmentation_rendering()
        ids, types = seg[..., 0], seg[..., 1]
        is_geom = (types == mujoco.mjtObj.mjOBJ_GEOM) & (ids >= 0)
        labels = np.zeros(ids.shape, np.uint8)
        labels[is_geom] = self.label_of_geom[ids[is_geom]]
        return labels

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            gym.logger.warn("render() called with render_mode=None; pass render_mode='rgb_array'")
            return None
        return self.render_rgb()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def physics_state(self) -> np.ndarray:
        """``mj_getState(mjSTATE_INTEGRATION)``: time, qpos, qvel, act, ctrl, warm start, ..."""
        out = np.empty(mujoco.mj_stateSize(self.model, _INTEGRATION))
        mujoco.mj_getState(self.model, self.data, out, _INTEGRATION)
        return out

    def check_physics_shape(self, physics: np.ndarray, what: str) -> None:
        expected = mujoco.mj_stateSize(self.model, _INTEGRATION)
        if np.shape(physics) != (expected,):
            raise ValueError(
                f"state.physics has shape {np.shape(physics)}; {what} expects ({expected},): "
                "the state comes from another scene or MuJoCo version"
            )

    def restore_physics(self, physics: np.ndarray) -> None:
        """Set the integration state and recompute everything derived from it (poses,
        contacts). mj_forward may touch the warm start: it is set again so replays are exact."""
        physics = np.asarray(physics, np.float64)
        mujoco.mj_setState(self.model, self.data, physics, _INTEGRATION)
        mujoco.mj_forward(self.model, self.data)
        mujoco.mj_setState(self.model, self.data, physics, _INTEGRATION)
