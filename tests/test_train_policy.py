"""SB3 training: a short PPO run saves a model that SB3Policy drives a pixels_state env with."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import yaml
from gymnasium import spaces

from latentplay.agents.policies import SB3Policy
from latentplay.agents.train_sb3 import train_sb3


def test_pick_obs_key() -> None:
    state = spaces.Box(-np.inf, np.inf, (40,), np.float64)
    image = spaces.Box(0, 255, (64, 64, 3), np.uint8)
    assert SB3Policy._pick_obs_key(state) == "state"
    assert SB3Policy._pick_obs_key(image) == "pixels"
    assert SB3Policy._pick_obs_key(spaces.Dict({"pixels": image, "state": state})) is None


def test_train_ppo_then_act(tmp_path) -> None:
    out = tmp_path / "ppo_reach"
    result = train_sb3(
        env_id="latentplay/Reach-v0",
        env_kwargs={"width": 32, "height": 32},
        out=out,
        timesteps=256,
        algo="PPO",
        n_envs=1,
        algo_kwargs={"n_steps": 128, "batch_size": 64, "n_epochs": 2},
        progress=False,
    )
    assert result.model_path == out / "model.zip" and result.model_path.is_file()
    assert result.timesteps >= 256
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "model.zip", "run.json"]
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["algo"] == "PPO" and cfg["env_kwargs"]["obs_type"] == "state"

    env = gym.make("latentplay/Reach-v0", obs_type="pixels_state", width=32, height=32)
    policy = SB3Policy(env.action_space, path=result.model_path, algo="PPO")
    assert policy._obs_key == "state"
    obs, info = env.reset(seed=0)
    policy.reset(np.random.default_rng(0), info)
    for _ in range(3):
        action = policy.act(obs, info)
        assert action.shape == (3,) and action.dtype == np.float32
        assert np.all(action >= -1.0) and np.all(action <= 1.0)
        obs, _, _, _, info = env.step(action)
    env.close()

    with pytest.raises(FileExistsError, match=r"model\.zip"):
        train_sb3(env_id="latentplay/Reach-v0", out=out, timesteps=64)


def test_bad_arguments(tmp_path) -> None:
    with pytest.raises(ValueError, match="algo="):
        train_sb3(env_id="latentplay/Reach-v0", out=tmp_path, timesteps=64, algo="DQN")
    with pytest.raises(ValueError, match="timesteps="):
        train_sb3(env_id="latentplay/Reach-v0", out=tmp_path, timesteps=0)
    with pytest.raises(ValueError, match="obs_type"):
        train_sb3(
            env_id="latentplay/Reach-v0",
            out=tmp_path,
            timesteps=64,
            env_kwargs={"obs_type": "pixels"},
        )
