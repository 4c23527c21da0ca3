"""Cross-entropy method: refit the sampling distribution to the elites, uniformly weighted
(DINO-WM's planner: 300 samples, top 30, horizon 5)."""

from __future__ import annotations

import torch

from latentplay.agents.planners.base import SamplingPlanner


class CEM(SamplingPlanner):
    """CEM with an optional ``momentum`` (fraction of the old mean and std kept each refit)."""

    name = "cem"

    def __init__(self, *args, momentum: float = 0.0, **kwargs) -> None:
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum={momentum}; expected 0 <= momentum < 1")
        self.momentum = momentum
        super().__init__(*args, **kwargs)

    @property
    def settings(self) -> dict[str, object]:
        return {**super().settings, "momentum": self.momentum}

    def _refit(self, u: torch.Tensor, ids: torch.Tensor | None, costs: torch.Tensor) -> None:
        m = self.momentum
        if self.spec.continuous:
            self.mean = m * self.mean + (1 - m) * u.mean(dim=0)
            std = u.std(dim=0, unbiased=False) if len(u) > 1 else torch.zeros_like(self.std)
            self.std = self._clamp_std(m * self.std + (1 - m) * std)
        if ids is not None:
            self._refit_probs(ids, torch.full((len(ids),), 1.0 / len(ids), device=ids.device))
