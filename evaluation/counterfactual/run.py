"""A counterfactual suite end to end: the model (through its view) and its grounding, the
queries, the scores, tables, plots, videos and report.html (what ``scripts/counterfactual.py``
and the demo call)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentplay.agents.grounding import Grounding, ground
from latentplay.agents.simulator import SimulatorModel
from latentplay.agents.state_grounding import (
    EnvActionView,
    check_grounding_choice,
    load_state_grounding,
    state_grounding_from_data,
)
from latentplay.agents.views import default_view, model_view
from latentplay.envs.arm import OBJECT_HALF_HEIGHT, PushMultiEnv
from latentplay.evaluation.counterfactual.branches import build_branches, make_env
from latentplay.evaluation.counterfactual.predict import (
    ABDUCTION_NOTE,
    EnvDrive,
    ToLearned,
    answer_mode,
    predict,
)
from latentplay.evaluation.counterfactual.queries import ImpossibleQuery, Query, load_queries
from latentplay.evaluation.counterfactual.report import write_suite_report
from latentplay.evaluation.counterfactual.scoring import (
    Locate,
    ToMetres,
    overall_table,
    score_query,
    summarize,
    verdict,
    verdict_lines,
)
from latentplay.evaluation.detector import ObjectDetector
from latentplay.utils.device import resolve_device
from latentplay.utils.io import provenance, write_json_atomic
from latentplay.utils.progress import progress_bar, write_line
from latentplay.world_models.checkpoint import load_model, training_data, training_summary
from latentplay.world_models.protocol import Actions, FixedFrameSize, Sampling, WorldModel
from latentplay.world_models.shipped import run_folder

ACTION_SOURCES = ("latent", "grounded")


@dataclass
class QueryOutcome:
    """A scored query and its videos (H+1 frames each: the shared start frame, then steps)."""

    scores: dict[str, Any]
    true_video: np.ndarray
    model_video: np.ndarray
    factual_video: np.ndarray


def run_queries(
    model: WorldModel,
    queries: list[Query],
    locate: Locate,
    to_metres: ToMetres,
    drive: EnvDrive | None = None,
    action_source: str = "latent",
    device: str | torch.device = "cpu",
    progress: bool = True,
    skipped: list[dict[str, str]] | None = None,
    answer: str = "forward",
) -> list[QueryOutcome]:
    """Build, predict and score every query (see :func:`~.scoring.score_query`).
    ``action_source``: "latent" parses the factual video (a counterfactual branch whose
    actions the query changes still goes through ``drive``); "grounded" drives every branch
    with its env actions through ``drive``. A query whose intervention is impossible in its
    scene is named on the console and in ``skipped`` (``{"query", "reason"}``), and the
    others are answered. ``answer``: "forward" or "abduction" (:func:`~.predict.answer_mode`)."""
    if action_source not in ACTION_SOURCES:
        raise ValueError(f"action_source={action_source!r}; expected one of {ACTION_SOURCES}")
    if action_source == "grounded" and drive is None:
        raise ValueError("action_source='grounded' needs drive (a grounding)")
    out = []
    for q in progress_bar(queries, desc="queries", disable=not progress, leave=False):
        try:
            b = build_branches(q)
        except ImpossibleQuery as e:
            if skipped is None:  # no caller to report it: say it here
                write_line(f"skipped query {q.name}: {e}")
            else:
                skipped.append({"query": q.name, "reason": str(e)})
            continue
        pred_cf, pred_f = predict(
            model, b, drive, device, parse=action_source == "latent", answer=answer
        )
        scores = score_query(b, pred_cf, pred_f, locate, to_metres)
        start = b.counterfactual.frames[:1]
        out.append(
            QueryOutcome(
                scores,
                b.counterfactual.frames,
                np.concatenate([start, pred_cf]),
                b.factual.frames,
            )
        )
    return out


def _to_learned(grounding: Grounding, device: torch.device) -> ToLearned:
    def to_learned(a: np.ndarray) -> Actions:
        acts = grounding.to_learned(torch.as_tensor(a, dtype=torch.float32)[None])
        return Actions(*(None if x is None else x.to(device) for x in acts))

    return to_learned


def _env_actions(device: torch.device) -> ToLearned:
    """The simulator's (and an env-action view's) actions are the env's, as they are."""

    def to_actions(a: np.ndarray) -> Actions:
        return Actions(torch.as_tensor(a, dtype=torch.float32, device=device)[None], None)

    return to_actions


@dataclass
class Answerer:
    """What answers the queries: a model seen through a view, with its grounding."""

    model: WorldModel
    view: str
    drive: EnvDrive
    grounding: str  # what maps env actions: linear, mlp, rollout (agents/state_grounding.py)
    run_name: str
    sample_steps: int | None
    trained: str  # how much training the model had (training_summary)


def answerer(
    checkpoint: str,
    view: str = "auto",
    data: str | None = None,
    labels: int = 1000,
    device: str | torch.device = "cpu",
    sample_steps: int | None = None,
    grounding: str = "linear",
    grounding_file: str | None = None,
) -> Answerer:
    """The model of ``checkpoint`` through ``view`` (``auto``: the end-effector view for a
    sparse-flow model, else the model itself) and its grounding: analytic for the end-effector
    view (its actions are the end effector's motion), else of kind ``grounding`` fit on
    ``labels`` labelled transitions of ``data`` (None: the model's training data;
    ``labels=0``: analytic), or, for "rollout" (a model with state features: keypoints), the
    saved one of ``grounding_file``."""
    check_grounding_choice(grounding, grounding_file, "grounding", "grounding_file")
    device = torch.device(device)
    model, ckpt = load_model(checkpoint, device)
    view = default_view(model) if view == "auto" else view
    steps = sample_steps
    if steps is None and isinstance(model, Sampling):
        steps = model.sample_steps
    size = model.image_size if isinstance(model, FixedFrameSize) else 64
    env = PushMultiEnv(width=size, height=size, time_limit=None)  # the arm and its camera
    wrapped = model_view(model, view, env, sample_steps)
    data = data or training_data(ckpt)
    drive: EnvDrive
    if grounding == "rollout":
        if grounding_file is not None:
            sg = load_state_grounding(grounding_file, wrapped, device)
        elif data is None:
            raise ValueError("grounding needs labelled transitions: set data=<dataset folder>")
        else:
            sg = state_grounding_from_data(wrapped, data, labels, device=device)
        drive = EnvDrive(EnvActionView(wrapped, sg), _env_actions(device))
    else:
        n = 0 if view == "ee_poke" else labels
        g = ground(wrapped, n, env, data, kind=grounding, device=device)
        drive = EnvDrive(wrapped, _to_learned(g, device))
    run_name = run_folder(checkpoint).name
    summary = training_summary(ckpt)
    return Answerer(wrapped, view, drive, grounding, run_name, steps, summary)


def run(
    *,
    checkpoint: str,
    query_files: list[Path],
    action_source: str = "latent",
    model_view: str = "auto",
    data: str | None = None,
    labels: int = 1000,
    out: str | Path | None = None,
    videos: int = 6,
    device: str = "auto",
    progress: bool = True,
    plan_results: str | Path | None = None,
    include: list[str | Path] | None = None,
    sample_steps: int | None = None,
    grounding: str = "linear",
    grounding_file: str | None = None,
    answer: str = "auto",
) -> Path:
    """Run the queries of ``query_files`` against ``checkpoint`` (``"oracle"``: MuJoCo itself,
    which scores exactly zero: the harness's check); returns report.html's path.
    ``plan_results`` (a scripts/plan.py results.json) and ``include`` (folders written by
    scripts/poke.py or by another run of this one, e.g. a second model's) add sections.
    ``sample_steps``: ODE steps per frame of a sampling model (YODA); None: the model's.
    ``grounding``, ``grounding_file``: how env actions reach the model (:func:`answerer`).
    ``answer``: auto, abduction or forward (:mod:`~.predict`; the oracle always simulates)."""
    started = provenance()  # the code that runs, not the one checked out at the end
    dev = resolve_device(device)
    files = list(dict.fromkeys(Path(f).resolve() for f in query_files))  # each file once
    loaded = [(f, q) for f in files for q in load_queries(f)]
    if not loaded:
        raise ValueError(f"no queries in {[str(f) for f in query_files]}")
    seen: dict[str, Path] = {}
    for f, q in loaded:  # results, videos and report rows are keyed by name
        if q.name in seen:
            raise ValueError(
                f"query name {q.name!r} comes from both {seen[q.name]} and {f}; rename one "
                "(a query is named by its file, or by its 'name' key)"
            )
        seen[q.name] = f
    queries = [q for _, q in loaded]
    probe = make_env(queries[0])
    detector = ObjectDetector.from_env(probe)
    validation = detector.validate(probe)
    cam = probe.camera
    probe.close()

    def locate(frames: np.ndarray) -> np.ndarray:
        return detector.locate(frames)[0]

    def to_metres(px: np.ndarray) -> np.ndarray:
        return cam.pixel_to_world(px, z=OBJECT_HALF_HEIGHT)[..., :2]

    outcomes: list[QueryOutcome] = []
    skipped: list[dict[str, str]] = []
    if checkpoint == "oracle":
        for q in queries:  # one twin env per scene: scenes differ between queries
            sim = SimulatorModel(lambda q=q: make_env(q), device=dev)
            outcomes += run_queries(
                sim,
                [q],
                locate,
                to_metres,
                EnvDrive(sim, _env_actions(dev)),
                "grounded",
                dev,
                False,
                skipped,
            )
        run_name, steps, trained, grounding = "oracle", None, "MuJoCo itself", "none"
        mode = "simulated"
    else:
        ans = answerer(
            checkpoint, model_view, data, labels, dev, sample_steps, grounding, grounding_file
        )
        if ans.view == "ee_poke" and action_source != "grounded":
            print("end-effector pokes: queries use grounded actions (action_source=grounded)")
            action_source = "grounded"
        mode = answer_mode(ans.model, ans.drive, answer, parse=action_source == "latent")
        print(f"answers: {mode}" + (f" ({ABDUCTION_NOTE})" if mode == "abduction" else ""))
        outcomes = run_queries(
            ans.model,
            queries,
            locate,
            to_metres,
            ans.drive,
            action_source,
            dev,
            progress,
            skipped,
            mode,
        )
        run_name, steps, trained = ans.run_name, ans.sample_steps, ans.trained
        grounding = ans.grounding
    if not outcomes:
        raise ValueError(
            f"every one of the {len(queries)} queries was skipped: "
            + "; ".join(f"{s['query']}: {s['reason']}" for s in skipped)
        )
    results = [o.scores for o in outcomes]
    summary = summarize(results)
    out = Path(out or f"runs/counterfactual/{run_name}")
    out.mkdir(parents=True, exist_ok=True)
    check = verdict(summary.overall)
    payload = {
        "checkpoint": str(checkpoint),
        "trained": trained,
        "action_source": action_source,
        "answer": mode,
        "grounding": grounding,
        "grounding_file": grounding_file,
        "sample_steps": steps,
        "queries": len(results),
        "skipped": skipped,
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
    print("\n".join(verdict_lines(check)))
    for s in skipped:
        print(f"skipped {s['query']}: {s['reason']}")
    shown = [(o.scores, o.true_video, o.model_video, o.factual_video) for o in outcomes[:videos]]
    return write_suite_report(out, summary, shown, validation, payload, plan_results, include)
