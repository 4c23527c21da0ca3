"""Scores of a query's answer against the truth and two baselines, and their summary.

Object positions of every video (true, predicted, baselines) are read by the same colour
detector, so a perfect prediction scores exactly zero; the detector's own error against the
simulator's positions is reported beside (:meth:`~latentplay.evaluation.detector.
ObjectDetector.validate`). Baselines: *copy* (C's first frame held) and *factual* (the true
factual video B standing in for D).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from latentplay.evaluation import metrics as M
from latentplay.evaluation.counterfactual.branches import QueryBranches
from latentplay.evaluation.detector import MOVED_M, visual_contact

PREDICTORS = ("model", "copy", "factual")
SERIES = ("object_err_px", "object_err_cm", "effect_err_px", "psnr", "ssim")
Locate = Callable[[np.ndarray], np.ndarray]  # frames (N, h, w, 3) uint8 -> (N, 4, 2) px, NaN
ToMetres = Callable[[np.ndarray], np.ndarray]  # (..., 2) pixels -> (..., 2) table metres


def _fill(pred: np.ndarray, start: np.ndarray) -> tuple[np.ndarray, float]:
    """Objects the detector misses in a predicted frame are taken to be where they started;
    returns the filled positions and the detection rate."""
    miss = ~np.isfinite(pred).all(axis=-1)
    filled = np.where(miss[..., None], start[None], pred)
    return filled, float(1 - miss.mean()) if miss.size else 1.0


def read_outcomes(
    frames: np.ndarray, pos: np.ndarray, start: np.ndarray, to_metres: ToMetres
) -> tuple[np.ndarray, np.ndarray]:
    """Did each object end > 1 cm from where it started; was it touched at any step (the
    paddle within reach in a frame, or the object moved: objects here only move when touched,
    and a touch can fall between frames)? ``pos (H, n, 2)`` px read from ``frames``."""
    moved = np.linalg.norm(to_metres(pos[-1]) - to_metres(start), axis=-1) > MOVED_M
    return moved, visual_contact(frames, pos, to_metres).any(axis=0) | moved


def score_query(
    branches: QueryBranches,
    model_cf: np.ndarray,
    model_f: np.ndarray,
    locate: Locate,
    to_metres: ToMetres,
) -> dict[str, Any]:
    """Per-step errors of the model and the baselines.

    Every quantity of the truth and of the predictions is read from frames the same way (the
    detector's object positions; moved = ended more than 1 cm from the start; contact = the
    paddle within reach of the object), so a perfect prediction scores exactly zero; how
    these readings agree with the simulator on the true frames is reported as
    ``reading_vs_simulator``. Steps where the detector misses an object in the *true*
    counterfactual video (the arm over it) are left out of the position errors (NaN-aware
    means); objects it misses in a *predicted* frame count as where they started."""
    f, cf = branches.factual, branches.counterfactual
    h, name = len(cf.actions), branches.query.name
    for what, video in (("model_cf", model_cf), ("model_f", model_f)):
        if video.shape != cf.frames[1:].shape:
            raise ValueError(
                f"query {name}: {what} of shape {video.shape}; expected {cf.frames[1:].shape}"
            )
    objs = np.flatnonzero(cf.object_active)  # objects of the counterfactual scene
    if not len(objs):
        raise ValueError(f"query {name}: the counterfactual scene has no object to score")
    both = [i for i in objs if f.object_active[i]]  # ... also in the factual one
    true_cf = locate(cf.frames)[:, objs]  # (H+1, n, 2)
    true_f = locate(f.frames)[:, objs]
    start_cf, start_f = true_cf[0], true_f[0]
    if not np.isfinite(start_cf).all():
        raise RuntimeError(
            f"query {name}: the detector misses an object in the true start frame "
            "(occluded?); choose another start"
        )
    preds = {
        "model": (model_cf, model_f),
        "copy": (np.repeat(cf.frames[:1], h, 0), np.repeat(f.frames[:1], h, 0)),
        "factual": (f.frames[1:], f.frames[1:]),
    }
    truth_px = true_cf[1:]
    idx_both = [int(np.flatnonzero(objs == i)[0]) for i in both]
    true_effect = (true_cf[1:, idx_both] - true_f[1:, idx_both]) if both else None
    moved_true, contact_true = read_outcomes(cf.frames[1:], truth_px, start_cf, to_metres)
    sim_moved = np.linalg.norm(cf.object_pos[-1, objs, :2] - cf.object_pos[0, objs, :2], -1)
    out: dict[str, Any] = {
        "name": name,
        "kind": branches.query.intervention.kind,
        "true_moved": moved_true.tolist(),
        "true_contact": contact_true.tolist(),
        "reading_vs_simulator": {
            "moved_agree": (moved_true == (sim_moved > MOVED_M)).tolist(),
            "contact_agree": (
                contact_true == (cf.contact[:, objs].any(axis=0) | (sim_moved > MOVED_M))
            ).tolist(),
            "truth_detected": float(np.isfinite(truth_px).all(axis=-1).mean()),
        },
    }
    chw = lambda v: v.transpose(0, 3, 1, 2).astype(np.float64) / 255  # noqa: E731
    real = chw(cf.frames[1:])
    for pred_name, (p_cf, p_f) in preds.items():
        pos_cf, rate = _fill(locate(p_cf)[:, objs], start_cf)
        err_px = np.linalg.norm(pos_cf - truth_px, axis=-1)  # (H, n), NaN: truth unseen
        err_m = np.linalg.norm(to_metres(pos_cf) - to_metres(truth_px), axis=-1)
        row = {
            "object_err_px": _nanmean_rows(err_px),
            "object_err_cm": _nanmean_rows(100 * err_m),
            "detected": rate,
        }
        if true_effect is not None:
            pos_f, _ = _fill(locate(p_f)[:, both], start_f[idx_both])
            effect = pos_cf[:, idx_both] - pos_f
            row["effect_err_px"] = _nanmean_rows(np.linalg.norm(effect - true_effect, axis=-1))
        moved, contact = read_outcomes(p_cf, pos_cf, start_cf, to_metres)
        row["moved_correct"] = (moved == moved_true).tolist()
        row["contact_correct"] = (contact == contact_true).tolist()
        pf = chw(p_cf)
        row["psnr"] = np.minimum(M.psnr(pf, real), M.PSNR_CAP).tolist()
        row["ssim"] = M.ssim(pf, real).tolist()
        out[pred_name] = row
    return out


def _nanmean_rows(x: np.ndarray) -> list[float]:
    """Mean over objects per step, ignoring NaN (a step with no seen object stays NaN)."""
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=1).tolist()


@dataclass
class SuiteSummary:
    per_step: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    overall: dict[str, dict[str, float]] = field(default_factory=dict)
    per_kind: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)


def summarize(results: list[dict[str, Any]]) -> SuiteSummary:
    """Means over queries (NaN-aware: steps where the truth was unseen are skipped): per
    horizon step, overall (mean over steps), and per kind."""
    horizons = {len(r["model"]["object_err_px"]) for r in results}
    if len(horizons) != 1:
        raise ValueError(f"queries of different horizons {sorted(horizons)}; summarize apart")
    s = SuiteSummary()

    def agg(rows: list[dict[str, Any]]) -> tuple[dict, dict]:
        steps, overall = {}, {}
        for p in PREDICTORS:
            steps[p], overall[p] = {}, {}
            for key in SERIES:
                vals = [r[p][key] for r in rows if key in r[p]]
                if vals:
                    arr = np.asarray(vals, np.float64)
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)
                        steps[p][key] = np.nanmean(arr, axis=0).tolist()
                        overall[p][key] = float(np.nanmean(arr))
                        overall[p][f"{key}_final"] = float(np.nanmean(arr[:, -1]))
            for key in ("moved_correct", "contact_correct"):
                flat = [v for r in rows for v in r[p][key]]
                overall[p][key.replace("_correct", "_acc")] = (
                    float(np.mean(flat)) if flat else float("nan")
                )
            overall[p]["detected"] = float(np.mean([r[p]["detected"] for r in rows]))
        return steps, overall

    s.per_step, s.overall = agg(results)
    for kind in sorted({r["kind"] for r in results}):
        s.per_kind[kind] = agg([r for r in results if r["kind"] == kind])[1]
    return s


def verdict(overall: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The bar for an answer worth having: the model's object and effect errors at least 2x
    lower than the better baseline's."""
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


def verdict_lines(check: dict[str, Any]) -> list[str]:
    """One line per verdict key: model, best baseline, ratio, and whether the bar is met."""
    lines = []
    for key, v in check.items():
        ratio = "exact" if v["ratio"] is None else f"{v['ratio']:.2f}"
        lines.append(
            f"{key}: model {v['model']:.3g}, best baseline {v['best_baseline']:.3g}, "
            f"ratio {ratio} (target >= 2: {'met' if v['met'] else 'NOT met'})"
        )
    return lines
