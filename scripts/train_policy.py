"""Train a Stable-Baselines3 agent on an env's state-based reward, for collection later.

python scripts/train_policy.py env=push algo=PPO timesteps=200000 out=runs/ppo_push
python scripts/collect.py env=push policy=sb3 policy.path=runs/ppo_push/model.zip
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from latentplay.utils.config import require_complete


@hydra.main(config_path="../configs", config_name="train_policy", version_base="1.3")
def main(cfg: DictConfig) -> None:
    require_complete(cfg)
    from latentplay.agents.train_sb3 import train_sb3

    result = train_sb3(
        env_id=cfg.env.id,
        env_kwargs=OmegaConf.to_container(cfg.env.kwargs, resolve=True),
        out=cfg.out,
        timesteps=cfg.timesteps,
        algo=cfg.algo,
        n_envs=cfg.n_envs,
        seed=cfg.seed,
        device=cfg.device,
        sb3_policy=cfg.sb3_policy,
        algo_kwargs=OmegaConf.to_container(cfg.algo_kwargs, resolve=True),
        max_episode_steps=cfg.max_episode_steps,
        start_method=cfg.start_method,
        progress=cfg.progress,
        overwrite=cfg.overwrite,
        config=OmegaConf.to_container(cfg, resolve=True),
    )
    ret = result.mean_episode_return
    print(
        f"{result.model_path}: {cfg.algo} on {cfg.env.id}, {result.timesteps} steps in "
        f"{result.seconds:.1f} s, mean episode return "
        f"{'n/a (no episode finished)' if ret is None else f'{ret:.3f}'}"
    )


if __name__ == "__main__":
    main()
