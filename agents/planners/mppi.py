"""Model-predictive path integral control: refit to the elites weighted by
``softmax(-cost / temperature)`` (TD-MPC2's planner: 512 samples, 64 elites, temperature 0.5,
std in [0.05, 2]). Elite costs are first scaled to [0, 1] (best 0, worst kept 1), so the
temperature means the same whatever the cost's units (image MSE or centimetres)."""

from __future__ import annotations

import torch

from latentplay.agents.planners.base import SamplingPlanner


class MPPI(SamplingPlanner):
    name = "mppi"

    def __init__(self, *args, temperature: float = 0.5, **kwargs) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature={temperature}; expected > 0")
        self.temperature = temperature
        super().__init__(*args, **kwargs)

    def weights(self, costs: torch.Tensor) -> torch.Tensor:
        finite = torch.isfinite(costs)
        if not finite.any():
            return torch.full_like(costs, 1.0 / len(costs))
        lo, hi = costs[finite].min(), costs[finite].max()
        z = (costs - lo) / (hi - lo).clamp(min=1e-12) / self.temperature
        return torch.softmax(torch.where(finite, -z, -torch.inf), dim=0)  # inf/NaN: weight 0

    @property
    def settings(self) -> dict[str, object]:
        return {**super().settings, "temperature": self.temperature}

    def _refit(self, u: torch.Tensor, ids: torch.Tensor | None, costs: torch.Tensor) -> None:
        w = self.weights(costs)
        if self.spec.continuous:
            self.mean = torch.einsum("e,ehc->hc", w, u)
            var = torch.einsum("e,ehc->hc", w, (u - self.mean) ** 2)
            self.std = self._clamp_std(var.sqrt())
        if ids is not None:
            self._refit_probs(ids, w)
