"""Plan toward goal images in a learned model's action space; act in the real env (MPC).

    python scripts/plan.py checkpoint=runs/glass_push/checkpoints/last.pt env=push \
        planner=cem episodes=50

Runs the model's planner once per grounding (``grounding.labels``: N labelled transitions;
0 = the analytic camera map) and, on the same episode seeds, the baselines: random actions and
the same planner with the true simulator as its model. Prints a table; writes results.json.
"""

from __future__ import annotations

import math
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from latentplay.utils.config import require_complete


@hydra.main(config_path="../configs", config_name="plan", version_base="1.3")
def main(cfg: DictConfig) -> None:
    require_complete(cfg)
    # Checked against utils/schemas.PlanConfig at parse time; plain strings from here on.
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
    import gymnasium as gym

    import latentplay.envs  # noqa: F401  (registers the env ids)
    from latentplay.agents.grounding import (
        Grounding,
        analytic_grounding,
        camera_jacobian,
        labelled_transitions,
    )
    from latentplay.agents.mpc import ModelController, OracleController, RandomController
    from latentplay.agents.planners import PLANNERS
    from latentplay.agents.simulator import SimulatorModel
    from latentplay.envs.arm import EE_STEP, ArmEnv
    from latentplay.evaluation.planning import planning_table, run_controller
    from latentplay.rollouts.format import EpisodeReader
    from latentplay.utils.io import provenance, write_json_atomic
    from latentplay.world_models.checkpoint import load_model
    from latentplay.world_models.train import resolve_device

    started = provenance()  # the code that runs, not the one checked out at the end
    env_kwargs = OmegaConf.to_container(cfg.env.kwargs, resolve=True)

    def make_env() -> ArmEnv:
        env = gym.make(cfg.env.id, **env_kwargs).unwrapped
        if not isinstance(env, ArmEnv):
            raise ValueError(f"env={cfg.env.name}: planning needs an arm env (reach, push)")
        return env

    planner_kw = OmegaConf.to_container(cfg.planner, resolve=True)
    planner_cls = PLANNERS[planner_kw.pop("name")]
    device = resolve_device(cfg.device)
    model, ckpt = load_model(cfg.checkpoint, device)
    if cfg.model_view == "global":  # GLASS's GMA alone: global shifts, ~100x cheaper steps
        from latentplay.world_models.glass.global_model import GlassGlobal

        model = GlassGlobal(model)
    elif cfg.model_view == "ee_poke":  # a sparse-flow model poked at the end effector
        from latentplay.agents.ee_poke import EndEffectorPoke

        model = EndEffectorPoke(model, make_env(), cfg.sample_steps)
    elif cfg.model_view != "full":
        raise ValueError(
            f"model_view={cfg.model_view!r}; expected 'full', 'global' (GLASS) or 'ee_poke' (YODA)"
        )
    data = cfg.data or ckpt.get("config", {}).get("data")
    if data is None and any(n > 0 for n in cfg.grounding.labels):
        raise ValueError("grounding needs labelled transitions: set data=<dataset folder>")
    seeds = list(range(cfg.seed, cfg.seed + cfg.episodes))
    spec = model.action_spec
    rows = []
    probe = make_env()
    for n in cfg.grounding.labels:
        if n == 0:
            jac = camera_jacobian(probe)
            grounding = analytic_grounding(spec, EE_STEP, jac, probe.width)
        else:
            reader = EpisodeReader(data)
            from latentplay.world_models.checkpoint import check_frames_fit

            check_frames_fit(model, reader.meta, data)
            train = reader.indices("train")
            eps = train[: max(2, math.ceil(2 * n / reader.meta["steps"]))]
            learned, env_actions = labelled_transitions(model, reader, eps, n, device=device)
            grounding = Grounding(spec, 3, kind=cfg.grounding.kind).fit(learned, env_actions)
            reader.close()
        controller = ModelController(
            model,
            planner_cls(spec, device=device, **planner_kw),
            grounding,
            space=cfg.space,
            execute=cfg.execute,
            chunk=cfg.chunk,
            device=device,
        )
        row = run_controller(
            f"{model.name} ({n or 'analytic'} labels)",
            make_env,
            controller,
            seeds,
            cfg.max_steps,
            cfg.progress,
        )
        row["labels"] = int(n)
        rows.append(row)
    probe.close()
    if "random" in cfg.baselines:
        rows.append(
            run_controller(
                "random", make_env, RandomController(cfg.seed), seeds, cfg.max_steps, cfg.progress
            )
        )
    if "oracle" in cfg.baselines:
        oracle = OracleController(
            make_env, planner_cls(SimulatorModel.action_spec, **planner_kw), execute=cfg.execute
        )
        rows.append(
            run_controller(
                "oracle (true simulator)", make_env, oracle, seeds, cfg.max_steps, cfg.progress
            )
        )
    out = Path(cfg.out or f"runs/plan/{cfg.env.name}_{cfg.planner.name}")
    results = {
        "env": cfg.env.id,
        "planner": OmegaConf.to_container(cfg.planner, resolve=True),
        "checkpoint": str(cfg.checkpoint),
        "episodes": cfg.episodes,
        "max_steps": cfg.max_steps,
        "success": {"reach": "end effector within 2 cm", "push": "object within 3 cm"},
        "rows": rows,
        **started,
    }
    print(planning_table(rows))
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "results.json", results)
    print(f"\nwritten: {out / 'results.json'}")


if __name__ == "__main__":
    main()
