"""Train a world model on the frames of a collected dataset (never its ground truth).

python scripts/train.py model=glass data=data/push trainer.max_minutes=30 out=runs/glass_push
python scripts/train.py ... resume=true      # continue exactly from out/checkpoints/last.pt
torchrun --nproc_per_node=2 scripts/train.py ...   # data-parallel: trainer.batch_size is global
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from latentplay.utils.config import require_complete


@hydra.main(config_path="../configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    require_complete(cfg)
    from latentplay.world_models.factory import build_training

    run = build_training(
        model_cfg=OmegaConf.to_container(cfg.model, resolve=True),
        data=cfg.data,
        split=cfg.split,
        trainer_cfg=OmegaConf.to_container(cfg.trainer, resolve=True),
    )
    from latentplay.world_models.train import train

    result = train(
        run.model,
        run.objective,
        run.dataset,
        cfg.out,
        run.settings,
        resume=cfg.resume,
        config=OmegaConf.to_container(cfg, resolve=True),
        sample_fn=run.sample_fn,
        before_checkpoint=run.before_checkpoint,
    )
    from latentplay.world_models.distributed import from_env

    if not from_env().is_main:
        return
    print(
        f"{result.out}: step {result.step}, {result.seconds / 60:.1f} min of training, "
        f"{result.transitions_per_s:.0f} transitions/s; checkpoint {result.out}/checkpoints/last.pt"
    )


if __name__ == "__main__":
    main()
