"""Export a collected dataset to another format (Minari, for now), losslessly.

python scripts/export.py format=minari data=data/push dataset_id=latentplay/push-v0 out=data/minari

Read it back with ``minari.load_dataset("latentplay/push-v0")``, with
``MINARI_DATASETS_PATH=data/minari`` set when ``out`` was given.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from latentplay.cli.config import plain


@hydra.main(config_path="../configs", config_name="export", version_base="1.3")
def main(cfg: DictConfig) -> None:
    c = plain(cfg)  # typed at parse time (cli/schemas.py): format is one of the known ones
    from latentplay.rollouts.minari_export import export_minari

    path = export_minari(
        c["data"],
        c["dataset_id"],
        out_dir=c["out"],
        split=c["split"],
        include_state_obs=c["include_state_obs"],
    )
    print(f"{c['data']} -> Minari dataset {c['dataset_id']!r} at {path}")


if __name__ == "__main__":
    main()
