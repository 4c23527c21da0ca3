"""Collect rollouts into a dataset of videos with ground truth kept apart.

python scripts/collect.py env=push policy=scripted episodes=200 steps=50 workers=2 out=data/push
python scripts/collect.py ... resume=true     # continue a killed run
python scripts/collect.py ... launcher=ray    # Ray tasks (local Ray; ray.address=auto: cluster)
"""

from __future__ import annotations

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from latentplay.cli.config import plain
from latentplay.rollouts.collect import collect
from latentplay.rollouts.video import preview_from_config
from latentplay.rollouts.worker import CollectSpec


@hydra.main(config_path="../configs", config_name="collect", version_base="1.3")
def main(cfg: DictConfig) -> None:
    c = plain(cfg)  # typed at parse time (cli/schemas.py)
    spec = CollectSpec(
        env_id=c["env"]["id"],
        env_kwargs=c["env"]["kwargs"],
        policy_factory=instantiate(c["policy"]),
        policy_config=c["policy"],
        episodes=c["episodes"],
        steps=c["steps"],
        seed=c["seed"],
        shard_episodes=c["shard_episodes"],
        masks=c["masks"],
        split_fractions=tuple(c["split_fractions"]),
        compression=c["compression"],
        compression_level=c["compression_level"],
    )
    result = collect(
        spec,
        out=c["out"],
        workers=c["workers"],
        resume=c["resume"],
        start_method=c["start_method"],
        progress=c["progress"],
        config=c,
        launcher=c["launcher"],
        ray_options=c["ray"],
    )
    print(
        f"{result.out}: {result.episodes} episodes ({result.shards_written} shards written, "
        f"{result.shards_reused} kept), {result.frames} new frames in {result.seconds:.1f} s "
        f"= {result.frames_per_second:.0f} frames/s"
    )
    for path in preview_from_config(result.out, c["preview"]):
        print(f"preview: {path}")


if __name__ == "__main__":
    main()
