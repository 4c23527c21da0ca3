"""A policy that reads its env (``bind``): it steers the end effector toward the goal point,
which a collection policy sees only through the env it is bound to."""

from __future__ import annotations

from typing import Any

import numpy as np


class TowardGoalPolicy:
    name = "toward_goal"

    def __init__(self, action_space: Any) -> None:
        self.env: Any = None

    def bind(self, env: Any) -> None:
        self.env = env

    def reset(self, rng: np.random.Generator, info: dict[str, Any]) -> None:
        if self.env is None:
            raise RuntimeError("TowardGoalPolicy.reset() before bind(env)")

    def act(self, obs: Any, info: dict[str, Any]) -> np.ndarray:
        gt = self.env.ground_truth()
        step = np.clip(10.0 * (gt["goal"] - gt["ee_pos"][:2]), -1, 1)
        return np.array([step[0], step[1], 0.0], np.float32)
