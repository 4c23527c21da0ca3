"""OpenGL platform selection for MuJoCo rendering. Must run before ``import mujoco``."""

from __future__ import annotations

import os
import sys
import warnings


def configure_gl() -> str | None:
    """Pick a headless OpenGL platform when none was chosen, and return the one in use.

    On Linux without a display, ``MUJOCO_GL`` defaults to ``egl`` (Mesa EGL renders on the CPU
    here; ``osmesa`` needs Debian's libosmesa6). ``LP_NUM_THREADS=0`` keeps Mesa's llvmpipe
    rasterizer on the calling thread, which is faster for 64x64 frames (docs/BENCHMARKS.md).
    Both are defaults only: a value already in the environment wins.
    """
    headless = sys.platform.startswith("linux") and not os.environ.get("DISPLAY")
    if headless:
        if "mujoco" in sys.modules and "MUJOCO_GL" not in os.environ:
            warnings.warn(
                "mujoco was imported before latentplay.envs with MUJOCO_GL unset on a headless "
                "machine: rendering will fail. Set MUJOCO_GL=egl in the environment, or import "
                "latentplay.envs first.",
                RuntimeWarning,
                stacklevel=3,
            )
        os.environ.setdefault("MUJOCO_GL", "egl")
        if os.environ["MUJOCO_GL"] == "egl":
            os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    os.environ.setdefault("LP_NUM_THREADS", "0")
    return os.environ.get("MUJOCO_GL")
