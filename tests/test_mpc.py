"""Receding-horizon control: with the true simulator as its model the planner solves Reach."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentplay.agents.mpc import OracleController, RandomController, Settle, run_episode
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


def test_settle_takes_the_last_command_back_once_then_holds_still() -> None:
    settle = Settle()
    push = np.array([[0.8, -0.4, 0.5], [0.8, -0.4, 0.5]])
    assert settle(push, within=False) is push  # pushing on: the plan goes as it is
    back = settle(push * 0.3, within=True)  # the plan made at the goal is not executed
    np.testing.assert_array_equal(back, [[-0.8, 0.4, 0.0], [-0.8, 0.4, 0.0]])
    np.testing.assert_array_equal(settle(push, within=True), np.zeros((2, 3)))
    assert settle(push, within=False) is push  # the object left the radius: push again
    settle.reset()  # a new episode: no last command to take back
    np.testing.assert_array_equal(settle(push, within=True), np.zeros((2, 3)))


def test_the_oracle_leaves_an_object_at_its_goal_within_the_settle_radius() -> None:
    """Push with the goal moved under the object: with a settle radius the oracle holds the
    arm still (no command yet to take back), without one it plans as ever."""
    import dataclasses

    env = PushEnv(time_limit=None)
    env.reset(seed=0)
    obj = env.ground_truth()["object_pos"][env.target_object(), :2]
    env.set_state(dataclasses.replace(env.get_state(), goal=np.array(obj)))
    assert env.ground_truth()["goal"] == pytest.approx(obj)
    acts = {}
    for settle_px in (0.0, 3.0):
        planner = CEM(SimulatorModel.action_spec, horizon=2, samples=16, elites=4, iterations=2)
        oracle = OracleController(
            lambda: PushEnv(time_limit=None),
            planner,
            execute=2,
            repeat=2,
            cost="push",
            settle_px=settle_px,
        )
        oracle.reset(env)
        acts[settle_px] = oracle.act([], env.get_state())
    assert acts[3.0].shape == acts[0.0].shape == (4, 3)
    assert not acts[3.0].any() and np.abs(acts[0.0]).max() > 0.05
    env.close()


def test_settling_is_refused_without_the_push_cost_or_below_zero() -> None:
    planner = CEM(SimulatorModel.action_spec, horizon=2, samples=8, elites=2, iterations=1)
    with pytest.raises(ValueError, match=r"settle_px=3.0 with cost=goal"):
        OracleController(_reach, planner, settle_px=3.0)
    with pytest.raises(ValueError, match=r"settle_px=-1.0"):
        OracleController(_reach, planner, cost="push", settle_px=-1.0)
