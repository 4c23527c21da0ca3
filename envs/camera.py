"""Exact pinhole projection between MuJoCo world coordinates and image pixels of a named camera."""

from __future__ import annotations

import mujoco
import numpy as np


class CameraProjection:
    """World <-> pixel for one fixed camera, matching ``mujoco.Renderer`` frames exactly.

    Pixel coordinates are continuous ``(u, v) = (column, row)``, origin at the top-left corner
    of the image, pixel ``(j, i)`` covering ``[j, j+1) x [i, i+1)``; ``np.floor`` gives the
    index. MuJoCo cameras look along their -z axis with +y up and a vertical field of view
    ``fovy``; square pixels.
    """

    def __init__(self, model: mujoco.MjModel, camera: str, width: int, height: int) -> None:
        cam_id = model.camera(camera).id
        if (
            model.cam_bodyid[cam_id] != 0
            or model.cam_mode[cam_id] != mujoco.mjtCamLight.mjCAMLIGHT_FIXED
        ):
            raise ValueError(f"camera {camera!r} must be fixed in the world body to be projected")
        self.width, self.height = width, height
        fovy = np.deg2rad(model.cam_fovy[cam_id])
        self.focal = 0.5 * height / np.tan(0.5 * fovy)  # focal length in pixels
        # A fixed world camera's pose is its model pose: no need to read data every call.
        self.pos = model.cam_pos[cam_id].copy()
        rot = np.zeros(9)
        mujoco.mju_quat2Mat(rot, model.cam_quat[cam_id])
        self.rot = rot.reshape(3, 3)  # columns: camera axes in world

    def world_to_pixel(self, points: np.ndarray) -> np.ndarray:
        """points: (..., 3) world metres -> (..., 2) pixel (u, v). Points behind give NaN."""
        cam = (np.asarray(points, np.float64) - self.pos) @ self.rot  # (..., 3) camera axes
        depth = -cam[..., 2:3]
        if (depth <= 0).any():
            depth = np.where(depth > 0, depth, np.nan)  # behind the camera: NaN, no warning
        uv = cam[..., :2] * (self.focal / depth)
        uv[..., 0] += 0.5 * self.width
        uv[..., 1] = 0.5 * self.height - uv[..., 1]
        return uv

    def pixel_to_world(self, uv: np.ndarray, z: float = 0.0) -> np.ndarray:
        """uv: (..., 2) pixels -> (..., 3) world points on the horizontal plane at height z."""
        uv = np.asarray(uv, np.float64)
        pos, rot = self.pos, self.rot
        x = (uv[..., 0] - 0.5 * self.width) / self.focal
        y = -(uv[..., 1] - 0.5 * self.height) / self.focal
        ray = np.stack([x, y, -np.ones_like(x)], axis=-1) @ rot.T  # camera -> world directions
        t = (z - pos[2]) / ray[..., 2]
        return pos + t[..., None] * ray
