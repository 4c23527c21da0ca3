"""Score a trained world model against the ground truth it never saw.

    python scripts/evaluate.py checkpoint=runs/glass_push/checkpoints/last.pt data=data/push

Prints a table and writes results.json (beside the run's checkpoints folder unless out= is set)
and actions.mp4, the learned actions driving the model from one real frame.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from latentplay.utils.config import require_complete


@hydra.main(config_path="../configs", config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    require_complete(cfg)
    from latentplay.evaluation.world_model import evaluate, summary_table
    from latentplay.utils.io import provenance, write_json_atomic
    from latentplay.world_models.checkpoint import load_model
    from latentplay.world_models.train import resolve_device

    device = resolve_device(cfg.device)
    model, ckpt = load_model(cfg.checkpoint, device)
    results = evaluate(model, cfg.data, cfg.horizon, cfg.max_episodes, device, cfg.max_clips)
    results.update(
        model=ckpt["model_name"], checkpoint=str(cfg.checkpoint), step=ckpt["step"], **provenance()
    )
    out = (
        Path(cfg.out) if cfg.out else Path(cfg.checkpoint).resolve().parent.parent / "results.json"
    )
    write_json_atomic(out, results)
    print(summary_table(results))
    print(f"\nwritten: {out}")
    if cfg.video and hasattr(model, "poke"):
        print("pokes and their videos, scored against MuJoCo: scripts/poke.py")
    elif cfg.video:
        from latentplay.evaluation.action_video import action_video

        video = action_video(model.cpu(), cfg.data, out.with_name("actions.mp4"))
        print(f"written: {video}")


if __name__ == "__main__":
    main()
