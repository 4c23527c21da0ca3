"""Checks run over every registered latentplay env (dm_control style: one file, the registry)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from latentplay.envs import ENV_IDS


def _actions(env: gym.Env, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (n, *env.action_space.shape)).astype(np.float32)


@pytest.fixture(params=ENV_IDS)
def env_id(request: pytest.FixtureRequest) -> str:
    return request.param


def test_every_env_is_registered() -> None:
    assert {"latentplay/Reach-v0", "latentplay/Push-v0", "latentplay/PushMulti-v0"} <= set(ENV_IDS)
    assert all(i in gym.registry for i in ENV_IDS)


def test_gymnasium_check_env(env_id: str) -> None:
    env = gym.make(env_id)
    try:
        # "human" cannot open a window headless: the rgb_array mode is checked below.
        gym_check_env(env.unwrapped, skip_render_check=True)
    finally:
        env.close()


def test_rgb_array_render_matches_pixel_observation(env_id: str) -> None:
    env = gym.make(env_id, render_mode="rgb_array", width=48, height=40)
    try:
        obs, _ = env.reset(seed=0)
        frame = env.render()
        assert frame.shape == (40, 48, 3) and frame.dtype == np.uint8
        assert frame.std() > 5, "the frame is (nearly) constant"
        np.testing.assert_array_equal(frame, obs)  # same fixed camera
    finally:
        env.close()


@pytest.mark.parametrize("obs_type", ["pixels", "state", "pixels_state"])
def test_sb3_check_env(env_id: str, obs_type: str) -> None:
    env = gym.make(env_id, obs_type=obs_type)
    try:
        sb3_check_env(env, warn=False)
    finally:
        env.close()


def _rollout(env: gym.Env, seed: int, actions: np.ndarray) -> tuple[list, list]:
    obs, _ = env.reset(seed=seed)
    frames, rewards = [obs], []
    for a in actions:
        obs, r, *_ = env.step(a)
        frames.append(obs)
        rewards.append(r)
    return frames, rewards


def test_same_seed_gives_identical_frames(env_id: str) -> None:
    env_a, env_b = gym.make(env_id), gym.make(env_id)
    try:
        acts = _actions(env_a, 12)
        fa, ra = _rollout(env_a, 7, acts)
        fb, rb = _rollout(env_b, 7, acts)
        for x, y in zip(fa, fb, strict=True):
            assert x.tobytes() == y.tobytes()
        assert ra == rb
        fc, _ = _rollout(env_b, 8, acts)
        assert fc[0].tobytes() != fa[0].tobytes(), "another seed should give another start"
    finally:
        env_a.close()
        env_b.close()


def test_state_save_act_restore_act_is_exact(env_id: str) -> None:
    env = gym.make(env_id)
    u = env.unwrapped
    try:
        env.reset(seed=3)
        for a in _actions(env, 5, seed=1):
            env.step(a)
        saved = u.get_state()
        acts = _actions(env, 8, seed=2)
        first = [env.step(a) for a in acts]
        after_first = u.get_state().to_arrays()
        u.set_state(saved)
        second = [env.step(a) for a in acts]
        for (o1, r1, *_), (o2, r2, *_) in zip(first, second, strict=True):
            assert o1.tobytes() == o2.tobytes()
            assert r1 == r2
        for k, v in u.get_state().to_arrays().items():
            np.testing.assert_array_equal(v, after_first[k], err_msg=k)
        # A stored (array) form restores too.
        u.set_state(u.state_from_arrays(saved.to_arrays()))
        o3, *_ = env.step(acts[0])
        assert o3.tobytes() == first[0][0].tobytes()
    finally:
        env.close()


def test_reward_is_sum_of_terms(env_id: str) -> None:
    env = gym.make(env_id)
    try:
        env.reset(seed=0)
        for a in _actions(env, 10):
            _, reward, _, _, info = env.step(a)
            terms = {k: v for k, v in info.items() if k.startswith("reward_")}
            assert terms, "info must name its reward terms"
            assert reward == pytest.approx(sum(terms.values()), abs=1e-12)
    finally:
        env.close()


@pytest.mark.parametrize(
    "bad, match",
    [
        ("nan", "NaN"),
        ("shape", "shape"),
        ("text", "not numeric"),
    ],
)
def test_bad_actions_raise_clear_errors(env_id: str, bad: str, match: str) -> None:
    env = gym.make(env_id)
    try:
        env.reset(seed=0)
        n = env.action_space.shape[0]
        action = {
            "nan": np.full(n, np.nan),
            "shape": np.zeros(n + 1),
            "text": ["left"] * n,
        }[bad]
        with pytest.raises(ValueError, match=match):
            env.unwrapped.step(action)
    finally:
        env.close()


def test_ground_truth_shapes_are_fixed(env_id: str) -> None:
    env = gym.make(env_id)
    try:
        _, info0 = env.reset(seed=0)
        _, *_, info1 = env.step(env.action_space.sample())
        gt0, gt1 = env.unwrapped.ground_truth(), env.unwrapped.ground_truth()
        assert set(gt0) == set(gt1) and set(gt0) <= set(info0) and set(gt0) <= set(info1)
        for k in gt0:
            assert np.shape(info0[k]) == np.shape(info1[k]), k
        seg = env.unwrapped.render_segmentation()
        assert seg.shape == (64, 64) and seg.dtype == np.uint8
        assert (seg == 0).any() and (seg > 0).any()
    finally:
        env.close()
