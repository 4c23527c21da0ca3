"""report.html of a counterfactual suite: error-vs-horizon plots, side-by-side videos, the
per-query table, the detector's validation, and sections from other runs' folders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from latentplay.evaluation.counterfactual.predict import ABDUCTION_NOTE
from latentplay.evaluation.counterfactual.scoring import OVERALL_KEYS, PREDICTORS, SuiteSummary
from latentplay.evaluation.planning import planning_section
from latentplay.evaluation.poke.report import poke_section
from latentplay.evaluation.report import (
    ReportSection,
    copy_media,
    horizon_plot,
    included_name,
    metric_bars,
    side_by_side_video,
    write_report,
)

Shown = tuple[dict[str, Any], np.ndarray, np.ndarray, np.ndarray]  # scores, truth, model, factual


def write_suite_report(
    out: Path,
    summary: SuiteSummary,
    shown: list[Shown],
    validation: dict[str, Any],
    payload: dict[str, Any],
    plan_results: str | Path | None = None,
    include: list[str | Path] | None = None,
) -> Path:
    """Write ``out/report.html`` (and its plots and videos); returns its path. ``shown``: the
    queries to show as videos (their scores and true, model and factual videos)."""
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
    for scores, true, model, factual in shown:
        name = scores["name"].replace("/", "_")
        copy = np.repeat(true[:1], len(true), 0)
        preds = {"model": model[1:], "copy": copy[1:], "factual": factual[1:]}
        vids.append(side_by_side_video(true[1:], preds, out / "videos" / f"{name}.mp4"))
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
            "video standing in for the counterfactual one. "
            f"Model: {payload.get('trained', 'not recorded')}. "
            f"Answers: {payload.get('answer', 'forward')}"
            + (f" ({ABDUCTION_NOTE})" if payload.get("answer") == "abduction" else "")
            + ".",
            images=plots,
        ),
        ReportSection("Videos: truth | model | copy | factual | difference", videos=vids),
        ReportSection("Per query", table=per_query),
        ReportSection(
            "Detector validated on real frames",
            table=[{k: v for k, v in validation.items() if not isinstance(v, (list, dict))}],
        ),
    ]
    if payload.get("skipped"):
        text = "Their intervention cannot be carried out in their scene; the others were answered."
        sections.insert(3, ReportSection("Skipped queries", text, table=payload["skipped"]))
    if plan_results is not None:
        sections.insert(0, planning_section(Path(plan_results), out))
    for folder in include or []:
        sections.append(included_section(Path(folder), out))
    return write_report(
        out,
        title=f"Counterfactual queries: {payload['checkpoint']}",
        summary_rows=rows,
        sections=sections,
    )


def suite_section(folder: Path, out: Path) -> ReportSection:
    """A section from another counterfactual run's folder (its results.json and videos, the
    videos copied under ``out/included/<folder name>/``)."""
    res = json.loads((folder / "results.json").read_text())
    if "overall" not in res:
        raise ValueError(f"include={folder}: results.json is not a counterfactual run's")
    videos = copy_media(
        sorted((folder / "videos").glob("*.mp4")), out / "included" / included_name(folder)
    )
    table = [{"predictor": p, **v} for p, v in res["overall"].items()]
    text = (
        f"{res.get('checkpoint')} on {res.get('queries')} queries "
        f"({', '.join(res.get('kinds', []))}); truth | model | copy | factual | difference."
    )
    if res.get("trained"):
        text += f" Model: {res['trained']}."
    return ReportSection(
        f"Counterfactual queries: {res.get('checkpoint')}", text, table, [], videos
    )


def included_section(folder: Path, out: Path) -> ReportSection:
    """A section from another run's folder: scripts/poke.py's, scripts/counterfactual.py's or
    scripts/plan.py's."""
    if (folder / "poke_results.json").is_file():
        return poke_section(folder, out)
    if (folder / "results.json").is_file():
        if "rows" in json.loads((folder / "results.json").read_text()):
            return planning_section(folder / "results.json", out)
        return suite_section(folder, out)
    raise ValueError(
        f"include={folder}: expected a folder with poke_results.json (scripts/poke.py) or "
        "results.json (scripts/counterfactual.py or scripts/plan.py)"
    )
