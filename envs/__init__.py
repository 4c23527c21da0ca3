"""MuJoCo arm and pushing environments (Gymnasium), with ground truth kept beside the pixels.

Importing this package picks a headless OpenGL platform when none is set (``MUJOCO_GL=egl``)
and registers the environments::

    import gymnasium as gym
    import latentplay.envs  # noqa: F401  (registers latentplay/*)
    env = gym.make("latentplay/Push-v0", width=64, height=64)
"""

from latentplay.envs._gl import configure_gl

configure_gl()  # before anything imports mujoco

from latentplay.envs.registration import ENV_IDS, make, register_envs  # noqa: E402

register_envs()

__all__ = ["ENV_IDS", "make", "register_envs"]
