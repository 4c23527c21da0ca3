"""Does a poke do what the physics does? YODA-style models scored against MuJoCo branches.

Queries are built in PushMulti-v0 from env seeds: the scripted push policy walks the arm to
just behind an object (a *poke* query), or behind an object lined up with another one (a
*chain* query: A is pushed into B). From that state S the true branch pushes straight on for
``steps`` steps. The model gets the frames up to S and, per step, a poke at the end effector's
pixel with the end effector's pixel motion of the same branch (the user's "push here, this
way"), and nothing about the objects. Object positions in its frames are read by the
:class:`~latentplay.evaluation.detector.ObjectDetector` (validated on real frames).

Scores: **angle match** (the pushed object's predicted displacement within 45 degrees of the
true one and longer than 1 cm, over queries where it truly moved > 1 cm); **chain
reproduction** (B truly moved > 1 cm; predicted B moved > 1 cm within 45 degrees of the
truth), beside the rate at which objects
that truly stayed put (< 0.5 cm) are predicted to move > 1 cm (what a model that merely
jitters objects would score as reproduced chains); and, on test episodes of a
dataset, the **object-position error after 8 steps** rolled out from one frame under the
actions parsed from the real clip, beside copy-the-last-frame.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentplay.agents.policies import ScriptedPushPolicy
from latentplay.envs.arm import PushMultiEnv
from latentplay.evaluation.detector import ObjectDetector
from latentplay.rollouts.format import EpisodeReader
from latentplay.world_models.checkpoint import check_frames_fit

MOVED_M = 0.01  # an object "moved" when it travelled more than 1 cm
COS_ANGLE = 2**-0.5  # angle match: within 45 degrees


@dataclass
class PokeQuery:
    """A start state and its true branch (frames and ground truth per frame)."""

    kind: str  # "poke" or "chain"
    seed: int
    context: np.ndarray  # (C, H, W, 3) uint8 frames up to S
    frames: np.ndarray  # (steps + 1, H, W, 3) uint8 true branch from S
    ee_px: np.ndarray  # (steps + 1, 2) end-effector pixel
    obj_px: np.ndarray  # (steps + 1, K, 2) object pixels
    obj_m: np.ndarray  # (steps + 1, K, 2) object positions (m)
    active: np.ndarray  # (K,) bool
    pushed: int  # slot of the object the arm pushes
    hit: int  # chain: slot of the object the pushed one pushes (moved most); -1 otherwise


def _push_start(
    env: PushMultiEnv, seed: int, aim_at_object: float, max_steps: int = 60
) -> tuple[list[np.ndarray], ScriptedPushPolicy] | None:
    """Run the scripted policy until its first push stroke starts; frames seen so far."""
    _, info = env.reset(seed=seed)
    policy = ScriptedPushPolicy(env.action_space, noise=0.0, aim_at_object=aim_at_object)
    policy.reset(np.random.default_rng(seed), info)
    frames = [env.render_rgb()]
    for _ in range(max_steps):
        a = policy.act(None, info)
        if policy._phase == "push":  # S: behind the object, about to push
            return frames, policy
        _, _, _, _, info = env.step(a)
        frames.append(env.render_rgb())
    return None


def build_query(
    env: PushMultiEnv, seed: int, kind: str, steps: int, context: int = 2
) -> PokeQuery | None:
    """One query from ``seed`` (None when the scene does not give one: the stroke never
    started, or for a chain, the pushed object hit nothing)."""
    start = _push_start(env, seed, aim_at_object=1.0 if kind == "chain" else 0.0)
    if start is None:
        return None
    seen, policy = start
    push = np.append(policy._dir * policy.speed, 0.0).astype(np.float32)
    frames, ee, opx, om = [seen[-1]], [], [], []

    def record() -> None:
        gt = env.ground_truth()
        ee.append(gt["ee_pixel"])
        opx.append(gt["object_pixel"])
        om.append(gt["object_pos"][:, :2])

    record()
    for _ in range(steps):
        env.step(push)
        frames.append(env.render_rgb())
        record()
    active = env.ground_truth()["object_active"].astype(bool)
    om_arr = np.stack(om)
    travel = np.linalg.norm(om_arr[-1] - om_arr[0], axis=1)
    travel[~active] = 0.0
    pushed, hit = int(policy._obj), -1
    if kind == "chain":
        others = travel.copy()
        others[pushed] = 0.0
        if others.max() <= MOVED_M:
            return None
        hit = int(others.argmax())
    ctx = np.stack(seen[-context:])
    if len(ctx) < context:  # pad by repeating the first frame
        ctx = np.concatenate([np.repeat(ctx[:1], context - len(ctx), 0), ctx])
    return PokeQuery(
        kind, seed, ctx, np.stack(frames), np.stack(ee), np.stack(opx), om_arr, active, pushed, hit
    )


def build_queries(
    n_poke: int, n_chain: int, steps: int, seed: int = 1000, max_tries: int = 2000
) -> list[PokeQuery]:
    env = PushMultiEnv(width=64, height=64, time_limit=None)
    out: list[PokeQuery] = []
    for kind, n in (("poke", n_poke), ("chain", n_chain)):
        got, s = 0, seed + (0 if kind == "poke" else 100_000)
        while got < n and s < seed + max_tries + (0 if kind == "poke" else 100_000):
            q = build_query(env, s, kind, steps)
            s += 1
            if q is not None:
                out.append(q)
                got += 1
    env.close()
    return out


def _px_per_m(env: PushMultiEnv) -> float:
    pts = env.camera.world_to_pixel(np.array([[0.0, 0.0, 0.02], [0.1, 0.0, 0.02]]))
    return float(np.linalg.norm(pts[1] - pts[0]) / 0.1)


@torch.no_grad()
def predict_pokes(model: Any, queries: list[PokeQuery], device: torch.device) -> np.ndarray:
    """Model frames ``(N, steps, H, W, 3)`` uint8 under the end-effector pokes of each query."""
    ctx = torch.from_numpy(np.stack([q.context for q in queries])).permute(0, 1, 4, 2, 3)
    ee = torch.from_numpy(np.stack([q.ee_px for q in queries])).float()  # (N, S+1, 2)
    # camera pixels have their centres at c + 0.5; the model's controls are pixel indices
    points, vectors = ee[:, :-1, None] - 0.5, (ee[:, 1:] - ee[:, :-1])[:, :, None]
    out = model.poke(ctx.to(device), points, vectors)
    return (out.clamp(0, 1) * 255).round().byte().permute(0, 1, 3, 4, 2).cpu().numpy()


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
    model: Any,
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

    Two ways to drive the model: **end-effector pokes** (``err``: one poke per step at the
    end effector's pixel with its motion, from the clip's ground truth; where the objects go is
    the model's to predict: the headline figure), and the **parsed sparse flow** of the real
    clip (``err_parsed``: k points drawn from the clip's own optical flow, which hands the
    model the moving objects' flow too: how well it follows given flow). Positions are read by
    the detector in every video; an object it misses in a predicted frame counts at its
    first-frame position, and the rate of misses is reported.
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
                truth.append((gt["object_pixel"][s + horizon], act))
                ee.append(gt["ee_pixel"][s : s + horizon + 1])
    reader.close()
    if not clips:
        raise ValueError(f"{data}: no test clip in which an object moved more than 1 cm")
    pick = np.linspace(0, len(clips) - 1, min(max_clips, len(clips))).round().astype(int)
    errs: dict[str, list[float]] = {"ee": [], "parsed": [], "copy": []}
    missed: dict[str, list[bool]] = {"ee": [], "parsed": []}
    for i in range(0, len(pick), batch):
        idx = pick[i : i + batch]
        x = torch.from_numpy(np.stack([clips[j] for j in idx])).permute(0, 1, 4, 2, 3).to(device)
        track = torch.from_numpy(np.stack([ee[j] for j in idx])).float()  # (b, horizon + 1, 2)
        preds = {
            "ee": model.poke(
                x[:, :1], track[:, :-1, None] - 0.5, (track[:, 1:] - track[:, :-1])[:, :, None]
            )[:, -1],
            "parsed": model.rollout(x[:, :1], model.infer_actions(x))[:, -1],
        }
        first_uv = detector.locate(np.stack([clips[j][0] for j in idx])).uv
        for name, pred in preds.items():
            pred_uv = detector.locate_chw(pred).uv
            for b, j in enumerate(idx):
                gt_uv, act = truth[j]
                p = np.where(np.isfinite(pred_uv[b]), pred_uv[b], first_uv[b])
                missed[name].extend((~np.isfinite(pred_uv[b][act]).all(axis=1)).tolist())
                errs[name].extend(np.linalg.norm(p[act] - gt_uv[act], axis=1).tolist())
        for b, j in enumerate(idx):
            gt_uv, act = truth[j]
            errs["copy"].extend(np.linalg.norm(first_uv[b][act] - gt_uv[act], axis=1).tolist())
    c = float(np.nanmean(errs["copy"]))
    out: dict[str, Any] = {f"eval/objects/copy{horizon}_px": c, "eval/objects/clips": len(pick)}
    for name, suffix in (("ee", ""), ("parsed", "_parsed")):
        m = float(np.nanmean(errs[name]))
        out[f"eval/objects/err{horizon}{suffix}_px"] = m
        out[f"eval/objects/err{horizon}{suffix}_cm"] = m / px_per_m * 100
        out[f"eval/objects/copy_over_model{horizon}{suffix}"] = c / m if m > 0 else float("inf")
        out[f"eval/objects/missed{suffix}"] = float(np.mean(missed[name]))
    return out


@torch.no_grad()
def step_times(model: Any, device: torch.device | str = "cpu", repeats: int = 10) -> list[float]:
    """Seconds of ``repeats`` single steps (batch 1, a random poke) after a warm-up step."""
    x = torch.rand(1, 2, 3, model.image_size, model.image_size, device=device)
    state = model.encode(x)
    acts = model.random_actions(1, 1, torch.Generator().manual_seed(0)).at(0)
    acts = type(acts)(*(None if a is None else a.to(device) for a in acts))
    model.step(state, acts)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.step(state, acts)
        times.append(time.perf_counter() - t0)
    return times


def frame_time(model: Any, device: torch.device, repeats: int = 10) -> dict[str, float]:
    """Median seconds per generated 64x64 frame (batch 1) at the model's default ODE steps."""
    return {
        "eval/speed/s_per_frame": float(np.median(step_times(model, device, repeats))),
        "eval/speed/ode_steps": model.sample_steps,
        "eval/speed/solver": model.solver,
    }


@torch.no_grad()
def _one_step(
    model: Any, queries: list[PokeQuery], pred: np.ndarray, device: torch.device
) -> dict[str, float]:
    """PSNR of the first poked frame against MuJoCo's, beside copying the start frame and
    the model's unconditioned step: does one poke from a real frame do the right thing?"""
    from latentplay.evaluation import metrics as M

    true = np.stack([q.frames[1] for q in queries]).astype(np.float64) / 255
    start = np.stack([q.frames[0] for q in queries])
    ctx = torch.from_numpy(np.stack([q.context for q in queries])).permute(0, 1, 4, 2, 3)
    free = np.concatenate(
        [
            model.simulate(ctx[i : i + 16].to(device), 1)[:, 0].permute(0, 2, 3, 1).cpu().numpy()
            for i in range(0, len(queries), 16)
        ]
    )
    psnr = lambda x: float(np.mean(np.minimum(M.psnr(x, true), 60.0)))  # noqa: E731
    return {
        "eval/poke/one_step_psnr": psnr(pred[:, 0].astype(np.float64) / 255),
        "eval/poke/one_step_psnr_copy": psnr(start.astype(np.float64) / 255),
        "eval/poke/one_step_psnr_unconditioned": psnr(free.astype(np.float64)),
    }


def evaluate_pokes(
    model: Any,
    data: str | Path | None,
    n_poke: int = 30,
    n_chain: int = 20,
    steps: int = 6,
    device: str | torch.device = "cpu",
    seed: int = 1000,
) -> tuple[dict[str, Any], list[PokeQuery], np.ndarray]:
    """All poke scores (and the object error on ``data`` when given); returns (results,
    queries, predicted frames) for videos."""
    device = torch.device(device)
    model.eval()
    model.generator = torch.Generator(device=device).manual_seed(seed)
    env = PushMultiEnv(width=64, height=64, time_limit=None)
    detector, px_per_m = ObjectDetector.from_env(env), _px_per_m(env)
    env.close()
    queries = build_queries(n_poke, n_chain, steps, seed)
    pred = np.concatenate(
        [predict_pokes(model, queries[i : i + 16], device) for i in range(0, len(queries), 16)]
    )
    results = score_pokes(queries, pred, detector, px_per_m)
    results["eval/poke/steps"] = steps
    results.update(_one_step(model, queries, pred, device))
    if data is not None:
        results.update(object_error(model, data, detector, px_per_m, device=device))
    results.update(frame_time(model, device))
    model.generator = None
    return results, queries, pred


def _draw_pokes(frames: np.ndarray, ee_px: np.ndarray, scale: int) -> np.ndarray:
    """Upscaled ``frames (S, H, W, 3)`` with the poke of each step drawn as an arrow."""
    import cv2

    from latentplay.rollouts.video import upscale

    out = upscale(frames, scale).copy()
    for t in range(len(out)):
        a = tuple(int(v) for v in ee_px[t] * scale)  # camera pixel centres are at c + 0.5
        d = ee_px[t + 1] - ee_px[t]
        b = tuple(int(v) for v in (ee_px[t] + 3 * d) * scale)  # drawn 3x longer
        cv2.arrowedLine(out[t], a, b, (255, 255, 255), 1, cv2.LINE_AA, tipLength=0.3)
    return out


def poke_video(query: PokeQuery, pred: np.ndarray, path: str | Path, scale: int = 4) -> Path:
    """MuJoCo | model (the poke of each step drawn as an arrow, 3x long) | amplified
    difference, one step per video frame."""
    from latentplay.evaluation.report import BANNER, side_by_side_frames
    from latentplay.rollouts.video import write_video

    frames = side_by_side_frames(query.frames[1:], {"model": pred}, scale=scale)
    h, w = pred.shape[1] * scale, pred.shape[2] * scale
    frames[:, BANNER : BANNER + h, w : 2 * w] = _draw_pokes(pred, query.ee_px, scale)
    return write_video(frames, path, fps=4)


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
    ("eval/objects/err8_parsed_px", "object error, parsed sparse flow of the clip (px)", ""),
    ("eval/objects/copy_over_model8_parsed", "copy error / model error (parsed flow)", ""),
    ("eval/speed/s_per_frame", "seconds per generated 64x64 frame (batch 1)", "<= 0.3"),
    ("eval/control/delta_psnr", "controllability ΔPSNR (dB)", ">= 2"),
    ("eval/image/tf_psnr", "PSNR teacher-forced (dB)", ""),
    ("eval/image/ar8_psnr", "PSNR autoregressive, 8 steps (dB)", ""),
]


def summary_table(results: dict[str, Any]) -> str:
    """The poke benchmark's table, with the image metrics when they were measured."""
    from latentplay.evaluation.world_model import metrics_table

    return metrics_table(results, SUMMARY)
