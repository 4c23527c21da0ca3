"""Grounding recovers known maps between learned and env actions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentplay.agents.grounding import Grounding
from latentplay.world_models.protocol import Actions, ActionSpec

SPEC = ActionSpec(continuous=2, continuous_bound=0.1, discrete=3)
W = torch.tensor([[4.0, -1.0], [0.5, 3.0], [0.0, 0.0]])  # shift -> env x, y (rot unused)
ROT = torch.tensor([-0.6, 0.0, 0.6])  # local action id -> wrist command


def _labelled(n: int, seed: int = 0) -> tuple[Actions, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shift = torch.randn(n, 2, generator=g) * 0.05
    ids = torch.randint(3, (n,), generator=g)
    env = shift @ W.T + torch.tensor([0.1, -0.05, 0.0])
    env[:, 2] = ROT[ids]
    return Actions(shift, ids), env


def test_linear_grounding_recovers_a_known_linear_map() -> None:
    learned, env = _labelled(50)
    g = Grounding(SPEC, env_dim=3, kind="linear").fit(learned, env)
    test_learned, test_env = _labelled(200, seed=1)
    torch.testing.assert_close(g.to_env(test_learned), test_env.clamp(-1, 1), atol=1e-4, rtol=0)
    back = g.to_learned(test_env)
    torch.testing.assert_close(back.continuous, test_learned.continuous, atol=1e-4, rtol=0)
    assert (back.discrete == test_learned.discrete).float().mean() > 0.98
    # sequences keep their shape
    seq = Actions(test_learned.continuous.reshape(20, 10, 2), test_learned.discrete.reshape(20, 10))
    assert g.to_env(seq).shape == (20, 10, 3)


def test_linear_grounding_is_not_attenuated_by_noisy_learned_actions() -> None:
    """Known answer: learned shifts that read the true motion with noise (errors in variables).
    Regressing env actions on them shrinks the gain; the grounding inverts the forward fit, so
    the motion it commands for a shift keeps the true gain (within 5%), where the plain
    regression falls short by about the noise's share of the variance (a third here)."""
    g = torch.Generator().manual_seed(0)
    n = 2000
    env = torch.rand(n, 3, generator=g) * 2 - 1
    a = torch.tensor([[0.08, 0.01, 0.0], [-0.01, 0.07, 0.002]])  # env -> true shift
    shift = env @ a.T + 0.03 * torch.randn(n, 2, generator=g)  # noise var ~ half the signal's
    ids = torch.randint(3, (n,), generator=g)
    spec = ActionSpec(continuous=2, continuous_bound=0.2, discrete=3)
    gr = Grounding(spec, env_dim=3, kind="linear").fit(Actions(shift, ids), env)
    probe = torch.tensor([[0.05, 0.0], [0.0, 0.05]])
    cmd = gr.to_env(Actions(probe, torch.zeros(2, dtype=torch.long)))
    moved = cmd @ a.T  # the shift these commands produce
    torch.testing.assert_close(moved, probe, atol=0.05 * 0.05, rtol=0)
    plain = torch.linalg.lstsq(torch.cat([shift, torch.ones(n, 1)], 1), env).solution
    plain_moved = (probe @ plain[:2] + plain[2]) @ a.T
    assert float(plain_moved.diagonal().max()) < 0.8 * 0.05  # the attenuated alternative


def test_more_labels_fit_a_nonlinear_map_better_with_the_mlp() -> None:
    g = torch.Generator().manual_seed(3)
    shift = torch.rand(400, 2, generator=g) * 2 - 1
    env = torch.stack([torch.tanh(3 * shift[:, 0]), shift[:, 1] ** 2, torch.zeros(400)], 1)
    spec = ActionSpec(continuous=2, continuous_bound=1.0)
    learned = Actions(shift[:300], None)
    errs = {}
    for kind in ("linear", "mlp"):
        gr = Grounding(spec, env_dim=3, kind=kind, steps=800).fit(learned, env[:300])
        errs[kind] = float((gr.to_env(Actions(shift[300:], None)) - env[300:]).abs().mean())
    assert errs["mlp"] < 0.5 * errs["linear"], errs


def test_analytic_grounding_inverts_the_camera_jacobian() -> None:
    jac = np.array([[150.0, 10.0], [-5.0, -160.0]])  # pixels per metre
    g = Grounding.analytic(SPEC, metres_per_unit=0.02, pixels_per_metre=jac, image_size=64)
    env = torch.tensor([[0.5, -0.25, 0.3]])
    learned = g.to_learned(env)
    expected = torch.tensor(jac, dtype=torch.float32) @ torch.tensor([0.5, -0.25]) * 0.02 / 32
    torch.testing.assert_close(learned.continuous[0], expected)
    assert learned.discrete.tolist() == [0]
    torch.testing.assert_close(g.to_env(learned)[0, :2], env[0, :2], atol=1e-5, rtol=0)


def test_bad_labels_are_refused() -> None:
    learned, env = _labelled(10)
    with pytest.raises(ValueError, match=r"expected \(N, 3\)"):
        Grounding(SPEC, env_dim=3).fit(learned, env[:, :2])
    with pytest.raises(ValueError, match="at least 2"):
        Grounding(SPEC, env_dim=3).fit(
            Actions(learned.continuous[:1], learned.discrete[:1]), env[:1]
        )
    with pytest.raises(ValueError, match="kind='cubic'"):
        Grounding(SPEC, env_dim=3, kind="cubic")
    with pytest.raises(RuntimeError, match="not fit"):
        Grounding(SPEC, env_dim=3).to_env(learned)
