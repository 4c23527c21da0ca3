"""Poke scores against MuJoCo's branches.

**Angle match**: the pushed object's predicted displacement within 45 degrees of the true one
and longer than 1 cm, over queries where it truly moved > 1 cm. **Chain reproduction**: B
truly moved > 1 cm; predicted B moved > 1 cm within 45 degrees of the truth; beside the rate at
which objects that truly stayed put (< 0.5 cm) are predicted to move > 1 cm (what a model that
merely jitters objects would score as reproduced chains). On test episodes of a dataset, the
**object-position error after 8 steps** rolled out from one frame, beside copy-the-last-frame.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from latentplay.evaluation import metrics as M
from latentplay.evaluation.detector import MOVED_M, ObjectDetector
from latentplay.evaluation.poke.queries import PokeQuery
from latentplay.rollouts.format import EpisodeReader
from latentplay.utils.frames import to_numpy_frames, to_tensor_frames
from latentplay.world_models.checkpoint import check_frames_fit
from latentplay.world_models.protocol import (
    RandomActions,
    Sampling,
    SparseFlowControl,
    WorldModel,
)

COS_ANGLE = 2**-0.5  # angle match: within 45 degrees


class PokeableModel(WorldModel, RandomActions, Protocol):
    """What the poke benchmark drives: a world model that draws random actions; poked by
    sparse flow at the end effector when it takes pokes (:class:`SparseFlowControl`, YODA),
    else driven by the actions it parses from the true branch (the keypoint model)."""


@torch.no_grad()
def predict_pokes(
    model: PokeableModel, queries: list[PokeQuery], device: torch.device
) -> np.ndarray:
    """Model frames ``(N, steps, H, W, 3)`` uint8 under the end-effector pokes of each query
    (a model that takes no pokes: under the actions it parses from the true branch)."""
    ctx = to_tensor_frames(np.stack([q.context for q in queries]), device)
    if not isinstance(model, SparseFlowControl):
        branch = to_tensor_frames(np.stack([q.frames for q in queries]), device)
        return to_numpy_frames(model.rollout(ctx, model.infer_actions(branch)))
    ee = torch.from_numpy(np.stack([q.ee_px for q in queries])).float()  # (N, S+1, 2)
    # camera pixels have their centres at c + 0.5; the model's controls are pixel indices
    points, vectors = ee[:, :-1, None] - 0.5, (ee[:, 1:] - ee[:, :-1])[:, :, None]
    return to_numpy_frames(model.poke(ctx, points, vectors))


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else 0.0


def _rate(rows: list[dict[str, Any]], key: str) -> float:
    flags = [f for r in rows for f in r[key]]
    return float(np.mean(flags)) if flags else float("nan")


def score_pokes(
    queries: list[PokeQuery], pred: np.ndarray, detector: ObjectDetector, px_per_m: float
) -> dict[str, Any]:
    """Angle match of the pushed object and chain reproduction (see module doc)."""
    det_pred = detector.locate(pred[:, -1]).uv  # (N, K, 2) at the last step
    det_start = detector.locate(np.stack([q.frames[0] for q in queries])).uv
    det_true = detector.locate(np.stack([q.frames[-1] for q in queries])).uv
    rows = []
    for i, q in enumerate(queries):
        true_d = q.obj_px[-1] - q.obj_px[0]  # (K, 2) px
        pred_d = det_pred[i] - det_start[i]
        travel_m = np.linalg.norm(q.obj_m[-1] - q.obj_m[0], axis=1)
        row: dict[str, Any] = {"kind": q.kind, "seed": q.seed}
        j = q.pushed
        row["pushed_moved"] = bool(travel_m[j] > MOVED_M)
        row["pushed_found"] = bool(np.isfinite(pred_d[j]).all())
        row["pushed_cos"] = _cos(np.nan_to_num(pred_d[j]), true_d[j])
        row["pushed_pred_px"] = float(np.linalg.norm(np.nan_to_num(pred_d[j])))
        # the right way, and far enough that it is not the detector's jitter
        row["pushed_match"] = bool(
            row["pushed_cos"] > COS_ANGLE and row["pushed_pred_px"] > MOVED_M * px_per_m
        )
        row["pushed_true_px"] = float(np.linalg.norm(true_d[j]))
        if q.kind == "chain":
            h = q.hit
            moved = np.linalg.norm(np.nan_to_num(pred_d[h])) > MOVED_M * px_per_m
            row["hit_cos"] = _cos(np.nan_to_num(pred_d[h]), true_d[h])
            row["hit_pred_px"] = float(np.linalg.norm(np.nan_to_num(pred_d[h])))
            row["hit_true_px"] = float(np.linalg.norm(true_d[h]))
            row["chain_reproduced"] = bool(moved and row["hit_cos"] > COS_ANGLE)
        # objects that truly stayed (< 0.5 cm): does the model move them anyway (> 1 cm)?
        still = q.active & (travel_m < MOVED_M / 2)
        still[j] = False
        pred_px = np.linalg.norm(np.nan_to_num(pred_d), axis=1)
        true_px = np.linalg.norm(np.nan_to_num(det_true[i] - det_start[i]), axis=1)
        lim = MOVED_M * px_per_m
        row["still_moved"] = [bool(pred_px[o] > lim) for o in np.flatnonzero(still)]
        # the detector's own reading of the true frames (an arm passing over an object shifts
        # what it sees): the reference for the rate above
        row["still_moved_truth"] = [bool(true_px[o] > lim) for o in np.flatnonzero(still)]
        rows.append(row)
    moved = [r for r in rows if r["pushed_moved"]]
    chains = [r for r in rows if r["kind"] == "chain"]
    return {
        "eval/poke/angle_match": (
            float(np.mean([r["pushed_match"] for r in moved])) if moved else float("nan")
        ),
        "eval/poke/median_cos": float(np.median([r["pushed_cos"] for r in moved]))
        if moved
        else float("nan"),
        "eval/poke/queries_moved": len(moved),
        "eval/poke/found": float(np.mean([r["pushed_found"] for r in moved])) if moved else 0.0,
        "eval/poke/chain_reproduced": (
            float(np.mean([r["chain_reproduced"] for r in chains])) if chains else float("nan")
        ),
        "eval/poke/chain_queries": len(chains),
        "eval/poke/still_moved": _rate(rows, "still_moved"),
        "eval/poke/still_moved_truth": _rate(rows, "still_moved_truth"),
        "rows": rows,
    }


@torch.no_grad()
def object_error(
    model: WorldModel,
    data: str | Path,
    detector: ObjectDetector,
    px_per_m: float,
    horizon: int = 8,
    max_clips: int = 60,
    device: torch.device | str = "cpu",
    batch: int = 16,
) -> dict[str, Any]:
    """Object-position error (px) after ``horizon`` steps from one frame, beside copy-the-
    last-frame, over clips of test episodes in which some object moved more than 1 cm.

    Two ways to drive the model: the **actions parsed from the real clip** (``err_parsed``:
    ``infer_actions`` on the clip; for a sparse-flow model that hands it the moving objects'
    flow too), and, for models poked by sparse flow, **end-effector pokes** (``err``: one poke
    per step at the end effector's pixel with its motion, from the clip's ground truth; where
    the objects go is the model's to predict). Positions are read by the detector in every
    video; an object it misses in a predicted frame counts at its first-frame position, and
    the rate of misses is reported. ``still_moved``: how often an object that truly stayed put
    (< 0.5 cm) is predicted to move > 1 cm, beside the detector's own rate on the true frames.
    """
    reader = EpisodeReader(data)
    check_frames_fit(model, reader.meta, data)
    clips, truth, ee = [], [], []
    for ep in reader.indices("test"):
        frames, gt = reader.frames(ep), reader.ground_truth(ep)
        for s in range(0, len(frames) - horizon, horizon):
            pos = gt["object_pos"][[s, s + horizon], :, :2]
            act = gt["object_active"][s].astype(bool)
            travel = np.linalg.norm(pos[1] - pos[0], axis=1) * act
            if travel.max() > MOVED_M:
                clips.append(frames[s : s + horizon + 1])
                truth.append((gt["object_pixel"][s + horizon], act, act & (travel < MOVED_M / 2)))
                ee.append(gt["ee_pixel"][s : s + horizon + 1])
    reader.close()
    if not clips:
        raise ValueError(f"{data}: no test clip in which an object moved more than 1 cm")
    modes = ("ee", "parsed") if isinstance(model, SparseFlowControl) else ("parsed",)
    lim = MOVED_M * px_per_m
    pick = np.linspace(0, len(clips) - 1, min(max_clips, len(clips))).round().astype(int)
    errs: dict[str, list[float]] = {m: [] for m in (*modes, "copy")}
    missed: dict[str, list[bool]] = {m: [] for m in modes}
    still: dict[str, list[bool]] = {m: [] for m in (*modes, "truth")}
    for i in range(0, len(pick), batch):
        idx = pick[i : i + batch]
        x = to_tensor_frames(np.stack([clips[j] for j in idx]), device)
        preds = {"parsed": model.rollout(x[:, :1], model.infer_actions(x))[:, -1]}
        if isinstance(model, SparseFlowControl):
            track = torch.from_numpy(np.stack([ee[j] for j in idx])).float()  # (b, h + 1, 2)
            preds["ee"] = model.poke(
                x[:, :1], track[:, :-1, None] - 0.5, (track[:, 1:] - track[:, :-1])[:, :, None]
            )[:, -1]
        first_uv = detector.locate(np.stack([clips[j][0] for j in idx])).uv
        last_uv = detector.locate(np.stack([clips[j][-1] for j in idx])).uv
        for name in modes:
            pred_uv = detector.locate_chw(preds[name]).uv
            for b, j in enumerate(idx):
                gt_uv, act, stay = truth[j]
                p = np.where(np.isfinite(pred_uv[b]), pred_uv[b], first_uv[b])
                missed[name].extend((~np.isfinite(pred_uv[b][act]).all(axis=1)).tolist())
                errs[name].extend(np.linalg.norm(p[act] - gt_uv[act], axis=1).tolist())
                still[name].extend((np.linalg.norm(p - first_uv[b], axis=1)[stay] > lim).tolist())
        for b, j in enumerate(idx):
            gt_uv, act, stay = truth[j]
            errs["copy"].extend(np.linalg.norm(first_uv[b][act] - gt_uv[act], axis=1).tolist())
            seen = np.nan_to_num(np.linalg.norm(last_uv[b] - first_uv[b], axis=1))
            still["truth"].extend((seen[stay] > lim).tolist())
    c = float(np.nanmean(errs["copy"]))
    out: dict[str, Any] = {
        f"eval/objects/copy{horizon}_px": c,
        "eval/objects/clips": len(pick),
        "eval/objects/still_moved_truth": float(np.mean(still["truth"])) if still["truth"] else 0.0,
    }
    for name, suffix in (("ee", ""), ("parsed", "_parsed")):
        if name not in modes:
            continue
        m = float(np.nanmean(errs[name]))
        out[f"eval/objects/err{horizon}{suffix}_px"] = m
        out[f"eval/objects/err{horizon}{suffix}_cm"] = m / px_per_m * 100
        out[f"eval/objects/copy_over_model{horizon}{suffix}"] = c / m if m > 0 else float("inf")
        out[f"eval/objects/missed{suffix}"] = float(np.mean(missed[name]))
        out[f"eval/objects/still_moved{suffix}"] = (
            float(np.mean(still[name])) if still[name] else 0.0
        )
    return out


@torch.no_grad()
def step_times(
    model: PokeableModel, device: torch.device | str = "cpu", repeats: int = 10
) -> list[float]:
    """Seconds of ``repeats`` single steps, each decoded to a frame (batch 1, a random
    action), after a warm-up step."""
    x = torch.rand(1, 2, 3, model.image_size, model.image_size, device=device)
    state = model.encode(x)
    acts = model.random_actions(1, 1, torch.Generator().manual_seed(0)).at(0).to(device)
    model.decode(model.step(state, acts))  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.decode(model.step(state, acts))
        times.append(time.perf_counter() - t0)
    return times


def frame_time(model: PokeableModel, device: torch.device, repeats: int = 10) -> dict[str, Any]:
    """Median seconds per step (batch 1; a sampling model at its default ODE steps)."""
    out: dict[str, Any] = {
        "eval/speed/s_per_frame": float(np.median(step_times(model, device, repeats)))
    }
    if isinstance(model, Sampling):
        out.update({"eval/speed/ode_steps": model.sample_steps, "eval/speed/solver": model.solver})
        if model.reencode_every:
            out["eval/speed/reencode_every"] = model.reencode_every
    return out


@torch.no_grad()
def one_step_psnr(
    model: PokeableModel, queries: list[PokeQuery], pred: np.ndarray, device: torch.device
) -> dict[str, float]:
    """PSNR of the first poked frame against MuJoCo's, beside copying the start frame and
    the model's unconditioned step (a model that takes no pokes: a random action): does one
    poke from a real frame do the right thing?"""
    true = np.stack([q.frames[1] for q in queries]).astype(np.float64) / 255
    start = np.stack([q.frames[0] for q in queries])
    ctx = to_tensor_frames(np.stack([q.context for q in queries]), device)
    gen = torch.Generator().manual_seed(0)

    def free_step(c: torch.Tensor) -> torch.Tensor:
        if isinstance(model, SparseFlowControl):
            return model.simulate(c, 1)[:, 0]
        return model.rollout(c, model.random_actions(len(c), 1, gen).to(device))[:, 0]

    free = np.concatenate(
        [
            free_step(ctx[i : i + 16]).permute(0, 2, 3, 1).cpu().numpy()
            for i in range(0, len(queries), 16)
        ]
    )
    psnr = lambda x: float(np.mean(np.minimum(M.psnr(x, true), M.PSNR_CAP)))  # noqa: E731
    return {
        "eval/poke/one_step_psnr": psnr(pred[:, 0].astype(np.float64) / 255),
        "eval/poke/one_step_psnr_copy": psnr(start.astype(np.float64) / 255),
        "eval/poke/one_step_psnr_unconditioned": psnr(free.astype(np.float64)),
    }
