"""Receding-horizon control: with the true simulator as its model the planner solves Reach."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentplay.agents.mpc import OracleController, RandomController, run_episode
from latentplay.agents.planners import CEM, MPPI
from latentplay.agents.simulator import SimState, SimulatorModel
from latentplay.envs.arm import PushEnv, ReachEnv
from latentplay.world_models.protocol import Actions, repeat_state


def _reach() -> ReachEnv:
    return ReachEnv(time_limit=None)


@pytest.mark.parametrize("planner_cls", [CEM, MPPI])
def test_oracle_planner_solves_reach_and_random_does_not(planner_cls: type) -> None:
    env = _reach()
    planner = planner_cls(
        SimulatorModel.action_spec, horizon=3, samples=48, elites=6, iterations=3, seed=0
    )
    oracle = OracleController(_reach, planner)
    for seed in (0, 1):
        res = run_episode(env, oracle, seed=seed, max_steps=30)
        assert res.success, f"seed {seed}: {res.final_distance_m:.3f} m from the goal"
        assert res.final_distance_m < 0.2 * res.start_distance_m
        assert len(res.replan_ms) == 30
        rnd = run_episode(env, RandomController(seed), seed=seed, max_steps=30)
        assert not rnd.success


class _ArriveThenLeave:
    """The oracle for ``arrive`` replans, then a constant action away."""

    def __init__(self, oracle: OracleController, arrive: int) -> None:
        self.oracle, self.arrive, self.calls = oracle, arrive, 0

    def reset(self, env: ReachEnv) -> None:
        self.oracle.reset(env)
        self.calls = 0

    def act(self, frames: list, state: object) -> np.ndarray:
        self.calls += 1
        if self.calls <= self.arrive:
            return self.oracle.act(frames, state)
        return np.array([[-1.0, -1.0, 0.0]])


def test_an_episode_that_reaches_the_goal_and_leaves_it_is_reached_not_success() -> None:
    env = _reach()
    planner = CEM(SimulatorModel.action_spec, horizon=3, samples=48, elites=6, iterations=3, seed=0)
    res = run_episode(env, _ArriveThenLeave(OracleController(_reach, planner), 30), 0, 45)
    assert res.reached and not res.success
    assert res.closest_distance_m < 0.02 < res.final_distance_m


def test_simulator_model_branches_without_leaking_state() -> None:
    sim = SimulatorModel(lambda: PushEnv(time_limit=None))
    env = PushEnv(time_limit=None)
    env.reset(seed=3)
    start = env.get_state()
    sim.set_start(start)
    state = repeat_state(sim.encode(torch.zeros(1, 1, 3, 64, 64)), 3)
    assert isinstance(state, SimState) and len(state.states) == 3
    acts = Actions(torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]), None)
    nxt = sim.step(state, acts)
    ee = sim.ground_truth(nxt, "ee_pos")
    np.testing.assert_allclose(ee[0], ee[2])  # same action, same branch: identical
    assert ee[0, 0] > ee[1, 0] + 0.01  # opposite actions part ways
    # the real env is untouched, and stepping it matches the branch exactly
    env.step(np.array([1.0, 0.0, 0.0]))
    np.testing.assert_array_equal(env.physics_state(), nxt.states[0].physics)
    frames = sim.decode(nxt)
    assert frames.shape == (3, 3, 64, 64) and float(frames.max()) <= 1.0
    with pytest.raises(ValueError, match=r"expected \(3, 3\)"):
        sim.step(state, Actions(torch.zeros(3, 2), None))
