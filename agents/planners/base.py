"""Sampling planners over a world model's *learned* action space (no network code here).

A planner keeps a distribution over action sequences of ``horizon`` steps: a Gaussian per step
and dimension for the continuous part (sampled in units of ``spec.continuous_bound`` and clipped
to it), a categorical per step for the discrete part. Each iteration samples ``samples``
sequences, scores them with a ``cost`` callable (``Actions (N, H, ...) -> (N,) costs``, the only
link to a model), and refits the distribution on the best ``elites``; CEM and MPPI differ only
in the refit. ``plan()`` returns the mean (continuous) and mode (discrete) sequence and keeps it
for the next call, shifted by one step (warm start for receding-horizon control). A sparse-flow
spec (YODA: ``sparse_points = k``) is planned as its continuous part, ``(x, y, dx, dy)`` per
point in units of the bound.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from latentplay.world_models.protocol import Actions, ActionSpec

Cost = Callable[[Actions], torch.Tensor]


@dataclass
class Plan:
    """What :meth:`SamplingPlanner.plan` found. ``actions`` is ``(1, H, ...)``."""

    actions: Actions
    cost: float  # cost of ``actions`` (scored once more after the last iteration)
    best_sample_cost: float  # lowest cost of any sample drawn
    elite_costs: list[float]  # mean elite cost per iteration (falls as the planner converges)


class SamplingPlanner:
    """Shared sampling, warm start and bookkeeping of CEM and MPPI."""

    name = "sampling"

    def __init__(
        self,
        spec: ActionSpec,
        *,
        horizon: int = 5,
        samples: int = 300,
        elites: int = 30,
        iterations: int = 10,
        std_init: float = 0.5,
        std_min: float = 0.05,
        std_max: float = 2.0,
        min_prob: float = 0.02,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> None:
        if spec.continuous <= 0 and spec.discrete <= 0:
            raise ValueError(f"action spec {spec} has nothing to plan")
        for name, value in (("horizon", horizon), ("iterations", iterations)):
            if value < 1:
                raise ValueError(f"{name}={value}; expected >= 1")
        if not 1 <= elites <= samples:
            raise ValueError(f"elites={elites}, samples={samples}; expected 1 <= elites <= samples")
        if not 0 < std_min <= std_init <= std_max:
            raise ValueError(
                f"std_min={std_min}, std_init={std_init}, std_max={std_max}; "
                "expected 0 < std_min <= std_init <= std_max"
            )
        if spec.discrete and not 0 <= min_prob * spec.discrete < 1:
            raise ValueError(f"min_prob={min_prob}; expected 0 <= min_prob < 1/{spec.discrete}")
        self.spec, self.horizon, self.samples = spec, horizon, samples
        self.elites, self.iterations = elites, iterations
        self.std_init, self.std_min, self.std_max, self.min_prob = (
            std_init,
            std_min,
            std_max,
            min_prob,
        )
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.reset()

    @property
    def settings(self) -> dict[str, object]:
        """The planner's name and settings, as runs record them."""
        return {
            "name": self.name,
            "horizon": self.horizon,
            "samples": self.samples,
            "elites": self.elites,
            "iterations": self.iterations,
            "std_init": self.std_init,
            "std_min": self.std_min,
            "std_max": self.std_max,
            "min_prob": self.min_prob,
        }

    # ------------------------------------------------------------------ distribution
    def reset(self) -> None:
        """Forget the warm start (call at the start of an episode)."""
        h, c, k = self.horizon, self.spec.continuous, self.spec.discrete
        self.mean = torch.zeros(h, c, device=self.device)  # in units of the bound
        self.std = torch.full((h, c), self.std_init, device=self.device)
        self.probs = torch.full((h, k), 1.0 / k, device=self.device) if k else None

    def _shift(self, k: int = 1) -> None:
        """Receding horizon: drop the ``k`` executed steps, repeat the last, widen the std."""
        k = min(k, self.horizon)
        self.mean = torch.cat([self.mean[k:], self.mean[-1:].expand(k, -1)])
        self.std = torch.full_like(self.std, self.std_init)
        if self.probs is not None:
            uniform = torch.full_like(self.probs[-k:], 1.0 / self.spec.discrete)
            self.probs = torch.cat([self.probs[k:], uniform])

    def _sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """n sequences: normalized continuous (n, H, C) in [-1, 1], discrete ids (n, H).
        Sample 0 is the current mean / mode, so an iteration never loses the incumbent."""
        h, c = self.horizon, self.spec.continuous
        noise = torch.randn(n, h, c, generator=self.generator, device=self.device)
        u = (self.mean + self.std * noise).clamp(-1, 1)
        u[0] = self.mean.clamp(-1, 1)
        ids = None
        if self.probs is not None:
            ids = torch.multinomial(self.probs, n, replacement=True, generator=self.generator).T
            ids[0] = self.probs.argmax(dim=1)
        return u, ids

    def _actions(self, u: torch.Tensor, ids: torch.Tensor | None) -> Actions:
        cont = u * self.spec.continuous_bound if self.spec.continuous else None
        return Actions(continuous=cont, discrete=ids)

    def _refit(
        self, u: torch.Tensor, ids: torch.Tensor | None, costs: torch.Tensor
    ) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _refit_probs(self, ids: torch.Tensor, weights: torch.Tensor) -> None:
        """Categorical per step: weighted frequency of the elites' ids, floored at min_prob."""
        k = self.spec.discrete
        onehot = torch.nn.functional.one_hot(ids, k).float()  # (E, H, K)
        freq = torch.einsum("e,ehk->hk", weights, onehot)
        self.probs = self.min_prob + (1 - k * self.min_prob) * freq

    def _clamp_std(self, std: torch.Tensor) -> torch.Tensor:
        return std.clamp(self.std_min, self.std_max)

    # ------------------------------------------------------------------ planning
    def _score(self, cost: Cost, actions: Actions, n: int) -> torch.Tensor:
        costs = cost(actions)
        if costs.shape != (n,):
            raise ValueError(f"cost returned shape {tuple(costs.shape)}; expected ({n},)")
        c = costs.detach().float().to(self.device)
        if (c == -torch.inf).any():
            raise ValueError("cost returned -inf; costs must be finite, +inf or NaN (= rejected)")
        return torch.where(torch.isnan(c), torch.inf, c)  # NaN and +inf: never elites first

    @torch.no_grad()
    def plan(self, cost: Cost, warm_start: bool = True, executed: int = 1) -> Plan:
        """Optimize the action sequence for ``cost``; warm-starts from the previous call's plan
        unless ``warm_start=False``. ``executed``: how many of the returned steps the caller
        will carry out before asking again (the warm start is shifted by that many)."""
        if not warm_start:
            self.reset()
        elite_costs, best = [], float("inf")
        for _ in range(self.iterations):
            u, ids = self._sample(self.samples)
            costs = self._score(cost, self._actions(u, ids), self.samples)
            top = torch.topk(costs, self.elites, largest=False).indices
            self._refit(u[top], None if ids is None else ids[top], costs[top])
            elite_costs.append(float(costs[top].mean()))
            best = min(best, float(costs.min()))
        u = self.mean.clamp(-1, 1)[None]
        ids = None if self.probs is None else self.probs.argmax(dim=1)[None]
        final = self._actions(u, ids)
        final_cost = float(self._score(cost, final, 1)[0])
        self._shift(executed)
        return Plan(final, final_cost, min(best, final_cost), elite_costs)
