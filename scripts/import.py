"""Import your own videos (or a Minari dataset with pixel observations) as a dataset that every
world model trains on with the usual ``scripts/train.py`` command.

    python scripts/import.py source=videos/ out=data/my_videos            # mp4/webm/gif/frames
    python scripts/import.py source=videos/ out=data/my_videos size=64 crop=center every=2
    python scripts/import.py format=minari source=latentplay/push-v0 minari_path=data/minari \\
        out=data/push_back
    python scripts/import.py ... resume=true                              # continue a killed run

Frames become size x size (meta.json states the source and the transform); videos are split
into train/val/test by a seeded hash of their names; a video that cannot be read is skipped and
listed. A preview grid video and contact sheet are written beside the shards.
"""

from __future__ import annotations

import dataclasses

import hydra
from omegaconf import DictConfig

from latentplay.cli.config import plain


@hydra.main(config_path="../configs", config_name="import", version_base="1.3")
def main(cfg: DictConfig) -> None:
    c = plain(cfg)  # typed at parse time (cli/schemas.py)
    from latentplay.rollouts.importing import ImportSpec, import_dataset
    from latentplay.rollouts.video import preview_from_config

    keys = [f.name for f in dataclasses.fields(ImportSpec) if f.init]  # the config's keys
    spec = ImportSpec(**{k: c[k] for k in keys} | {"split_fractions": tuple(c["split_fractions"])})
    r = import_dataset(spec, c["out"], resume=c["resume"], progress=c["progress"], config=c)
    print(
        f"{r.out}: {r.episodes} episodes ({r.shards_written} shards written, {r.shards_kept} "
        f"kept), {r.frames} new frames in {r.seconds:.1f} s = {r.frames_per_second:.0f} frames/s"
    )
    print("splits: " + ", ".join(f"{k} {v} episodes" for k, v in r.splits.items()))
    empty = [k for k in ("val", "test") if not r.splits[k]]
    if empty:
        print(
            f"warning: no {' and no '.join(empty)} episodes (splits go by video): evaluate and "
            "poke score test episodes and fit their probes on val; import more videos or change "
            "split_fractions="
        )
    if r.skipped:
        print(f"skipped {len(r.skipped)} item(s) (listed in {r.out}/meta.json):")
        for s in r.skipped:
            print(f"  {s['item']}: {s['reason']}")
    for path in preview_from_config(r.out, c["preview"]):
        print(f"preview: {path}")


if __name__ == "__main__":
    main()
