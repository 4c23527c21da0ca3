"""Train a world model on the frames of a collected dataset (never its ground truth).

python scripts/train.py model=glass data=data/push trainer.max_minutes=30 out=runs/glass_push
python scripts/train.py ... resume=true      # continue exactly from out/checkpoints/last.pt
torchrun --nproc_per_node=2 scripts/train.py ...   # data-parallel: trainer.batch_size is global
"""

from __future__ import annotations

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from latentplay.cli.config import plain


@hydra.main(config_path="../configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    c = plain(cfg)  # typed at parse time (cli/schemas.py)
    from latentplay.world_models.distributed import from_env
    from latentplay.world_models.settings import TrainerSettings
    from latentplay.world_models.train import train_model

    result = train_model(
        instantiate(c["model"]),  # the model family's training builder (configs/model/)
        c["data"],
        TrainerSettings(**c["trainer"]),
        out=c["out"],
        split=c["split"],
        resume=c["resume"],
        config=c,
        init=c["init"],
    )
    if from_env().is_main:
        print(
            f"{result.out}: step {result.step}, {result.seconds / 60:.1f} min of training, "
            f"{result.transitions_per_s:.0f} transitions/s; checkpoint "
            f"{result.out}/checkpoints/last.pt"
        )


if __name__ == "__main__":
    main()
