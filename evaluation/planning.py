"""Planning benchmark: MPC episodes of a learned model's planner in the real env, beside the
random-action and true-simulator (oracle) baselines, on the same seeds (what
``scripts/plan.py`` calls), and its section in a report."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from latentplay.agents.grounding import Grounding, ground
from latentplay.agents.mpc import (
    Controller,
    EpisodeResult,
    ModelController,
    OracleController,
    RandomController,
    run_episode,
)
from latentplay.agents.planners import SamplingPlanner
from latentplay.agents.simulator import SimulatorModel
from latentplay.agents.state_grounding import (
    EnvActionView,
    StateGrounding,
    check_groundable,
    check_grounding_choice,
    load_state_grounding,
    save_state_grounding,
    state_grounding_from_data,
)
from latentplay.agents.views import PLAN_WITHOUT, load_for_planning
from latentplay.envs.arm import ArmEnv
from latentplay.evaluation.report import ReportSection, metric_bars
from latentplay.utils.device import resolve_device
from latentplay.utils.io import provenance, write_json_atomic
from latentplay.utils.progress import progress_bar
from latentplay.world_models.checkpoint import training_data, training_summary
from latentplay.world_models.protocol import StatePositions, WorldModel

PlannerFactory = Callable[..., SamplingPlanner]  # (action spec, device=...) -> planner
BASELINES = ("random", "oracle")
SUCCESS = {"reach": "end effector within 2 cm", "push": "object within 3 cm"}


def run_controller(
    name: str,
    make_env: Callable[[], ArmEnv],
    controller: Controller,
    seeds: list[int],
    max_steps: int,
    progress: bool = True,
) -> dict[str, Any]:
    """Episodes on ``seeds``; success rate, distances (cm) and replanning latency (ms)."""
    env = make_env()
    results: list[EpisodeResult] = []
    try:
        for seed in progress_bar(seeds, desc=name, disable=not progress, leave=False):
            results.append(run_episode(env, controller, seed=seed, max_steps=max_steps))
    finally:
        env.close()
    lat = np.concatenate([r.replan_ms for r in results]) if results else np.zeros(0)
    return summarize_episodes(name, results, lat)


def summarize_episodes(
    name: str, results: list[EpisodeResult], latencies_ms: np.ndarray
) -> dict[str, Any]:
    final = np.array([r.final_distance_m for r in results])
    start = np.array([r.start_distance_m for r in results])
    return {
        "controller": name,
        "episodes": len(results),
        "success_rate": float(np.mean([r.success for r in results])),
        "reached_rate": float(np.mean([r.reached for r in results])),
        "final_distance_cm_median": float(100 * np.median(final)),
        "final_distance_cm_mean": float(100 * final.mean()),
        "start_distance_cm_mean": float(100 * start.mean()),
        "replan_ms_median": float(np.median(latencies_ms)) if latencies_ms.size else float("nan"),
        "replan_ms_p90": float(np.percentile(latencies_ms, 90))
        if latencies_ms.size
        else float("nan"),
        "per_episode": [{k: v for k, v in asdict(r).items() if k != "replan_ms"} for r in results],
    }


PLAN_COLUMNS = (
    ("controller", "controller"),
    ("success_rate", "success"),
    ("reached_rate", "reached at any step"),
    ("final_distance_cm_median", "final dist. (cm, median)"),
    ("start_distance_cm_mean", "start dist. (cm, mean)"),
    ("replan_ms_median", "ms / replan (median)"),
)


def planning_table(rows: list[dict[str, Any]]) -> str:
    head = "| " + " | ".join(label for _, label in PLAN_COLUMNS) + " |"
    lines = [head, "|" + "---|" * len(PLAN_COLUMNS)]
    for r in rows:
        cells = [f"{r[k]:.3g}" if isinstance(r[k], float) else str(r[k]) for k, _ in PLAN_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def arm_env_factory(env_id: str, env_kwargs: dict[str, Any] | None = None) -> Callable[[], ArmEnv]:
    """A builder of the unwrapped arm env ``env_id`` (planning scores arm tasks only)."""
    import gymnasium as gym

    import latentplay.envs  # noqa: F401  (registers the env ids)

    kwargs = dict(env_kwargs or {})

    def make_env() -> ArmEnv:
        env = gym.make(env_id, **kwargs).unwrapped
        if not isinstance(env, ArmEnv):
            env.close()
            raise ValueError(
                f"env {env_id}: planning needs an arm env (latentplay/Reach-v0, Push-v0, "
                "PushMulti-v0)"
            )
        return env

    return make_env


def run_planning(
    checkpoint: str,
    env_id: str,
    planner: PlannerFactory,
    *,
    env_kwargs: dict[str, Any] | None = None,
    env_name: str | None = None,
    labels: list[int] | tuple[int, ...] = (1000,),
    grounding_kind: str = "linear",
    grounding_file: str | None = None,
    grounding_seed: int = 0,
    grounding_steps: int = 2000,
    ensemble: list[str] | tuple[str, ...] = (),
    ensemble_groundings: list[str] | tuple[str, ...] = (),
    view: str = "global",
    sample_steps: int | None = None,
    data: str | None = None,
    episodes: int = 50,
    seed: int = 100000,
    max_steps: int = 40,
    execute: int = 1,
    repeat: int = 1,
    context: int = 1,
    cost: str = "goal",
    behind_px: float = 5.0,
    settle_px: float = 0.0,
    space: str = "pixels",
    chunk: int | None = None,
    imagination: str = "eager",
    calibrations_off: list[str] | tuple[str, ...] = PLAN_WITHOUT,
    baselines: list[str] | tuple[str, ...] = BASELINES,
    out: str | Path | None = None,
    device: str = "auto",
    progress: bool = True,
) -> tuple[dict[str, Any], Path]:
    """MPC toward goal images in ``env_id`` with the model of ``checkpoint`` seen through ``view``
    (:func:`~latentplay.agents.views.model_view`), once per grounding (``labels``: N labelled
    transitions of ``data``, None: the model's training data; 0: the camera's analytic map), and
    the ``baselines`` on the same seeds: random actions, and the same planner with the true
    simulator as its model. ``planner(spec, device=...)`` builds a planner. ``grounding_kind``:
    "linear" or "mlp" (the planner searches the learned actions, mapped to env actions to act),
    or "rollout" (the planner searches env actions, the model imagines them through a
    state-conditioned map fit on its own rollouts: :mod:`~latentplay.agents.state_grounding`,
    seeded by ``grounding_seed``, fit in ``grounding_steps`` Adam steps; each fit is saved as
    ``out/grounding_<N>.pt`` (``grounding_<N>_seed<S>.pt`` for a seed other than 0), and
    ``grounding_file``, such a file or a shipped model's name, is used instead of fitting).
    ``ensemble``: more checkpoints (or shipped names) that score every candidate beside
    ``checkpoint``, the plan minimizing their mean cost (grounding "rollout" only: the models
    share the env's action box), each through its own grounding: fit like ``checkpoint``'s
    (saved as ``grounding_<N>..._member<i>.pt``), or, with ``grounding_file``, loaded from
    ``ensemble_groundings`` (one per member). Each planned action is held ``repeat`` env steps,
    ``execute`` of them are carried out per replan, each replan reads the last ``context``
    frames; ``cost``: "goal" (the goal image, in ``space``) or "push" (the push task's shaped
    cost on part positions: the model's own, the oracle's true ones); ``imagination``: the
    model's steps compiled or eager (:func:`use_imagination`; eager unless asked, here:
    scripts/plan.py asks for ``auto``); ``calibrations_off``: the model's calibrations its plans
    imagine without (:func:`without_calibrations`). Writes ``out/results.json`` (None:
    ``runs/plan/<env_name>_<planner>``); returns its content (one row per controller) and its
    path."""
    check_grounding_choice(grounding_kind, grounding_file)  # plan.yaml's grounding.kind, .file
    check_ensemble(ensemble, ensemble_groundings, grounding_kind, grounding_file)
    if grounding_steps < 1:
        raise ValueError(f"grounding.steps={grounding_steps}; expected at least 1 Adam step")
    unknown = sorted(set(baselines) - set(BASELINES))
    if unknown:
        raise ValueError(f"baselines {unknown}; expected some of {list(BASELINES)}")
    started = provenance()  # the code that runs, not the one checked out at the end
    dev = resolve_device(device)
    make_env = arm_env_factory(env_id, env_kwargs)
    probe = make_env()
    task = probe.task
    members: list[WorldModel] = []  # an ensemble's other models (grounding.kind=rollout)
    member_ckpts: list[dict[str, Any]] = []
    saved: StateGrounding | None = None
    member_saved: list[StateGrounding] = []
    imagined = dict(
        sample_steps=sample_steps,
        calibrations_off=calibrations_off,
        imagination=imagination,
        device=dev,
    )
    try:
        model, ckpt, turned_off, compiled = load_for_planning(checkpoint, view, probe, **imagined)
        data = data or training_data(ckpt)
        if data is None and grounding_file is None and any(n > 0 for n in labels):
            raise ValueError("grounding needs labelled transitions: set data=<dataset folder>")
        if cost == "push" and task != "push":
            raise ValueError(f"cost=push in {env_id}: its task is {task!r}; use cost=goal")
        for name in ensemble:
            member, member_ckpt, *_ = load_for_planning(name, view, probe, **imagined)
            members.append(member)
            member_ckpts.append(member_ckpt)
        for name, m in [(checkpoint, model), *zip(ensemble, members, strict=True)]:
            if cost == "push" and not isinstance(m, StatePositions):
                raise ValueError(
                    f"cost=push needs models with part positions (keypoints); {name} "
                    f"({type(m).__name__}, model_view={view}) has none: use cost=goal"
                )
            if grounding_kind == "rollout":
                check_groundable(m)
        if grounding_file is not None:  # checked to be each model's before any episode
            saved = load_state_grounding(grounding_file, model, dev)
            member_saved = [
                load_state_grounding(f, m, dev)
                for f, m in zip(ensemble_groundings, members, strict=True)
            ]
    except BaseException:
        probe.close()
        raise
    seeds = list(range(seed, seed + episodes))
    spec = model.action_spec
    settings = planner(spec, device=dev).settings
    short = env_name or env_id.split("/")[-1].lower()
    out = Path(out) if out else Path("runs/plan") / f"{short}_{settings['name']}"
    out.mkdir(parents=True, exist_ok=True)
    fitting = grounding_kind == "rollout" and saved is None  # state groundings fit here
    rows = []
    for n in [saved.labels] if saved is not None else labels:  # a saved grounding: one row
        planned: WorldModel = model
        grounding: Grounding | StateGrounding
        member_views: list[WorldModel] = []
        if saved is not None:
            grounding, planned = saved, EnvActionView(model, saved)
            member_views = [EnvActionView(m, g) for m, g in zip(members, member_saved, strict=True)]
        elif fitting:
            suffix = f"_seed{grounding_seed}" if grounding_seed else ""
            fits = []
            for i, m in enumerate([model, *members]):
                fit = state_grounding_from_data(
                    m,
                    data,
                    n,
                    steps=grounding_steps,
                    seed=grounding_seed,
                    device=dev,
                    progress=progress,
                )
                member = f"_member{i}" if i else ""
                save_state_grounding(fit, m, out / f"grounding_{n}{suffix}{member}.pt")
                fits.append(EnvActionView(m, fit))
            grounding, planned, member_views = fits[0].grounding, fits[0], fits[1:]
        else:
            grounding = ground(model, n, probe, data, kind=grounding_kind, device=dev)
        controller = ModelController(
            planned,
            planner(planned.action_spec, device=dev),
            grounding,
            members=member_views,
            space=space,
            context=context,
            execute=execute,
            chunk=chunk,
            repeat=repeat,
            cost=cost,
            behind_px=behind_px,
            settle_px=settle_px,
            device=dev,
        )
        searched = ", env actions" if grounding_kind == "rollout" else ""
        if fitting and grounding_seed:
            searched += f", fit seed {grounding_seed}"
        more = f" + {len(members)} more" if members else ""
        name = f"{model.name}{more} ({n or 'analytic'} labels{searched})"
        row = run_controller(name, make_env, controller, seeds, max_steps, progress)
        row["labels"] = int(n)
        rows.append(row)
    probe.close()
    if "random" in baselines:
        random = RandomController(seed)
        rows.append(run_controller("random", make_env, random, seeds, max_steps, progress))
    if "oracle" in baselines:
        oracle = OracleController(
            make_env,
            planner(SimulatorModel.action_spec),
            execute=execute,
            repeat=repeat,
            cost=cost,
            behind_px=behind_px,
            settle_px=settle_px,
        )
        rows.append(
            run_controller("oracle (true simulator)", make_env, oracle, seeds, max_steps, progress)
        )
    results = {
        "env": env_id,
        "planner": settings,
        "checkpoint": str(checkpoint),
        "trained": training_summary(ckpt),
        "episodes": episodes,
        "max_steps": max_steps,
        "execute": execute,
        "repeat": repeat,
        "context": context,
        "grounding": grounding_kind,
        "grounding_file": None if grounding_file is None else str(grounding_file),
        "ensemble": list(ensemble),
        "ensemble_trained": [training_summary(c) for c in member_ckpts],
        "ensemble_groundings": list(ensemble_groundings),
        "grounding_seed": grounding_seed if fitting else None,
        "grounding_steps": grounding_steps if fitting else None,
        "cost": cost,
        "imagination": "compiled" if compiled and model.steps_compiled else "eager",
        "calibrations_off": turned_off,
        "behind_px": behind_px,
        "settle_px": settle_px,
        "success": SUCCESS[task],
        "rows": rows,
        **started,
    }
    write_json_atomic(out / "results.json", results)
    return results, out / "results.json"


def check_ensemble(
    ensemble: list[str] | tuple[str, ...],
    groundings: list[str] | tuple[str, ...],
    grounding_kind: str,
    grounding_file: str | None,
) -> None:
    """Raise a ValueError, naming the settings as plan.yaml spells them, unless an ensemble
    plans env actions and its saved groundings come one per member, with the main model's."""
    if ensemble and grounding_kind != "rollout":
        raise ValueError(
            f"ensemble={list(ensemble)} with grounding.kind={grounding_kind}: the models share "
            "only the env's action box (grounding.kind=rollout)"
        )
    if groundings and len(groundings) != len(ensemble):
        raise ValueError(
            f"ensemble_groundings={list(groundings)}: expected one per ensemble model "
            f"({len(ensemble)}: {list(ensemble)})"
        )
    if ensemble and (grounding_file is None) != (not groundings):
        raise ValueError(
            "grounding.file and ensemble_groundings go together: saved groundings for every "
            f"model (grounding.file={grounding_file!r}, ensemble_groundings={list(groundings)}),"
            " or none (each fit on data)"
        )


def planning_section(path: Path, out: Path) -> ReportSection:
    """A report section from a planning run's results.json (table and success bars)."""
    try:
        plan = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"plan_results={path}: cannot read a plan.py results.json ({e})") from e
    # results written before a column existed show it empty
    rows = [{label: r.get(k, "") for k, label in PLAN_COLUMNS} for r in plan["rows"]]
    env = str(plan["env"]).split("/")[-1]
    bars = metric_bars(
        {plan["env"]: {r["controller"]: r["success_rate"] for r in plan["rows"]}},
        out / f"planning_success_{env}.png",
        ylabel="success rate",
        title=f"MPC in {plan['env']} ({plan['episodes']} episodes)",
    )
    success = plan["success"]
    if isinstance(success, dict):  # results written before the criterion was the task's own
        success = success.get("reach" if env.lower().startswith("reach") else "push")
    space = (
        "the env's action space, the model imagining each command through a grounding fit on "
        "its own rollouts"
        if plan.get("grounding") == "rollout"
        else "the learned action space"
    )
    text = (
        f"Planner {plan['planner']['name']} in {space}, goal images from "
        f"reachable states; success: {success}. Oracle: the same planner with MuJoCo "
        f"as its model. Model: {plan['checkpoint']}, {plan.get('trained', 'not recorded')}."
    )
    members = plan.get("ensemble") or []
    if members:  # every candidate was scored by each model: their mean cost
        trained = plan.get("ensemble_trained") or ["not recorded"] * len(members)
        each = "; ".join(f"{m}, {t}" for m, t in zip(members, trained, strict=False))
        text += f" Every candidate scored by the mean cost of it and {len(members)} more: {each}."
    return ReportSection(f"Planning in {env}", text, table=rows, images=[bars])
