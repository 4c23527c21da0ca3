"""Train a Stable-Baselines3 agent on an env's state observation and its shaped reward.

The saved ``model.zip`` drives collection as ``policy=sb3 policy.path=<out>/model.zip``:
:class:`~latentplay.agents.policies.SB3Policy` sees a flat Box observation space and feeds the
model ``obs["state"]`` of the ``pixels_state`` env. No observation normalisation is used, so
the model file is all a policy needs.

Output folder::

    model.zip     the trained model (written atomically)
    config.yaml   the run's (resolved) configuration
    run.json      algorithm, timesteps, wall time, final mean episode return, provenance
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from latentplay.utils.io import atomic_path, provenance, write_json_atomic

ALGOS = ("A2C", "DDPG", "PPO", "SAC", "TD3")  # SB3 algorithms for Box actions


@dataclass
class TrainResult:
    out: Path
    model_path: Path
    timesteps: int
    seconds: float
    mean_episode_return: float | None  # over the last (up to 100) finished episodes


def make_env(env_id: str, **kwargs: Any) -> Any:
    """``gym.make`` after registering the latentplay ids: a picklable env factory for
    SubprocVecEnv workers (a fresh process knows no ``latentplay/*`` id otherwise)."""
    import gymnasium as gym

    import latentplay.envs  # noqa: F401  (registers latentplay/*)

    return gym.make(env_id, **kwargs)


def train_sb3(
    *,
    env_id: str,
    out: str | Path,
    timesteps: int,
    algo: str = "PPO",
    env_kwargs: Mapping[str, Any] | None = None,
    n_envs: int = 1,
    seed: int = 0,
    device: str = "cpu",
    sb3_policy: str = "MlpPolicy",
    algo_kwargs: Mapping[str, Any] | None = None,
    max_episode_steps: int | None = None,
    start_method: str = "forkserver",
    progress: bool = True,
    overwrite: bool = False,
    config: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Train ``algo`` for ``timesteps`` env steps on ``env_id`` with ``obs_type="state"``.

    ``n_envs > 1`` steps the envs in ``SubprocVecEnv`` workers started with ``start_method``
    (never fork: forking after MuJoCo rendered hangs); 1 uses a ``DummyVecEnv``.
    ``algo_kwargs`` go to the algorithm's constructor (``n_steps``, ``learning_rate``, ...).
    ``max_episode_steps`` overrides the registered time limit. An existing ``out/model.zip``
    raises FileExistsError unless ``overwrite``. ``config`` is written to ``out/config.yaml``
    (the keyword arguments when None).
    """
    import stable_baselines3 as sb3
    import yaml
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    if algo not in ALGOS:
        raise ValueError(f"algo={algo!r}; expected one of {list(ALGOS)}")
    for name, value in (("timesteps", timesteps), ("n_envs", n_envs)):
        if not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name}={value!r}; expected a positive integer")
    if start_method not in ("forkserver", "spawn"):
        raise ValueError(
            f"start_method={start_method!r}; expected 'forkserver' or 'spawn' (forking after "
            "MuJoCo rendered hangs)"
        )
    env_kwargs = dict(env_kwargs or {})
    if env_kwargs.get("obs_type", "state") != "state":
        raise ValueError(
            f"env_kwargs.obs_type={env_kwargs['obs_type']!r}: training uses obs_type='state'"
        )
    env_kwargs["obs_type"] = "state"
    if max_episode_steps is not None:
        env_kwargs["max_episode_steps"] = int(max_episode_steps)
    out = Path(out)
    model_path = out / "model.zip"
    if model_path.exists() and not overwrite:
        raise FileExistsError(
            f"{model_path} already exists; choose another out or pass overwrite=true"
        )
    run_config = (
        dict(config)
        if config is not None
        else {
            "env_id": env_id,
            "env_kwargs": env_kwargs,
            "algo": algo,
            "timesteps": int(timesteps),
            "n_envs": int(n_envs),
            "seed": seed,
            "device": device,
            "sb3_policy": sb3_policy,
            "algo_kwargs": dict(algo_kwargs or {}),
            "max_episode_steps": max_episode_steps,
            "start_method": start_method,
            "out": str(out),
        }
    )

    vec_env = make_vec_env(
        functools.partial(make_env, env_id),
        n_envs=n_envs,
        seed=seed,
        env_kwargs=env_kwargs,
        vec_env_cls=SubprocVecEnv if n_envs > 1 else DummyVecEnv,
        vec_env_kwargs={"start_method": start_method} if n_envs > 1 else None,
    )
    t0 = time.perf_counter()
    try:
        cls = getattr(sb3, algo)
        model = cls(
            sb3_policy, vec_env, seed=seed, device=device, verbose=0, **dict(algo_kwargs or {})
        )
        model.learn(total_timesteps=int(timesteps), progress_bar=progress)
    finally:
        vec_env.close()
    seconds = time.perf_counter() - t0

    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(model_path) as tmp:
        model.save(tmp)  # the temporary name ends in .tmp: SB3 appends no .zip
    with atomic_path(out / "config.yaml") as tmp:
        tmp.write_text(yaml.safe_dump(_plain(run_config), sort_keys=False))
    returns = [ep["r"] for ep in model.ep_info_buffer or []]
    result = TrainResult(
        out=out,
        model_path=model_path,
        timesteps=int(model.num_timesteps),
        seconds=seconds,
        mean_episode_return=float(np.mean(returns)) if returns else None,
    )
    write_json_atomic(
        out / "run.json",
        {
            "algo": algo,
            "env_id": env_id,
            "timesteps": result.timesteps,
            "seconds": round(seconds, 3),
            "mean_episode_return": result.mean_episode_return,
            "episodes_in_mean": len(returns),
            "stable_baselines3": sb3.__version__,
            **provenance(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )
    return result


def _plain(x: Any) -> Any:
    """Plain YAML-safe types (numpy scalars, tuples and paths made plain)."""
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    return x
