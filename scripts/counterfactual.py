"""Ask a world model "what if" questions and score its answers against MuJoCo re-simulations.

    python scripts/counterfactual.py checkpoint=runs/glass_push/checkpoints/last.pt
    python scripts/counterfactual.py checkpoint=oracle queries=[move_out_of_path]

Queries are YAML files in configs/query/ (evaluation/counterfactual.py). Prints per-kind and
overall tables, writes results.json, error-vs-horizon plots, side-by-side videos
(truth | model | copy | factual | difference) and report.html, and ends with its path.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from latentplay.utils.config import require_complete

QUERY_DIR = Path(__file__).resolve().parent.parent / "configs" / "query"


@hydra.main(config_path="../configs", config_name="counterfactual", version_base="1.3")
def main(cfg: DictConfig) -> None:
    require_complete(cfg)
    from latentplay.evaluation.counterfactual_run import run

    names = None if cfg.queries == "all" else list(OmegaConf.to_container(cfg.queries))
    report = run(
        checkpoint=cfg.checkpoint,
        query_files=_query_files(names),
        action_source=cfg.action_source,
        data=cfg.data,
        labels=cfg.labels,
        out=cfg.out,
        videos=cfg.videos,
        device=cfg.device,
        progress=cfg.progress,
        plan_results=cfg.plan_results,
        include=list(cfg.include),
        sample_steps=cfg.sample_steps,
    )
    print(f"\nreport: {report}")


def _query_files(names: list[str] | None) -> list[Path]:
    files = sorted(QUERY_DIR.glob("*.yaml"))
    if names is None:
        return files
    known = {f.stem: f for f in files}
    missing = [n for n in names if n not in known]
    if missing:
        raise ValueError(f"queries {missing} not in {QUERY_DIR}; known: {sorted(known)}")
    return [known[n] for n in names]


if __name__ == "__main__":
    main()
