"""Export a collected dataset to another format (Minari, for now), losslessly.

python scripts/export.py format=minari data=data/push dataset_id=latentplay/push-v0 out=data/minari

Read it back with ``minari.load_dataset("latentplay/push-v0")``, with
``MINARI_DATASETS_PATH=data/minari`` set when ``out`` was given.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from latentplay.utils.config import require_complete

FORMATS = ("minari",)


@hydra.main(config_path="../configs", config_name="export", version_base="1.3")
def main(cfg: DictConfig) -> None:
    require_complete(cfg)
    if cfg.format not in FORMATS:
        raise ValueError(f"format={cfg.format!r} is not supported; expected one of {list(FORMATS)}")
    from latentplay.rollouts.minari_export import export_minari

    path = export_minari(
        cfg.data,
        cfg.dataset_id,
        out_dir=cfg.out,
        split=cfg.split,
        include_state_obs=cfg.include_state_obs,
    )
    print(f"{cfg.data} -> Minari dataset {cfg.dataset_id!r} at {path}")


if __name__ == "__main__":
    main()
