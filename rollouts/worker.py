"""The worker side of collection: what to collect (:class:`CollectSpec`), the seeds of an
episode, the env and policy a worker records with, and recording and writing one shard.

Both launchers run this code in their worker processes: the local pool
(:mod:`latentplay.rollouts.collect`) and Ray (:mod:`latentplay.rollouts.ray_launcher`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from latentplay.rollouts.format import Episode, ShardWriter, split_of
from latentplay.utils.io import provenance


@dataclass
class CollectSpec:
    """What to collect. Picklable: it travels to the worker processes."""

    env_id: str
    policy_factory: Callable[..., Any]  # action_space -> Policy (a Hydra partial, say)
    episodes: int
    steps: int
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    shard_episodes: int = 25
    masks: bool = False
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    compression: str | None = "gzip"
    compression_level: int | None = 1
    policy_config: dict[str, Any] = field(default_factory=dict)  # recorded in meta.json

    def __post_init__(self) -> None:
        for name in ("episodes", "steps", "shard_episodes"):
            v = getattr(self, name)
            if not isinstance(v, int | np.integer) or v < 1:
                raise ValueError(f"{name}={v!r}; expected a positive integer")
        fr = np.asarray(self.split_fractions, np.float64)
        if fr.shape != (3,) or np.any(fr < 0) or not np.isclose(fr.sum(), 1.0):
            raise ValueError(
                f"split_fractions={self.split_fractions}; expected (train, val, test) summing to 1"
            )

    @property
    def n_shards(self) -> int:
        return -(-self.episodes // self.shard_episodes)

    def shard_range(self, shard: int) -> range:
        lo = shard * self.shard_episodes
        return range(lo, min(lo + self.shard_episodes, self.episodes))

    def identity(self) -> dict[str, Any]:
        return {
            "env_id": self.env_id,
            "env_kwargs": dict(self.env_kwargs),
            "policy": self.policy_config,
            "seed": self.seed,
            "steps": self.steps,
            "shard_episodes": self.shard_episodes,
            "masks": self.masks,
            "split_fractions": list(self.split_fractions),
        }


def episode_seeds(seed: int, episode: int) -> tuple[int, np.random.Generator]:
    """(env reset seed, policy RNG) of an episode: from (seed, episode) only."""
    ss = np.random.SeedSequence([seed, episode])
    env_ss, policy_ss = ss.spawn(2)
    return int(env_ss.generate_state(1)[0]), np.random.default_rng(policy_ss)


def make_env_and_policy(spec: CollectSpec) -> tuple[Any, Any]:
    """The env (pixels and state) and the policy one worker records with."""
    import gymnasium as gym

    import latentplay.envs  # noqa: F401  (registers ids, picks the GL platform)

    env = gym.make(spec.env_id, obs_type="pixels_state", **spec.env_kwargs)
    return env, bound(spec.policy_factory(action_space=env.action_space), env)


def bound(policy: Any, env: Any) -> Any:
    """``policy``, told its env if it asks (``bind(env)``: a planner reads the goal image)."""
    if hasattr(policy, "bind"):
        policy.bind(env.unwrapped)
    return policy


def record_episode(env: Any, policy: Any, spec: CollectSpec, index: int) -> Episode:
    """Run one episode of ``spec.steps`` steps; frames and ground truth side by side."""
    u = env.unwrapped
    env_seed, rng = episode_seeds(spec.seed, index)
    obs, info = env.reset(seed=env_seed)
    policy.reset(rng, info)
    gt_keys = list(u.ground_truth())
    frames, actions, rewards = [obs["pixels"]], [], []
    per_frame = {k: [info[k]] for k in gt_keys}
    per_step: dict[str, list] = {}
    states = [u.get_state().to_arrays()]
    masks = [u.render_segmentation()] if spec.masks else None
    for _ in range(spec.steps):
        action = policy.act(obs, info)
        obs, reward, terminated, _, info = env.step(action)
        frames.append(obs["pixels"])
        actions.append(np.asarray(action, np.float32))
        rewards.append(reward)
        for k in gt_keys:
            per_frame[k].append(info[k])
        for k, v in info.items():
            if k.startswith("reward_"):
                per_step.setdefault(k, []).append(v)
        states.append(u.get_state().to_arrays())
        if masks is not None:
            masks.append(u.render_segmentation())
        if terminated:
            raise RuntimeError(
                f"{spec.env_id} terminated at step {len(actions)} of {spec.steps}: the dataset "
                "stores fixed-length episodes; use an env that does not terminate"
            )
    return Episode(
        index=index,
        seed=env_seed,
        split=split_of(index, spec.seed, spec.split_fractions),
        policy=getattr(getattr(policy, "current", policy), "name", type(policy).__name__),
        frames=np.stack(frames),
        actions=np.stack(actions),
        rewards=np.asarray(rewards, np.float64),
        per_frame={k: np.stack(v) for k, v in per_frame.items()},
        per_step={k: np.asarray(v) for k, v in per_step.items()},
        state={k: np.stack([s[k] for s in states]) for k in states[0]},
        masks=None if masks is None else np.stack(masks),
    )


def write_shard(
    env: Any,
    policy: Any,
    spec: CollectSpec,
    shard: int,
    shard_dir: Path,
    on_episode: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Record the episodes of one shard with ``env`` and ``policy`` and write the shard
    atomically (hidden temporary file, sidecar, rename); returns its sidecar.
    ``on_episode(frames)`` is told after each episode (progress)."""
    writer = ShardWriter(shard_dir, shard, spec.compression, spec.compression_level)
    try:
        for index in spec.shard_range(shard):
            writer.add(record_episode(env, policy, spec, index))
            if on_episode is not None:
                on_episode(spec.steps + 1)  # frames written (to the temporary shard)
        made = {**provenance(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        return writer.close(extra=made)  # provenance per shard: a resume may run newer code
    except BaseException:
        writer.abort()
        raise
