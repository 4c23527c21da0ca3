"""Known-answer checks of the dm_control adapter (latentplay.envs.dmc)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import latentplay.envs  # noqa: F401  (registers latentplay/*, picks the GL platform)
from latentplay.envs.base import GroundTruthEnv

REACHER = "latentplay/DMC-reacher-easy-v0"
MANIPULATOR = "latentplay/DMC-manipulator-bring_ball-v0"


@pytest.fixture
def make():
    envs: list[gym.Env] = []

    def _make(env_id: str = REACHER, **kwargs) -> gym.Env:
        env = gym.make(env_id, **kwargs)
        envs.append(env)
        return env

    yield _make
    for env in envs:
        env.close()


def _actions(env: gym.Env, n: int, seed: int = 0) -> np.ndarray:
    shape = env.action_space.shape
    return np.random.default_rng(seed).uniform(-1, 1, (n, *shape)).astype(np.float32)


def _rollout(env: gym.Env, actions: np.ndarray) -> list[tuple]:
    out = []
    for a in actions:
        obs, reward, _, _, info = env.step(a)
        out.append((obs, reward, info["qpos"], info["qvel"], info["body_pos"]))
    return out


def _assert_same(a: list[tuple], b: list[tuple]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x[0].tobytes() == y[0].tobytes()  # frames, byte for byte
        assert x[1] == y[1]
        for u, v in zip(x[2:], y[2:], strict=True):
            np.testing.assert_array_equal(u, v)


def test_actions_map_to_spec_bounds():
    from latentplay.envs.dmc import DMCEnv

    env = DMCEnv(domain="quadruped", task="walk")  # asymmetric bounds; no reset, no rendering
    spec = env._env.action_spec()
    n = spec.shape[0]
    assert env.action_space.shape == (n,) and env.action_space.dtype == np.float32
    np.testing.assert_array_equal(env.to_dmc_action(-np.ones(n)), spec.minimum)
    np.testing.assert_array_equal(env.to_dmc_action(np.ones(n)), spec.maximum)
    np.testing.assert_allclose(env.to_dmc_action(np.zeros(n)), (spec.minimum + spec.maximum) / 2)
    np.testing.assert_array_equal(env.to_dmc_action(3 * np.ones(n)), spec.maximum)  # clipped
    for bad in (np.full(n, np.nan), np.full(n, np.inf), np.zeros(n + 1)):
        with pytest.raises(ValueError):
            env.to_dmc_action(bad)
    env.close()


def test_unknown_domain_task_camera_raise(make):
    with pytest.raises(ValueError, match="nodomain"):
        make(REACHER, domain="nodomain")
    with pytest.raises(ValueError, match="notask"):
        make(REACHER, task="notask")
    with pytest.raises(ValueError, match="free camera"):
        make(REACHER, camera_id=-1)
    env = make(REACHER, camera_id="fixed")
    assert env.unwrapped.camera_name == "fixed"
    assert isinstance(env.unwrapped, GroundTruthEnv)


def test_same_seed_identical_different_seed_differs(make):
    env = make(REACHER)
    actions = _actions(env, 10)
    obs0, info0 = env.reset(seed=7)
    first = _rollout(env, actions)
    obs1, _ = env.reset(seed=7)
    second = _rollout(env, actions)
    assert obs0.shape == (64, 64, 3) and obs0.dtype == np.uint8
    assert obs0.tobytes() == obs1.tobytes()
    _assert_same(first, second)
    other = make(REACHER)  # a fresh instance too
    other.reset(seed=7)
    _assert_same(first, _rollout(other, actions))
    obs2, info2 = env.reset(seed=8)
    assert obs2.tobytes() != obs0.tobytes()
    assert not np.array_equal(info2["qpos"], info0["qpos"])


def test_save_act_restore_act_bit_identical(make):
    env = make(MANIPULATOR)
    u = env.unwrapped
    env.reset(seed=1)
    _rollout(env, _actions(env, 3, seed=1))
    state = u.get_state()
    actions = _actions(env, 5, seed=2)
    first = _rollout(env, actions)
    u.set_state(state)
    _assert_same(first, _rollout(env, actions))
    # Through the stored arrays, from another episode: the goal placement is restored too.
    arrays = state.to_arrays()
    env.reset(seed=99)
    u.set_state(u.state_from_arrays(arrays))
    for k, v in u.get_state().to_arrays().items():
        np.testing.assert_array_equal(v, arrays[k])
    _assert_same(first, _rollout(env, actions))


def test_reward_is_task_reward_summed_over_frame_skip(make):
    env1 = make(MANIPULATOR, obs_type="state")
    env2 = make(MANIPULATOR, obs_type="state", frame_skip=2)
    env1.reset(seed=3)
    env2.reset(seed=3)
    for a in _actions(env1, 4, seed=3):
        _, r2, term, trunc, info2 = env2.step(a)
        r1 = sum(env1.step(a)[1] for _ in range(2))
        assert r2 == info2["reward_task"]
        assert r2 == sum(v for k, v in info2.items() if k.startswith("reward_"))
        assert r2 == pytest.approx(r1, abs=1e-12)
        assert not term and not trunc
    np.testing.assert_array_equal(env2.unwrapped.ground_truth()["qpos"], env1.unwrapped.data.qpos)


def test_observation_types_and_ground_truth(make):
    env = make(MANIPULATOR, obs_type="pixels_state", width=48, height=32)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert obs["pixels"].shape == (32, 48, 3)
    u = env.unwrapped
    nbody = u.model.nbody
    assert info["body_pos"].shape == (nbody, 3) and info["body_pixel"].shape == (nbody, 2)
    # The fixed camera looks at the arm's shoulder (body 1) through the image centre.
    np.testing.assert_allclose(info["body_pixel"][1], [24.0, 16.0], atol=1e-6)


def test_segmentation_labels(make):
    env = make(MANIPULATOR)
    env.reset(seed=0)
    u = env.unwrapped
    seg = u.render_segmentation()
    assert seg.shape == (64, 64) and seg.dtype == np.uint8
    labels = set(np.unique(seg).tolist())
    assert 0 in labels and len(labels) > 2
    assert labels <= {0} | {1 + b for b in range(1, u.model.nbody)}
