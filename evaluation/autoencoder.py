"""How well a frame autoencoder keeps what matters: reconstruction PSNR, and where the object
detector finds each object in rebuilt frames against where it finds it in the real ones (no
ground truth needed: the real frame is the reference)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from latentplay.envs.registration import ARM_ENV_IDS, register_envs
from latentplay.evaluation import metrics as M
from latentplay.evaluation.detector import ObjectDetector
from latentplay.rollouts.format import EpisodeReader, imported_kind
from latentplay.utils.frames import to_numpy_frames, to_tensor_frames
from latentplay.world_models.autoencoder import FrameAutoencoder
from latentplay.world_models.checkpoint import check_frames_fit


def detector_for(meta: dict[str, Any]) -> ObjectDetector | None:
    """The object detector calibrated on the dataset's env (None for an env without one)."""
    if meta.get("env_id") not in ARM_ENV_IDS:
        return None
    register_envs()
    env = gym.make(meta["env_id"], **meta.get("env_kwargs", {})).unwrapped
    try:
        return ObjectDetector.from_env(env)
    finally:
        env.close()


@torch.no_grad()
def autoencoder_scores(
    model: FrameAutoencoder,
    data: str | Path,
    device: torch.device | str = "cpu",
    max_frames: int = 2000,
    batch: int = 256,
) -> dict[str, Any]:
    """On up to ``max_frames`` test frames (spread evenly): PSNR of the rebuilt frames, and
    the detector's object positions in rebuilt against real frames (median and p90 error in
    pixels over objects seen in the real frame; ``lost``: the share of those the detector
    does not find in the rebuilt one)."""
    reader = EpisodeReader(data)
    try:
        check_frames_fit(model, reader.meta, data)
        frames = np.concatenate([reader.frames(ep) for ep in reader.indices("test")])
        meta = reader.meta
    finally:
        reader.close()
    if not len(frames):
        raise ValueError(f"{data}: no test frames to score the autoencoder on")
    frames = frames[np.linspace(0, len(frames) - 1, min(max_frames, len(frames))).astype(int)]
    recon = np.concatenate(
        [
            to_numpy_frames(model.reconstruct(to_tensor_frames(frames[i : i + batch], device)))
            for i in range(0, len(frames), batch)
        ]
    )
    psnr = M.psnr(recon.transpose(0, 3, 1, 2) / 255.0, frames.transpose(0, 3, 1, 2) / 255.0)
    out: dict[str, Any] = {
        "eval/autoencoder/frames": len(frames),
        "eval/autoencoder/psnr": float(np.mean(psnr)),
        "eval/autoencoder/latent_shape": [
            model.latent_channels,
            model.latent_size,
            model.latent_size,
        ],
    }
    detector = detector_for(meta)
    if detector is None:
        source = meta.get("env_id") or f"imported {imported_kind(meta)}"
        out["skipped"] = {
            "objects through the bottleneck": f"no object detector for {source} in {data}"
        }
        return out
    real, rebuilt = detector.locate(frames).uv, detector.locate(recon).uv  # (N, K, 2), NaN: unseen
    seen = np.isfinite(real).all(-1)
    found = np.isfinite(rebuilt).all(-1)
    err = np.linalg.norm(rebuilt - real, axis=-1)[seen & found]
    out.update(
        {
            "eval/autoencoder/objects": int(seen.sum()),
            "eval/autoencoder/object_px_median": float(np.median(err))
            if len(err)
            else float("nan"),
            "eval/autoencoder/object_px_p90": float(np.percentile(err, 90))
            if len(err)
            else float("nan"),
            "eval/autoencoder/lost": float((seen & ~found).sum() / max(seen.sum(), 1)),
        }
    )
    return out
