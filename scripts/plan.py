"""Plan toward goal images in a learned model's action space; act in the real env (MPC).

    python scripts/plan.py checkpoint=runs/glass_push/checkpoints/last.pt env=push \
        planner=cem episodes=50

Runs the model's planner once per grounding (``grounding.labels``: N labelled transitions;
0 = the analytic camera map) and, on the same episode seeds, the baselines: random actions and
the same planner with the true simulator as its model. Prints a table; writes results.json.
"""

from __future__ import annotations

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from latentplay.cli.config import plain


@hydra.main(config_path="../configs", config_name="plan", version_base="1.3")
def main(cfg: DictConfig) -> None:
    c = plain(cfg)  # typed at parse time (cli/schemas.py)
    from latentplay.evaluation.planning import planning_table, run_planning

    results, path = run_planning(
        c["checkpoint"],
        c["env"]["id"],
        instantiate(c["planner"]),  # a planner for an action space (configs/planner/)
        env_kwargs=c["env"]["kwargs"],
        env_name=c["env"]["name"],
        labels=c["grounding"]["labels"],
        grounding_kind=c["grounding"]["kind"],
        grounding_file=c["grounding"]["file"],
        grounding_seed=c["grounding"]["seed"],
        grounding_steps=c["grounding"]["steps"],
        ensemble=c["ensemble"],
        ensemble_groundings=c["ensemble_groundings"],
        view=c["model_view"],
        sample_steps=c["sample_steps"],
        data=c["data"],
        episodes=c["episodes"],
        seed=c["seed"],
        max_steps=c["max_steps"],
        execute=c["execute"],
        repeat=c["repeat"],
        context=c["context"],
        cost=c["cost"],
        behind_px=c["behind_px"],
        settle_px=c["settle_px"],
        space=c["space"],
        chunk=c["chunk"],
        imagination=c["imagination"],
        calibrations_off=c["calibrations_off"],
        baselines=c["baselines"],
        out=c["out"],
        device=c["device"],
        progress=c["progress"],
    )
    print(planning_table(results["rows"]))
    print(f"\nwritten: {path}")


if __name__ == "__main__":
    main()
