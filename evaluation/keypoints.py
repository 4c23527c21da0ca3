"""What a keypoint model's keypoints and latent actions know, against the ground truth.

**Object probe**: a linear map from all keypoints (pixels) to the true object pixel positions,
fit on the validation episodes and scored on the test episodes (Jakab et al.'s landmark
regression): the median and p90 error per object. **Coverage**: the share of test frames in
which an object has some keypoint within ``near_px`` of its centre. **Action probe**: R² of a
linear map from the latent actions to the true end-effector motion (pixels per step). Ground
truth is read here, for scoring only; the model never sees it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentplay.evaluation import metrics as M
from latentplay.rollouts.format import EpisodeReader
from latentplay.rollouts.video import draw_keypoints, tile, write_video
from latentplay.utils.frames import to_numpy_frames, to_tensor_frames
from latentplay.world_models.protocol import KeypointTracks, WorldModel


@torch.no_grad()
def _tracks(
    model: Any, reader: EpisodeReader, split: str, max_episodes: int, device: Any
) -> dict[str, np.ndarray]:
    eps = reader.indices(split)
    eps = [eps[i] for i in np.linspace(0, len(eps) - 1, min(max_episodes, len(eps))).astype(int)]
    kp, obj, active, ee_move, act = [], [], [], [], []
    for ep in eps:
        x = to_tensor_frames(reader.frames(ep), device)[None]
        gt = reader.ground_truth(ep)
        kp.append(model.keypoints_px(x)[0].cpu().numpy())  # (T, K, 2)
        act.append(model.infer_actions(x).continuous[0].cpu().numpy())  # (T-1, A)
        obj.append(gt["object_pixel"])
        active.append(gt["object_active"].astype(bool))
        ee_move.append(np.diff(gt["ee_pixel"], axis=0))
    return {
        "kp": np.concatenate(kp),
        "obj": np.concatenate(obj),
        "active": np.concatenate(active),
        "ee_move": np.concatenate(ee_move),
        "act": np.concatenate(act),
    }


def keypoint_scores(
    model: WorldModel,
    data: str | Path,
    *,
    near_px: float = 2.0,
    max_episodes: int = 60,
    device: Any = "cpu",
) -> dict[str, Any]:
    """Object probe, coverage and action probe (module doc) on ``data``'s val and test
    episodes: ``eval/keypoints/*`` figures."""
    if not isinstance(model, KeypointTracks):
        raise TypeError(f"a {type(model).__name__} has no keypoints; expected a keypoint model")
    model.eval()
    reader = EpisodeReader(data)
    try:
        val = _tracks(model, reader, "val", max_episodes, device)
        test = _tracks(model, reader, "test", max_episodes, device)
    finally:
        reader.close()
    # one probe per object, fit and scored on the frames that show it (scenes whose object
    # sets vary); where every object is in every frame this is the joint least-squares fit
    x_fit, x_test = val["kp"].reshape(len(val["kp"]), -1), test["kp"].reshape(len(test["kp"]), -1)
    enough = x_fit.shape[1] + 1  # frames to fit a probe on
    slots = [
        s
        for s in range(val["active"].shape[1])
        if val["active"][:, s].sum() >= enough and test["active"][:, s].any()
    ]
    if not slots:
        raise ValueError(
            f"{data}: no object is in {enough} or more val frames and in some test frame"
        )
    errs, covered, r2, per_object = [], [], [], {}
    for s in slots:
        fv, ft = val["active"][:, s], test["active"][:, s]
        probe = M.linear_r2(x_fit[fv], val["obj"][fv, s], x_test[ft], test["obj"][ft, s])
        pred = x_test[ft] @ probe["coef"].T + probe["intercept"]
        errs.append(np.linalg.norm(pred - test["obj"][ft, s], axis=-1))
        nearest = np.linalg.norm(test["kp"][ft] - test["obj"][ft, s][:, None], axis=-1)
        covered.append(nearest.min(axis=-1) <= near_px)
        r2.append(float(probe["r2"]))
        per_object[s] = float(np.median(errs[-1]))
    err = np.concatenate(errs)
    action = M.linear_r2(val["act"], val["ee_move"], test["act"], test["ee_move"])
    out: dict[str, Any] = {
        "eval/keypoints/probe_median_px": float(np.median(err)),
        "eval/keypoints/probe_p90_px": float(np.percentile(err, 90)),
        "eval/keypoints/probe_r2": float(np.mean(r2)),
        f"eval/keypoints/covered_{near_px:g}px": float(np.concatenate(covered).mean()),
        f"eval/keypoints/covered_{near_px:g}px_worst_object": float(min(c.mean() for c in covered)),
        "eval/keypoints/action_r2_ee": float(action["r2"]),
        "eval/keypoints/test_frames": len(x_test),
    }
    for s, median in per_object.items():
        out[f"eval/keypoints/probe_median_px/object{s}"] = median
    return out


@torch.no_grad()
def keypoint_video(
    model: WorldModel,
    data: str | Path,
    path: str | Path,
    *,
    clips: int = 4,
    horizon: int = 8,
    device: Any = "cpu",
) -> Path:
    """Video, one row per test clip: real frames with their keypoints | the model's rollout
    from the first frame under the actions it parses from the clip, with the keypoints it
    reads in its own frames."""
    if not isinstance(model, KeypointTracks):
        raise TypeError(f"a {type(model).__name__} has no keypoints; expected a keypoint model")
    reader = EpisodeReader(data)
    try:  # test episodes long enough for a clip (imported ones may be short)
        eps = [e for e in reader.indices("test") if reader.episodes[e][2] >= horizon][:clips]
        if not eps:
            raise ValueError(f"{data}: no test episode of {horizon + 1} frames for the video")
        x = to_tensor_frames(
            np.stack([reader.frames(e, slice(0, horizon + 1)) for e in eps]), device
        )
    finally:
        reader.close()
    roll = model.rollout(x[:, :1], model.infer_actions(x))
    real_kp = model.keypoints_px(x[:, 1:]).cpu().numpy()
    roll_kp = model.keypoints_px(roll).cpu().numpy()
    real, pred = to_numpy_frames(x[:, 1:]), to_numpy_frames(roll)
    rows = [
        np.concatenate(
            [draw_keypoints(real[i], real_kp[i]), draw_keypoints(pred[i], roll_kp[i])], axis=2
        )
        for i in range(len(eps))
    ]
    return write_video(tile(rows, cols=1), path, fps=4)
