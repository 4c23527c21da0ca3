"""A counterfactual suite end to end: model, detector, grounding, queries, tables, plots,
videos and report.html (what ``scripts/counterfactual.py`` and the demo call)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentplay.evaluation.counterfactual import (
    PREDICTORS,
    QueryOutcome,
    load_queries,
    make_env,
    run_queries,
    summarize,
)
from latentplay.world_models.protocol import Actions

OVERALL_KEYS = (
    ("object_err_px", "object error (px, mean over steps)"),
    ("object_err_px_final", "object error (px, last step)"),
    ("object_err_cm", "object error (cm)"),
    ("effect_err_px", "effect error (px)"),
    ("moved_acc", "moved? accuracy"),
    ("contact_acc", "contact? accuracy"),
    ("psnr", "PSNR (dB)"),
    ("ssim", "SSIM"),
    ("detected", "objects detected"),
)


def overall_table(overall: dict[str, dict[str, float]]) -> str:
    lines = ["| metric | " + " | ".join(PREDICTORS) + " |", "|---|" + "---:|" * len(PREDICTORS)]
    for key, label in OVERALL_KEYS:
        cells = [overall[p].get(key, float("nan")) for p in PREDICTORS]
        lines.append(f"| {label} | " + " | ".join(f"{c:.3g}" for c in cells) + " |")
    return "\n".join(lines)


def verdict(overall: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Issue #4's bar: the model's object and effect errors at least 2x lower than the better
    baseline's."""
    out: dict[str, Any] = {}
    for key in ("object_err_px", "effect_err_px"):
        model = overall["model"].get(key, float("nan"))
        best = min(overall["copy"].get(key, np.inf), overall["factual"].get(key, np.inf))
        if not np.isfinite(model):  # missing or NaN: nothing was measured, nothing is met
            out[key] = {"model": model, "best_baseline": best, "ratio": None, "met": False}
            continue
        ratio = best / model if model > 0 else None  # None: the model is exact
        met = best > 0 if ratio is None else ratio >= 2.0
        out[key] = {"model": model, "best_baseline": best, "ratio": ratio, "met": bool(met)}
    return out


def _model_and_grounding(
    checkpoint: str,
    data: str | None,
    labels: int,
    device: torch.device,
    sample_steps: int | None = None,
) -> tuple[Any, Any, str]:
    if checkpoint == "oracle":  # the simulator is built per query in run(): scenes differ
        return (
            "oracle",
            lambda a: Actions(torch.as_tensor(a, dtype=torch.float32)[None], None),
            "oracle",
        )
    from latentplay.agents.grounding import Grounding, labelled_transitions
    from latentplay.rollouts.format import EpisodeReader
    from latentplay.world_models.checkpoint import load_model

    model, ckpt = load_model(checkpoint, device)
    if sample_steps is not None and not hasattr(model, "set_sampler"):
        raise ValueError(
            f"sample_steps={sample_steps}: a {ckpt['model_name']} model does not sample its "
            "frames; leave sample_steps=null"
        )
    if hasattr(model, "poke"):  # sparse flow (YODA): poked at the end effector, analytically
        return _end_effector_pokes(model, checkpoint, device, sample_steps)
    data = data or ckpt.get("config", {}).get("data")
    if data is None:
        raise ValueError("grounding needs labelled transitions: set data=<dataset folder>")
    reader = EpisodeReader(data)
    from latentplay.world_models.checkpoint import check_frames_fit

    check_frames_fit(model, reader.meta, data)
    eps = reader.indices("train")[: max(2, -(-2 * labels // reader.meta["steps"]))]
    learned, env_actions = labelled_transitions(model, reader, eps, labels, device=device)
    reader.close()
    g = Grounding(model.action_spec, 3).fit(learned, env_actions)

    def to_learned(a: np.ndarray) -> Actions:
        acts = g.to_learned(torch.as_tensor(a, dtype=torch.float32)[None])
        return Actions(*(None if x is None else x.to(device) for x in acts))

    return model, to_learned, Path(checkpoint).resolve().parent.parent.name


def _end_effector_pokes(
    model: Any, checkpoint: str, device: torch.device, sample_steps: int | None = None
) -> tuple[Any, Any, str]:
    """A sparse-flow model answers with pokes at the end effector: env actions become the end
    effector's pixel motion through the camera (no labels). Its own parse of the factual video
    would carry the factual objects' motion into the counterfactual, so queries to it always
    use these grounded actions."""
    from latentplay.agents.ee_poke import EndEffectorPoke
    from latentplay.agents.grounding import analytic_grounding, camera_jacobian
    from latentplay.envs.arm import EE_STEP, PushMultiEnv

    env = PushMultiEnv(width=model.image_size, height=model.image_size, time_limit=None)
    wrapped = EndEffectorPoke(model, env, sample_steps)
    g = analytic_grounding(wrapped.action_spec, EE_STEP, camera_jacobian(env), model.image_size)

    def to_learned(a: np.ndarray) -> Actions:
        acts = g.to_learned(torch.as_tensor(a, dtype=torch.float32)[None])
        return Actions(acts.continuous.to(device), None)

    return wrapped, to_learned, Path(checkpoint).resolve().parent.parent.name


def run(
    *,
    checkpoint: str,
    query_files: list[Path],
    action_source: str = "latent",
    data: str | None = None,
    labels: int = 1000,
    out: str | Path | None = None,
    videos: int = 6,
    device: str = "auto",
    progress: bool = True,
    plan_results: str | Path | None = None,
    include: list[str | Path] | None = None,
    sample_steps: int | None = None,
) -> Path:
    """Run the queries of ``query_files`` against ``checkpoint``; returns report.html's path.
    ``plan_results`` (a scripts/plan.py results.json) and ``include`` (folders written by
    scripts/poke.py or by another run of this one, e.g. a second model's) add sections.
    ``sample_steps``: ODE steps per frame of a sampling model (YODA); None: the model's."""
    from latentplay.evaluation.detector import ObjectDetector
    from latentplay.utils.io import provenance, write_json_atomic
    from latentplay.world_models.train import resolve_device

    started = provenance()  # the code that runs, not the one checked out at the end
    dev = resolve_device(device)
    queries = [q for f in query_files for q in load_queries(f)]
    if not queries:
        raise ValueError(f"no queries in {[str(f) for f in query_files]}")
    model, to_learned, run_name = _model_and_grounding(checkpoint, data, labels, dev, sample_steps)
    probe = make_env(queries[0])
    detector = ObjectDetector.from_env(probe)
    validation = detector.validate(probe)
    cam = probe.camera
    probe.close()

    def locate(frames: np.ndarray) -> np.ndarray:
        return detector.locate(frames)[0]

    def to_metres(px: np.ndarray) -> np.ndarray:
        return cam.pixel_to_world(px, z=0.02)[..., :2]

    outcomes: list[QueryOutcome] = []
    if model == "oracle":
        from latentplay.agents.simulator import SimulatorModel

        for q in queries:  # one twin env per scene
            sim = SimulatorModel(lambda q=q: make_env(q), device=dev)
            outcomes += run_queries(sim, [q], locate, to_metres, to_learned, "grounded", dev, False)
    else:
        if getattr(model, "name", "") == "yoda-ee" and action_source != "grounded":
            print("sparse-flow model: queries use grounded end-effector pokes (action_source)")
            action_source = "grounded"
        outcomes = run_queries(
            model, queries, locate, to_metres, to_learned, action_source, dev, progress
        )
    results = [o.scores for o in outcomes]
    summary = summarize(results)
    out = Path(out or f"runs/counterfactual/{run_name}")
    out.mkdir(parents=True, exist_ok=True)
    check = verdict(summary.overall)
    payload = {
        "checkpoint": str(checkpoint),
        "action_source": action_source,
        "sample_steps": getattr(getattr(model, "model", model), "sample_steps", None),
        "queries": len(results),
        "kinds": sorted({r["kind"] for r in results}),
        "detector_validation": validation,
        "overall": summary.overall,
        "per_kind": summary.per_kind,
        "per_step": summary.per_step,
        "verdict": check,
        "results": results,
        **started,
    }
    write_json_atomic(out / "results.json", payload)
    print(overall_table(summary.overall))
    for key, v in check.items():
        ratio = "exact" if v["ratio"] is None else f"{v['ratio']:.2f}"
        print(
            f"{key}: model {v['model']:.3g}, best baseline {v['best_baseline']:.3g}, "
            f"ratio {ratio} (target >= 2: {'met' if v['met'] else 'NOT met'})"
        )
    return _report(out, summary, outcomes[:videos], validation, payload, plan_results, include)


def _report(
    out: Path,
    summary: Any,
    shown: list[QueryOutcome],
    validation: dict[str, Any],
    payload: dict[str, Any],
    plan_results: str | Path | None = None,
    include: list[str | Path] | None = None,
) -> Path:
    from latentplay.evaluation.report import (
        ReportSection,
        horizon_plot,
        metric_bars,
        side_by_side_video,
        write_report,
    )

    plots = []
    for key, label in (
        ("object_err_px", "object position error (px)"),
        ("effect_err_px", "counterfactual-effect error (px)"),
        ("psnr", "PSNR (dB)"),
    ):
        curves = {
            p: {"mean": summary.per_step[p][key]} for p in PREDICTORS if key in summary.per_step[p]
        }
        if curves:
            plots.append(
                horizon_plot(curves, out / f"{key}.png", ylabel=label, title=f"{label} vs horizon")
            )
    bars = {
        kind: {p: summary.per_kind[kind][p].get("object_err_px", float("nan")) for p in PREDICTORS}
        for kind in summary.per_kind
    }
    plots.append(
        metric_bars(bars, out / "per_kind.png", ylabel="object error (px)", title="per kind")
    )
    vids = []
    for o in shown:
        name = o.scores["name"].replace("/", "_")
        copy = np.repeat(o.true_video[:1], len(o.true_video), 0)
        preds = {"model": o.model_video[1:], "copy": copy[1:], "factual": o.factual_video[1:]}
        vids.append(side_by_side_video(o.true_video[1:], preds, out / "videos" / f"{name}.mp4"))
    rows = [
        {"predictor": p, **{label: summary.overall[p].get(k) for k, label in OVERALL_KEYS}}
        for p in PREDICTORS
    ]
    per_query = [
        {
            "query": r["name"],
            "kind": r["kind"],
            **{f"{p} err px": float(np.mean(r[p]["object_err_px"])) for p in PREDICTORS},
        }
        for r in payload["results"]
    ]
    sections = [
        ReportSection(
            "Error vs horizon",
            "Object positions are read by the colour detector from every video (truth, model, "
            "baselines). copy: the counterfactual start frame held; factual: the true factual "
            "video standing in for the counterfactual one.",
            images=plots,
        ),
        ReportSection("Videos: truth | model | copy | factual | difference", videos=vids),
        ReportSection("Per query", table=per_query),
        ReportSection(
            "Detector validated on real frames",
            table=[{k: v for k, v in validation.items() if not isinstance(v, (list, dict))}],
        ),
    ]
    if plan_results is not None:
        sections.insert(0, _planning_section(Path(plan_results), out))
    for folder in include or []:
        sections.append(_included_section(Path(folder), out))
    return write_report(
        out,
        title=f"Counterfactual queries: {payload['checkpoint']}",
        summary_rows=rows,
        sections=sections,
    )


def _planning_section(path: Path, out: Path) -> Any:
    """A report section from a scripts/plan.py results.json (table and success bars)."""
    import json

    from latentplay.evaluation.planning import PLAN_COLUMNS
    from latentplay.evaluation.report import ReportSection, metric_bars

    try:
        plan = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"plan_results={path}: cannot read a plan.py results.json ({e})") from e
    rows = [{label: r[k] for k, label in PLAN_COLUMNS} for r in plan["rows"]]
    bars = metric_bars(
        {plan["env"]: {r["controller"]: r["success_rate"] for r in plan["rows"]}},
        out / "planning_success.png",
        ylabel="success rate",
        title=f"MPC in {plan['env']} ({plan['episodes']} episodes)",
    )
    text = (
        f"Planner {plan['planner']['name']} in the learned action space, goal images from "
        f"reachable states; success: {plan['success']}. Oracle: the same planner with MuJoCo "
        "as its model."
    )
    return ReportSection("Planning", text, table=rows, images=[bars])


def _included_section(folder: Path, out: Path) -> Any:
    """A section from another run's folder: scripts/poke.py's (poke_results.json and its
    videos) or this script's (results.json with per-query scores and videos). Its videos are
    copied under ``out/included/<folder name>/`` (a report links only files inside it)."""
    import json
    import shutil

    from latentplay.evaluation.report import ReportSection

    dest = out / "included" / folder.name
    if (folder / "poke_results.json").is_file():
        res = json.loads((folder / "poke_results.json").read_text())
        videos = [folder / f"{k}.mp4" for k in ("poke", "chain") if (folder / f"{k}.mp4").is_file()]
        table = [{"metric": k, "value": v} for k, v in res.items() if k.startswith("eval/")]
        text = (
            f"{res.get('checkpoint')}: poked at the end effector with the end effector's true "
            "motion; MuJoCo | model (arrows: the pokes) | difference."
        )
        title = "Pokes against MuJoCo (sparse-flow model)"
    elif (folder / "results.json").is_file():
        res = json.loads((folder / "results.json").read_text())
        if "overall" not in res:
            raise ValueError(f"include={folder}: results.json is not a counterfactual run's")
        videos = sorted((folder / "videos").glob("*.mp4"))
        table = [{"predictor": p, **v} for p, v in res["overall"].items()]
        text = (
            f"{res.get('checkpoint')} on {res.get('queries')} queries "
            f"({', '.join(res.get('kinds', []))}); truth | model | copy | factual | difference."
        )
        title = f"Counterfactual queries: {res.get('checkpoint')}"
    else:
        raise ValueError(
            f"include={folder}: expected a folder with poke_results.json (scripts/poke.py) or "
            "results.json (scripts/counterfactual.py)"
        )
    dest.mkdir(parents=True, exist_ok=True)
    copied = []
    for v in videos:
        shutil.copyfile(v, dest / v.name)
        copied.append(dest / v.name)
    return ReportSection(title, text, table=table, videos=copied)
