"""Ask a world model "what if" questions and score its answers against MuJoCo re-simulations.

    python scripts/counterfactual.py checkpoint=runs/glass_push/checkpoints/last.pt
    python scripts/counterfactual.py checkpoint=oracle queries=[move_out_of_path]
    python scripts/counterfactual.py checkpoint=oracle queries=[my_queries/shove.yaml]

Queries are YAML files: those of configs/query/ by name, or your own by path (a file or a
folder of them; latentplay.evaluation.counterfactual.queries says what a file holds). A query
whose intervention is impossible in its scene is skipped and named; the others are answered.
Prints per-kind and overall tables, writes results.json, error-vs-horizon plots, side-by-side
videos (truth | model | copy | factual | difference) and report.html, and ends with its path.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from latentplay.cli.config import plain

QUERY_DIR = Path(__file__).resolve().parent.parent / "configs" / "query"


@hydra.main(config_path="../configs", config_name="counterfactual", version_base="1.3")
def main(cfg: DictConfig) -> None:
    c = plain(cfg)  # typed at parse time (cli/schemas.py)
    from latentplay.evaluation.counterfactual.queries import query_files
    from latentplay.evaluation.counterfactual.run import run

    report = run(
        checkpoint=c["checkpoint"],
        query_files=query_files(QUERY_DIR, None if c["queries"] == "all" else c["queries"]),
        action_source=c["action_source"],
        model_view=c["model_view"],
        data=c["data"],
        labels=c["labels"],
        grounding=c["grounding"],
        grounding_file=c["grounding_file"],
        answer=c["answer"],
        out=c["out"],
        videos=c["videos"],
        device=c["device"],
        progress=c["progress"],
        plan_results=c["plan_results"],
        include=c["include"],
        sample_steps=c["sample_steps"],
    )
    print(f"\nreport: {report}")


if __name__ == "__main__":
    main()
