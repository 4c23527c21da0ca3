"""What a poke run shows people: its table, its videos (MuJoCo | model with the pokes drawn |
difference), its report.html, and its section in another run's report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from latentplay.evaluation.poke.queries import PokeQuery
from latentplay.evaluation.poke.videos import DRIVE as VIDEO_DRIVE
from latentplay.evaluation.report import (
    BANNER,
    ReportSection,
    copy_media,
    included_name,
    metrics_table,
    side_by_side_frames,
    write_report,
)
from latentplay.evaluation.world_model import skipped_lines
from latentplay.rollouts.video import upscale, write_video
from latentplay.world_models.checkpoint import SHIPPED, SHORT_RUN

RESULTS = "poke_results.json"
VIDEOS = ("poke", "chain")  # one video of each query kind: <kind>.mp4
VIDEO_QUERIES = 4  # queries shown in each, one above the other
PARSED = "actions parsed from the true branch"  # how a model without pokes is driven


def _draw_pokes(frames: np.ndarray, ee_px: np.ndarray, scale: int) -> np.ndarray:
    """Upscaled ``frames (S, H, W, 3)`` with the poke of each step drawn as an arrow."""
    import cv2

    out = upscale(frames, scale).copy()
    for t in range(len(out)):
        a = tuple(int(v) for v in ee_px[t] * scale)  # camera pixel centres are at c + 0.5
        d = ee_px[t + 1] - ee_px[t]
        b = tuple(int(v) for v in (ee_px[t] + 3 * d) * scale)  # drawn 3x longer
        cv2.arrowedLine(out[t], a, b, (255, 255, 255), 1, cv2.LINE_AA, tipLength=0.3)
    return out


def poke_frames(query: PokeQuery, pred: np.ndarray, scale: int = 4) -> np.ndarray:
    """MuJoCo | model (the poke of each step drawn as an arrow, 3x long) | amplified
    difference, one step per frame."""
    frames = side_by_side_frames(query.frames[1:], {"model": pred}, scale=scale)
    h, w = pred.shape[1] * scale, pred.shape[2] * scale
    frames[:, BANNER : BANNER + h, w : 2 * w] = _draw_pokes(pred, query.ee_px, scale)
    return frames


def poke_video(
    queries: list[PokeQuery], preds: list[np.ndarray], path: str | Path, scale: int = 4
) -> Path:
    """:func:`poke_frames` of each query, one above the other (a shorter query holds its
    last frame)."""
    rows = [poke_frames(q, p, scale) for q, p in zip(queries, preds, strict=True)]
    n = max(len(r) for r in rows)
    rows = [np.concatenate([r, np.repeat(r[-1:], n - len(r), 0)]) for r in rows]
    return write_video(np.concatenate(rows, axis=1), path, fps=4)


SUMMARY = [
    ("eval/poke/angle_match", "pushed object moves > 1 cm the true way (cos > 1/√2)", ">= 0.8"),
    ("eval/poke/median_cos", "median cos(predicted, true object displacement)", ""),
    ("eval/poke/queries_moved", "poke queries whose object truly moved > 1 cm", ""),
    ("eval/poke/found", "pushed object found in the model's last frame", ""),
    (
        "eval/poke/chain_reproduced",
        "chained pushes reproduced (B moves > 1 cm within 45°)",
        ">= 0.5",
    ),
    ("eval/poke/chain_queries", "chain queries", ""),
    ("eval/poke/still_moved", "objects that stayed put but moved > 1 cm in the model", ""),
    ("eval/poke/still_moved_truth", "... as the detector reads the true frames", ""),
    ("eval/poke/one_step_psnr", "PSNR of the first poked frame (dB)", ""),
    ("eval/poke/one_step_psnr_copy", "... copying the start frame", ""),
    ("eval/poke/one_step_psnr_unconditioned", "... the model without the poke", ""),
    ("eval/objects/err8_px", "object error after 8 steps, end-effector pokes (px)", ""),
    ("eval/objects/copy8_px", "copy-the-last-frame error after 8 steps (px)", ""),
    ("eval/objects/copy_over_model8", "copy error / model error (end-effector pokes)", ">= 2"),
    ("eval/objects/missed", "objects the detector missed (end-effector pokes)", ""),
    ("eval/objects/err8_parsed_px", "object error, actions parsed from the clip (px)", ""),
    ("eval/objects/copy_over_model8_parsed", "copy error / model error (parsed actions)", ""),
    ("eval/objects/missed_parsed", "objects the detector missed (parsed actions)", ""),
    ("eval/objects/still_moved_parsed", "still objects moved > 1 cm, 8 steps (parsed)", ""),
    ("eval/objects/still_moved_truth", "... as the detector reads the true frames", ""),
    ("eval/videos/clips", "imported test clips the model followed (most motion first)", ""),
    ("eval/videos/psnr", "PSNR of the model following a clip's parsed motion (dB)", ""),
    ("eval/videos/psnr_copy", "... copying the clip's first frame", ""),
    ("eval/videos/psnr_last", "... the model at the last step (dB)", ""),
    ("eval/videos/psnr_copy_last", "... copying, at the last step", ""),
    ("eval/speed/s_per_frame", "seconds per step, 64x64 (batch 1)", "<= 0.3"),
    ("eval/control/delta_psnr", "controllability ΔPSNR (dB)", ">= 2"),
    ("eval/image/tf_psnr", "PSNR teacher-forced (dB)", ""),
    ("eval/image/ar8_psnr", "PSNR autoregressive, 8 steps (dB)", ""),
]


def summary_table(results: dict[str, Any]) -> str:
    """The poke benchmark's table, with the image metrics when they were measured, and a line
    for each part skipped."""
    return metrics_table(results, SUMMARY) + skipped_lines(results)


def write_videos(
    out: Path, results: dict[str, Any], queries: list[PokeQuery], pred: np.ndarray
) -> list[Path]:
    """``out/<kind>.mp4`` per query kind: its first ``VIDEO_QUERIES`` queries whose pushed
    object truly moved (in query order, whatever the model made of them; the first queries
    when none moved), one above the other."""
    videos = []
    for kind in VIDEOS:
        idx = [i for i, q in enumerate(queries) if q.kind == kind]
        if idx:
            moved = [j for j in idx if results["rows"][j].get("pushed_moved")]
            picks = (moved or idx)[:VIDEO_QUERIES]
            path = out / f"{kind}.mp4"
            videos.append(poke_video([queries[i] for i in picks], [pred[i] for i in picks], path))
    return videos


def write_poke_report(out: Path, title: str, results: dict[str, Any], videos: list[Path]) -> Path:
    """``out/report.html``: the scores and the videos."""
    rows = [
        {"metric": k, "value": v}
        for k, v in results.items()
        if k.startswith("eval/") and np.isscalar(v)
    ]
    rows += _skipped_rows(results)
    if results.get("drive") == VIDEO_DRIVE:
        section = ReportSection(
            "The model following real clips",
            "Left: the imported video; middle: the model from the clip's first frame, driven by "
            "the motion it parses from the clip; right: their difference. The clips with the "
            "most motion.",
            videos=videos,
        )
    else:
        section = ReportSection(
            "A poke and a chained push",
            "Left: MuJoCo pushing the end effector on; middle: the model poked at the end "
            "effector with the same motion (arrows); right: their difference.",
            videos=videos,
        )
    return write_report(out, title=title, summary_rows=rows, sections=[section])


def _skipped_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"metric": f"skipped: {k}", "value": v} for k, v in results.get("skipped", {}).items()]


def poke_section(folder: Path, out: Path) -> ReportSection:
    """A section of another report from a poke run's folder (its results and videos, the
    videos copied under ``out/included/<folder name>/``)."""
    res = json.loads((folder / RESULTS).read_text())
    found = [folder / f"{k}.mp4" for k in (*VIDEOS, "keypoints") if (folder / f"{k}.mp4").is_file()]
    found += sorted(folder.glob("poke_*.mp4"))  # imported videos: the further clips
    videos = copy_media(found, out / "included" / included_name(folder))
    table = [{"metric": k, "value": v} for k, v in res.items() if k.startswith("eval/")]
    table += _skipped_rows(res)
    if res.get("drive") == VIDEO_DRIVE:
        title = "The model following imported videos"
        text = (
            f"{res.get('checkpoint')}: driven by the motion it parses from real test clips; "
            "video | model | difference."
        )
    elif res.get("drive") == PARSED:
        title = "Pushes against MuJoCo (keypoint model)"
        text = (
            f"{res.get('checkpoint')}: driven by the actions it parses from MuJoCo's branch; "
            "MuJoCo | model | difference; keypoints.mp4: real frames with their keypoints | the "
            "model's rollout with the keypoints it reads in its own frames."
        )
    else:
        title = "Pokes against MuJoCo (sparse-flow model)"
        text = (
            f"{res.get('checkpoint')}: poked at the end effector with the end effector's true "
            "motion; MuJoCo | model (arrows: the pokes) | difference."
        )
    if res.get("trained"):
        text += f" Model: {res['trained']}."
        # two sections of one family (a shipped model, a short run) told apart in the contents
        label = next((k for k in (SHIPPED, SHORT_RUN) if res["trained"].startswith(k)), None)
        title += f": {label}" if label else ""
    return ReportSection(title, text, table, [], videos)
