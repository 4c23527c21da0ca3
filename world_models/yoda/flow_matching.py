"""Conditional flow matching on the optimal-transport path (Lipman et al. 2023), and its ODE.

Path from noise ``x0 ~ N(0, I)`` at ``t = 0`` to data ``x1`` at ``t = 1``:
``x_t = (1 - (1 - s) t) x0 + t x1`` with ``s = sigma_min``; its velocity ``u = x1 - (1 - s) x0``
is what the network regresses (MSE). Sampling integrates ``dx/dt = v(x, t)`` from noise with
Euler or Heun steps.

A network may predict the data ``x1`` instead of the velocity (:func:`velocity_from_data`): the
velocity, and so the loss, are the same functions of its output, but a pixel whose data is
trivially known (a static background: zero frame difference) is then a constant output, and
the last ODE step lands on the prediction exactly (no leftover noise). Pixel-space generators
train much faster this way (Li & He 2025, "Back to Basics: Let Denoising Generative Models
Denoise").
"""

from __future__ import annotations

from collections.abc import Callable

import torch

SIGMA_MIN = 1e-7
SOLVERS = ("euler", "heun")

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t, t (B,)) -> v


def _bcast(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, *([1] * (x.ndim - 1)))


def ot_path(
    x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, sigma_min: float = SIGMA_MIN
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x_t, u_t)``: the point on the path at times ``t (B,)`` and its target velocity."""
    tb = _bcast(t, x1)
    xt = (1 - (1 - sigma_min) * tb) * x0 + tb * x1
    return xt, x1 - (1 - sigma_min) * x0


def velocity_from_data(
    x1_hat: torch.Tensor,
    xt: torch.Tensor,
    t: torch.Tensor,
    sigma_min: float = SIGMA_MIN,
    min_denominator: float = 0.05,
) -> torch.Tensor:
    """The path's velocity at ``x_t`` if the data were ``x1_hat``: ``x1_hat - (1 - s) x0_hat``
    with ``x0_hat = (x_t - t x1_hat) / (1 - (1 - s) t)``; the denominator is clamped at
    ``min_denominator`` (near ``t = 1`` the noise is no longer identifiable)."""
    tb = _bcast(t, xt)
    denom = (1 - (1 - sigma_min) * tb).clamp_min(min_denominator)
    return (x1_hat - (1 - sigma_min) * xt) / denom


def flow_matching_loss(
    velocity: Velocity,
    x1: torch.Tensor,
    generator: torch.Generator | None = None,
    sigma_min: float = SIGMA_MIN,
    x0: torch.Tensor | None = None,
    t: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean squared error between ``velocity(x_t, t)`` and the path's velocity; ``x0`` and
    ``t`` are drawn (noise, uniform times) unless given. ``weight`` (broadcast to ``x1``):
    per-element weights of the squared error (the mean is still over all elements)."""
    b = x1.shape[0]
    if x0 is None:
        x0 = torch.randn(x1.shape, generator=generator, device=x1.device, dtype=x1.dtype)
    if t is None:
        t = torch.rand(b, generator=generator, device=x1.device, dtype=x1.dtype)
    xt, u = ot_path(x0, x1, t, sigma_min)
    err = (velocity(xt, t) - u).pow(2)
    return (err if weight is None else err * weight).mean()


def integrate(
    velocity: Velocity, x0: torch.Tensor, steps: int, solver: str = "euler"
) -> torch.Tensor:
    """``x(1)`` from ``x(0) = x0`` in ``steps`` equal steps (Heun: 2 evaluations per step,
    except the last, which is Euler's, as in EDM: ``2 * steps - 1`` evaluations)."""
    if solver not in SOLVERS:
        raise ValueError(f"solver={solver!r}; expected one of {list(SOLVERS)}")
    if steps < 1:
        raise ValueError(f"ODE steps={steps}; expected >= 1")
    x = x0
    b = x0.shape[0]
    dt = 1.0 / steps
    for i in range(steps):
        t = torch.full((b,), i * dt, device=x.device, dtype=x.dtype)
        v = velocity(x, t)
        if solver == "heun" and i < steps - 1:
            x_pred = x + dt * v
            v2 = velocity(x_pred, t + dt)
            x = x + dt * 0.5 * (v + v2)
        else:
            x = x + dt * v
    return x
