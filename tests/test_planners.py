"""CEM and MPPI find known optima: a quadratic, and the controls of a linear toy system."""

from __future__ import annotations

import pytest
import torch

from latentplay.agents.planners import CEM, MPPI
from latentplay.world_models.protocol import Actions, ActionSpec

SPEC = ActionSpec(continuous=2, continuous_bound=0.5, discrete=4)
TARGET = torch.tensor([[0.3, -0.2], [-0.1, 0.4], [0.25, 0.0]])  # (H=3, 2), inside the bound
BEST_IDS = torch.tensor([2, 0, 3])
PENALTY = 0.5  # cost of each wrong discrete action


def quadratic(actions: Actions) -> torch.Tensor:
    c = ((actions.continuous - TARGET) ** 2).sum(dim=(1, 2))
    return c + PENALTY * (actions.discrete != BEST_IDS).sum(dim=1)


@pytest.mark.parametrize("planner_cls", [CEM, MPPI], ids=["cem", "mppi"])
def test_planner_finds_the_optimum_of_a_known_quadratic(planner_cls: type) -> None:
    planner = planner_cls(SPEC, horizon=3, samples=200, elites=20, iterations=12, seed=0)
    plan = planner.plan(quadratic)
    torch.testing.assert_close(plan.actions.continuous[0], TARGET, atol=0.03, rtol=0)
    assert plan.actions.discrete[0].tolist() == BEST_IDS.tolist()
    assert plan.cost < 2e-3
    assert plan.elite_costs[-1] < 0.2 * plan.elite_costs[0]
    # the bar fails for a planner that does not optimize: one iteration of random samples
    rnd = planner_cls(SPEC, horizon=3, samples=200, elites=20, iterations=1, seed=0)
    assert rnd.plan(quadratic).cost > 0.01


@pytest.mark.parametrize("planner_cls", [CEM, MPPI], ids=["cem", "mppi"])
def test_planner_steers_a_linear_system_to_its_goal(planner_cls: type) -> None:
    """x_t+1 = A x_t + B u_t from x_0; reach the goal at the horizon. The goal is reachable
    (made from known controls), so the optimum costs 0."""
    a = torch.tensor([[1.0, 0.1], [0.0, 1.0]])
    b = torch.tensor([[0.0, 0.0], [0.5, 0.2]]) + torch.eye(2) * 0.3
    x0 = torch.tensor([0.5, -0.5])
    known = torch.tensor([[0.8, -0.4], [0.2, 0.9], [-0.6, 0.3], [0.1, 0.1]])

    def simulate(u: torch.Tensor) -> torch.Tensor:  # (N, H, 2) -> final state (N, 2)
        x = x0.expand(len(u), 2)
        for t in range(u.shape[1]):
            x = x @ a.T + u[:, t] @ b.T
        return x

    goal = simulate(known[None])[0]
    spec = ActionSpec(continuous=2, continuous_bound=1.0)
    cost = lambda acts: ((simulate(acts.continuous) - goal) ** 2).sum(dim=1)  # noqa: E731
    start = float(cost(Actions(continuous=torch.zeros(1, 4, 2)))[0])
    plan = planner_cls(spec, horizon=4, samples=300, elites=30, iterations=15).plan(cost)
    assert plan.actions.discrete is None
    assert plan.cost < 1e-3 * start


def test_warm_start_shifts_the_plan_by_one_step() -> None:
    planner = CEM(SPEC, horizon=3, samples=100, elites=10, iterations=8, seed=1)
    first = planner.plan(quadratic).actions.continuous[0]
    torch.testing.assert_close(planner.mean[:2] * SPEC.continuous_bound, first[1:])
    assert (planner.std == planner.std_init).all()
    assert planner.probs[-1].tolist() == pytest.approx([0.25] * 4)
    planner.reset()
    assert (planner.mean == 0).all()


def test_mppi_weights_are_scale_free_and_favour_low_cost() -> None:
    mppi = MPPI(SPEC, temperature=0.5)
    c = torch.tensor([1.0, 2.0, 3.0])
    w = mppi.weights(c)
    torch.testing.assert_close(w, mppi.weights(1000 * c))
    assert w[0] > w[1] > w[2] and float(w.sum()) == pytest.approx(1.0)
    w_inf = mppi.weights(torch.tensor([1.0, float("inf")]))
    assert w_inf.tolist() == [1.0, 0.0]


def test_nan_costs_never_win() -> None:
    def cost(actions: Actions) -> torch.Tensor:
        c = quadratic(actions)
        return torch.where(actions.continuous[:, 0, 0] > 0.2, torch.nan, c)  # the optimum: NaN

    plan = CEM(SPEC, horizon=3, samples=200, elites=20, iterations=10).plan(cost)
    assert plan.actions.continuous[0, 0, 0] <= 0.2 + 1e-6


def test_samples_stay_within_the_bound_and_runs_repeat() -> None:
    seen = []

    def cost(actions: Actions) -> torch.Tensor:
        seen.append(actions.continuous.abs().max())
        return quadratic(actions)

    p1 = MPPI(SPEC, horizon=3, samples=50, elites=5, iterations=3, std_init=2.0, seed=7)
    p2 = MPPI(SPEC, horizon=3, samples=50, elites=5, iterations=3, std_init=2.0, seed=7)
    a, b = p1.plan(cost), p2.plan(quadratic)
    assert max(seen) <= SPEC.continuous_bound + 1e-6
    torch.testing.assert_close(a.actions.continuous, b.actions.continuous)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"elites": 0}, "elites=0"),
        ({"samples": 10, "elites": 20}, "elites=20, samples=10"),
        ({"horizon": 0}, "horizon=0"),
        ({"std_min": 1.0, "std_init": 0.5}, "std_min=1.0"),
        ({"min_prob": 0.3}, "min_prob=0.3"),
    ],
)
def test_bad_settings_are_refused_by_name(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CEM(SPEC, **kwargs)


def test_cost_of_the_wrong_shape_is_refused() -> None:
    with pytest.raises(ValueError, match=r"cost returned shape \(1,\); expected \(300,\)"):
        CEM(SPEC).plan(lambda acts: torch.zeros(1))
    with pytest.raises(ValueError, match="nothing to plan"):
        CEM(ActionSpec())


@pytest.mark.parametrize("planner_cls", [CEM, MPPI], ids=["cem", "mppi"])
def test_planner_plans_a_sparse_flow_spec_as_its_points(planner_cls: type) -> None:
    """YODA's spec (k points of (x, y, dx, dy)) is planned unchanged: a cost with a known best
    poke (the first point at a place with a given vector, the rest irrelevant) is found."""
    spec = ActionSpec(continuous=4 * 2, continuous_bound=1.0, sparse_points=2)
    best = torch.tensor([0.5, -0.25, 0.4, 0.1])

    def cost(actions: Actions) -> torch.Tensor:
        return ((actions.continuous[:, :, :4] - best) ** 2).sum(dim=(1, 2))

    plan = planner_cls(spec, horizon=2, samples=300, elites=30, iterations=15, seed=0)
    found = plan.plan(cost)
    assert found.actions.continuous.shape == (1, 2, 8)
    torch.testing.assert_close(
        found.actions.continuous[0, :, :4], best.expand(2, 4), atol=0.05, rtol=0
    )
