"""A poke run end to end (what ``scripts/poke.py`` calls): the scores against MuJoCo, the
image metrics on a dataset, poke_results.json, the videos and report.html; or one poke of
your own."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentplay.envs.arm import PushMultiEnv
from latentplay.evaluation.detector import ObjectDetector
from latentplay.evaluation.keypoints import keypoint_video
from latentplay.evaluation.poke.queries import PokeQuery, build_queries, px_per_m
from latentplay.evaluation.poke.report import (
    PARSED,
    RESULTS,
    summary_table,
    write_poke_report,
    write_videos,
)
from latentplay.evaluation.poke.scoring import (
    PokeableModel,
    frame_time,
    object_error,
    one_step_psnr,
    predict_pokes,
    score_pokes,
)
from latentplay.evaluation.poke.videos import video_pokes, write_video_pokes
from latentplay.evaluation.world_model import image_metrics
from latentplay.rollouts.format import EpisodeReader, imported_kind, load_meta
from latentplay.rollouts.video import upscale, write_video
from latentplay.utils.device import resolve_device
from latentplay.utils.frames import to_float_frames, to_numpy_frames, to_tensor_frames
from latentplay.utils.io import provenance, write_json_atomic
from latentplay.world_models.checkpoint import check_frames_fit, load_model, training_summary
from latentplay.world_models.protocol import (
    KeypointTracks,
    RandomActions,
    Sampling,
    SparseFlowControl,
    seeded_sampling,
)
from latentplay.world_models.shipped import run_folder


def evaluate_pokes(
    model: PokeableModel,
    data: str | Path | None,
    n_poke: int = 30,
    n_chain: int = 20,
    steps: int = 6,
    device: str | torch.device = "cpu",
    seed: int = 1000,
) -> tuple[dict[str, Any], list[PokeQuery], np.ndarray]:
    """All poke scores (and the object error on ``data`` when given), the model's noise seeded
    with ``seed``; returns (results, queries, predicted frames) for videos."""
    device = torch.device(device)
    model.eval()
    env = PushMultiEnv(width=64, height=64, time_limit=None)
    detector, ppm = ObjectDetector.from_env(env), px_per_m(env)
    env.close()
    queries = build_queries(n_poke, n_chain, steps, seed)
    with seeded_sampling(model, seed, device):
        pred = np.concatenate(
            [predict_pokes(model, queries[i : i + 16], device) for i in range(0, len(queries), 16)]
        )
        results = score_pokes(queries, pred, detector, ppm)
        results["drive"] = "end-effector pokes" if isinstance(model, SparseFlowControl) else PARSED
        results["eval/poke/steps"] = steps
        results.update(one_step_psnr(model, queries, pred, device))
        if data is not None:
            results.update(object_error(model, data, detector, ppm, device=device))
        results.update(frame_time(model, device))
    return results, queries, pred


def load_pokeable(
    checkpoint: str | Path,
    device: torch.device,
    average: bool = True,
    sample_steps: int | None = None,
    solver: str | None = None,
    reencode_every: int | None = None,
) -> tuple[PokeableModel, dict[str, Any]]:
    """A model the poke benchmark can drive from ``checkpoint`` (its weight average unless
    ``average=False``); a sampling one samples with ``sample_steps`` ODE steps of ``solver``
    (None: as trained), a latent one re-encoding every ``reencode_every``-th generated latent
    (None: never)."""
    model, ckpt = load_model(checkpoint, device, average=average)
    if not isinstance(model, SparseFlowControl) and not isinstance(model, RandomActions):
        raise ValueError(
            f"{checkpoint}: a {ckpt['model_name']} model cannot be poked; expected a model "
            "poked by sparse flow (model=yoda) or one that parses actions (model=keypoints)"
        )
    if isinstance(model, Sampling):
        model.set_sampler(sample_steps, solver, reencode_every)
    elif reencode_every:
        raise ValueError(
            f"reencode_every={reencode_every}: {checkpoint} is a {ckpt['model_name']} model, "
            "which does not sample; only latent YODA re-encodes"
        )
    return model, ckpt


@dataclass
class PokeRun:
    table: str  # the benchmark's table, for the terminal
    results: Path  # poke_results.json
    videos: list[Path]
    report: Path


def run(
    checkpoint: str | Path,
    *,
    data: str | Path | None = None,
    out: str | Path | None = None,
    poke_queries: int = 30,
    chain_queries: int = 20,
    steps: int = 6,
    seed: int = 1000,
    image_clips: int = 48,
    device: str = "auto",
    sample_steps: int | None = None,
    solver: str | None = None,
    reencode_every: int | None = None,
    average: bool = True,
) -> PokeRun:
    """Score ``checkpoint``'s pokes against MuJoCo (with ``data``: also the 8-step object
    error and the image metrics on ``image_clips`` test clips) into ``out`` (None:
    ``<run folder>/poke``). On imported videos (``data`` without a simulator behind it) the
    model follows the motion parsed from the ``poke_queries`` most moving test clips instead
    (:mod:`latentplay.evaluation.poke.videos`) and the MuJoCo scores are skipped, saying why."""
    dev = resolve_device(device)
    model, ckpt = load_pokeable(checkpoint, dev, average, sample_steps, solver, reencode_every)
    out = Path(out) if out else run_folder(checkpoint) / "poke"
    out.mkdir(parents=True, exist_ok=True)
    imported = data is not None and imported_kind(load_meta(data))
    if imported:  # no MuJoCo scene to branch: the model follows real clips' parsed motion
        results, clips, pred = video_pokes(model, data, poke_queries, steps, dev, seed)
        results.update(frame_time(model, dev))
        results["skipped"] = {
            "pokes and chained pushes against MuJoCo": (
                f"{data} holds imported {imported}, not PushMulti-v0 scenes to branch"
            ),
            "object-position error": f"{data} holds imported {imported} without object positions",
        }
    else:
        results, queries, pred = evaluate_pokes(
            model, data, poke_queries, chain_queries, steps, dev, seed
        )
    if data is not None and image_clips:
        reader = EpisodeReader(data)
        try:
            check_frames_fit(model, reader.meta, data)
            img = image_metrics(model, reader, reader.indices("test"), 8, dev, clips=image_clips)
        finally:
            reader.close()
        results.update({k: v for k, v in img.items() if k != "per_step"})
    results.update(
        checkpoint=str(checkpoint),
        step=ckpt["step"],
        trained=training_summary(ckpt),
        **provenance(),
    )
    write_json_atomic(out / RESULTS, results)
    if imported:
        videos = write_video_pokes(out, clips, pred)
        title = f"Pokes on imported videos: {checkpoint}"
    else:
        videos = write_videos(out, results, queries, pred)
        title = f"Pokes against MuJoCo: {checkpoint}"
    if data is not None and isinstance(model, KeypointTracks):
        videos.append(keypoint_video(model, data, out / "keypoints.mp4", device=dev))
    report = write_poke_report(out, title, results, videos)
    return PokeRun(summary_table(results), out / RESULTS, videos, report)


@torch.no_grad()
def custom_poke(
    checkpoint: str | Path,
    point: list[float],
    vector: list[float],
    *,
    out: str | Path | None = None,
    seed: int = 1000,
    steps: int = 6,
    then: int = 4,
    device: str = "auto",
    sample_steps: int | None = None,
    solver: str | None = None,
    reencode_every: int | None = None,
    average: bool = True,
    data: str | Path | None = None,
) -> Path:
    """One poke of your own at pixel ``point`` (x, y) with ``vector`` (dx, dy pixels per step)
    for ``steps`` steps, then ``then`` steps with no control, from the first frame of
    PushMulti-v0 reset with ``seed`` (with ``data``: of the dataset's test episode number
    ``seed``, modulo their count; e.g. your imported videos); writes ``out/custom_poke.mp4``
    and returns its path."""
    if vector is None or len(point) != 2 or len(vector) != 2:
        raise ValueError(
            f"point={point}, vector={vector}; expected [x, y] pixels and [dx, dy] pixels per step"
        )
    dev = resolve_device(device)
    model, _ = load_pokeable(checkpoint, dev, average, sample_steps, solver, reencode_every)
    out = Path(out) if out else run_folder(checkpoint) / "poke"
    out.mkdir(parents=True, exist_ok=True)
    if data is not None:
        reader = EpisodeReader(data)
        try:
            check_frames_fit(model, reader.meta, data)
            test = reader.indices("test") or reader.indices()
            first = reader.frames(test[int(seed) % len(test)], slice(0, 1))[0]
        finally:
            reader.close()
        frame = to_tensor_frames(first, dev)[None, None]
    else:
        env = PushMultiEnv(width=model.image_size, height=model.image_size, time_limit=None)
        env.reset(seed=int(seed))
        frame = to_tensor_frames(env.render_rgb(), dev)[None, None]
        env.close()
    with seeded_sampling(model, seed, dev):
        pred = model.poke(
            frame, torch.tensor([[list(point)]]), torch.tensor([[list(vector)]]), steps, then
        )
    seq = to_numpy_frames(torch.cat([to_float_frames(frame[0]), pred[0]]))
    return write_video(upscale(seq, 4), out / "custom_poke.mp4", fps=4)
