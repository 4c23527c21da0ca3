"""Merge datasets into one: every episode of each source, renumbered, splits kept.

python scripts/merge.py "sources=[data/mixed600,data/multi600]" out=data/mixed_multi1200

The sources must share env, camera, resolution, fps, action space, ground-truth keys and
episode length; the new meta.json lists them. Train on the result like any dataset.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from latentplay.cli.config import plain


@hydra.main(config_path="../configs", config_name="merge", version_base="1.3")
def main(cfg: DictConfig) -> None:
    c = plain(cfg)
    from latentplay.rollouts.format import load_meta
    from latentplay.rollouts.merge import merge_datasets

    out = merge_datasets(c["sources"], c["out"], progress=c["progress"])
    meta = load_meta(out)
    sizes = {k: len(v) for k, v in meta["splits"].items()}
    print(f"{' + '.join(c['sources'])} -> {out}: {meta['episodes']} episodes {sizes}")


if __name__ == "__main__":
    main()
