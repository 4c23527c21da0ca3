"""Collect rollouts into a dataset of videos with ground truth kept apart.

python scripts/collect.py env=push policy=scripted episodes=200 steps=50 workers=2 out=data/push
python scripts/collect.py ... resume=true     # continue a killed run
python scripts/collect.py ... launcher=ray    # Ray tasks (local Ray; ray.address=auto: cluster)
"""

from __future__ import annotations

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from latentplay.rollouts.collect import CollectSpec, collect
from latentplay.rollouts.video import write_preview
from latentplay.utils.config import require_complete


@hydra.main(config_path="../configs", config_name="collect", version_base="1.3")
def main(cfg: DictConfig) -> None:
    require_complete(cfg)
    plain = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # typed: utils/schemas
    spec = CollectSpec(
        env_id=cfg.env.id,
        env_kwargs=OmegaConf.to_container(cfg.env.kwargs, resolve=True),
        policy_factory=instantiate(cfg.policy),
        policy_config=OmegaConf.to_container(cfg.policy, resolve=True),
        episodes=cfg.episodes,
        steps=cfg.steps,
        seed=cfg.seed,
        shard_episodes=cfg.shard_episodes,
        masks=cfg.masks,
        split_fractions=tuple(cfg.split_fractions),
        compression=cfg.compression,
        compression_level=cfg.compression_level,
    )
    result = collect(
        spec,
        out=cfg.out,
        workers=cfg.workers,
        resume=cfg.resume,
        start_method=plain["start_method"],
        progress=cfg.progress,
        config=plain,
        launcher=plain["launcher"],
        ray_options=plain["ray"],
    )
    print(
        f"{result.out}: {result.episodes} episodes ({result.shards_written} shards written, "
        f"{result.shards_reused} kept), {result.frames} new frames in {result.seconds:.1f} s "
        f"= {result.frames_per_second:.0f} frames/s"
    )
    if cfg.preview.episodes > 0:
        for path in write_preview(
            result.out, cfg.preview.episodes, cfg.preview.scale, cfg.preview.format
        ):
            print(f"preview: {path}")


if __name__ == "__main__":
    main()
