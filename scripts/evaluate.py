"""Score a trained world model against the ground truth it never saw.

    python scripts/evaluate.py checkpoint=runs/glass_push/checkpoints/last.pt data=data/push

Prints a table and writes results.json (beside the run's checkpoints folder unless out= is set)
and actions.mp4, the learned actions driving the model from one real frame.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from latentplay.cli.config import plain


@hydra.main(config_path="../configs", config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    c = plain(cfg)  # typed at parse time (cli/schemas.py)
    from latentplay.evaluation.world_model import evaluate_checkpoint

    ev = evaluate_checkpoint(
        c["checkpoint"],
        c["data"],
        out=c["out"],
        horizon=c["horizon"],
        max_episodes=c["max_episodes"],
        max_clips=c["max_clips"],
        device=c["device"],
        video=c["video"],
    )
    print(ev.table)
    print(f"\nwritten: {ev.path}")
    if ev.video is not None:
        print(f"written: {ev.video}")
    if ev.note:
        print(ev.note)


if __name__ == "__main__":
    main()
