"""Train a Stable-Baselines3 agent on an env's state-based reward, for collection later.

python scripts/train_policy.py env=push algo=PPO timesteps=200000 out=runs/ppo_push
python scripts/collect.py env=push policy=sb3 policy.path=runs/ppo_push/model.zip
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from latentplay.cli.config import plain


@hydra.main(config_path="../configs", config_name="train_policy", version_base="1.3")
def main(cfg: DictConfig) -> None:
    c = plain(cfg)  # typed at parse time (cli/schemas.py)
    from latentplay.agents.train_sb3 import train_sb3

    result = train_sb3(
        env_id=c["env"]["id"],
        env_kwargs=c["env"]["kwargs"],
        out=c["out"],
        timesteps=c["timesteps"],
        algo=c["algo"],
        n_envs=c["n_envs"],
        seed=c["seed"],
        device=c["device"],
        sb3_policy=c["sb3_policy"],
        algo_kwargs=c["algo_kwargs"],
        max_episode_steps=c["max_episode_steps"],
        start_method=c["start_method"],
        progress=c["progress"],
        overwrite=c["overwrite"],
        config=c,
    )
    ret = result.mean_episode_return
    print(
        f"{result.model_path}: {c['algo']} on {c['env']['id']}, {result.timesteps} steps in "
        f"{result.seconds:.1f} s, mean episode return "
        f"{'n/a (no episode finished)' if ret is None else f'{ret:.3f}'}"
    )


if __name__ == "__main__":
    main()
