"""A random policy that fails while a file exists: a transient fault in a collection worker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from latentplay.agents.policies import RandomPolicy


class FailingRandomPolicy(RandomPolicy):
    """Raises at its ``after``-th action (counted over the worker process's life) while the
    file ``armed`` exists; with the file gone it is the plain random policy."""

    def __init__(self, action_space: Any, armed: str, after: int = 30, **kw: Any) -> None:
        super().__init__(action_space, **kw)
        self.armed, self.after, self.count = Path(armed), after, 0

    def act(self, obs: Any, info: dict[str, Any]) -> np.ndarray:
        self.count += 1
        if self.count == self.after and self.armed.exists():
            raise RuntimeError("injected fault")
        return super().act(obs, info)
