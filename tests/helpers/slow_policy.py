"""A random policy that takes its time, so a test can kill a collection mid-run."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from latentplay.agents.policies import RandomPolicy


class SlowRandomPolicy(RandomPolicy):
    def __init__(self, action_space: Any, delay: float = 0.002, **kw: Any) -> None:
        super().__init__(action_space, **kw)
        self.delay = delay

    def act(self, obs: Any, info: dict[str, Any]) -> np.ndarray:
        time.sleep(self.delay)
        return super().act(obs, info)
