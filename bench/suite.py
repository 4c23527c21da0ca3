"""One entry point per benchmark kind: its rows and the table columns it prints with
(``scripts/benchmark.py`` parses the command line and calls :func:`run`)."""

from __future__ import annotations

from typing import Any

from latentplay.bench import collect, envs, importing, models, plan

KINDS = ("envs", "collect", "import", "glass", "plan", "yoda", "torchrun")
Column = tuple[str, str, str]  # (row key, header, format spec)

COLUMNS: dict[str, list[Column]] = {
    "envs": [
        ("name", "env", ""),
        ("steps_per_s", "steps/s (median)", ".0f"),
        ("min", "min", ".0f"),
        ("max", "max", ".0f"),
        ("x_pusher_shipped", "x Pusher shipped", ".1f"),
        ("x_pusher_tuned", "x Pusher tuned", ".2f"),
    ],
    "glass": [
        ("name", "model", ""),
        ("params", "params", ""),
        ("masker_params", "masking net params", ""),
        ("transitions_per_s", "train transitions/s (median)", ".1f"),
        ("min", "min", ".1f"),
        ("max", "max", ".1f"),
        ("x_first", "x size s", ".3f"),
    ],
    "yoda": [
        ("name", "model", ""),
        ("params", "params", ""),
        ("evaluations", "net evals", ""),
        ("s_per_frame", "s / frame (median)", ".3f"),
        ("min", "min", ".3f"),
        ("max", "max", ".3f"),
        ("x_target", "x 0.3 s target", ".2f"),
        ("paper_sampler_s", "s / frame at 100 RK4 steps", ".1f"),
        ("train_samples_per_s", "train samples/s", ".1f"),
        ("train_precision", "train precision", ""),
        ("x_pixel_train", "x pixel model's train rate", ".2f"),
        ("train_gflop_per_sample", "train GFLOP / sample", ".2f"),
        ("x_pixel_flops", "pixel model's FLOPs / these", ".2f"),
    ],
    "plan": [
        ("name", "model", ""),
        ("ms_per_replan", "ms / replan (median)", ".0f"),
        ("min", "min", ".0f"),
        ("max", "max", ".0f"),
        ("x_target_1s", "x the 1 s target", ".2f"),
        ("transitions", "imagined transitions / replan", ""),
        ("first_s", "first replan (s; compiles)", ".1f"),
    ],
    "torchrun": [
        ("name", "run", ""),
        ("samples_per_s", "train samples/s (median)", ".1f"),
        ("min", "min", ".1f"),
        ("max", "max", ".1f"),
        ("x_one_process", "x 1 process", ".2f"),
        ("threads_per_process", "threads/process", ""),
    ],
    "import": [
        ("name", "run", ""),
        ("frames_per_s", "frames/s (median)", ".0f"),
        ("min", "min", ".0f"),
        ("max", "max", ".0f"),
        ("x_decode", "x decoding alone", ".2f"),
        ("videos", "videos", ""),
    ],
    "collect": [
        ("name", "run", ""),
        ("frames_per_s", "frames/s (median)", ".0f"),
        ("min", "min", ".0f"),
        ("max", "max", ".0f"),
        ("x_one_worker", "x 1 worker", ".2f"),
        ("bytes_per_frame", "bytes/frame on disk", ".0f"),
    ],
}


def run(
    kind: str,
    *,
    repeats: int | None = None,
    size: int = 64,
    steps: int = 2000,
    episodes: int = 400,
    env: str = "latentplay/Push-v0",
    checkpoint: str | None = None,
    keypoint_checkpoint: str | None = None,
    model: str = "glass",
    ray: bool = True,
    full: bool = True,
    autoencoder: str | None = None,
    precision: str = "auto",
) -> tuple[list[dict[str, Any]], list[Column]]:
    """The rows of benchmark ``kind`` (one of :data:`KINDS`) and its table's columns.
    ``repeats``: runs per row (None: the kind's default); ``size``, ``steps``: frames and
    timed steps of ``envs``; ``episodes``, ``env``: of ``collect`` (``ray=False`` skips its
    Ray rows); ``checkpoint``, ``keypoint_checkpoint``: the GLASS and keypoint model of
    ``plan`` (``full=False`` skips GLASS's full rollout, ~1 min a plan); ``model``: the model
    of ``torchrun`` (glass or yoda); ``autoencoder``: the latent rows' of ``yoda``;
    ``precision``: its training rows' (as ``trainer.precision``)."""
    if kind == "envs":
        from latentplay.envs import ENV_IDS

        rows = envs.bench_envs(ENV_IDS, size, steps, repeats or 5)
    elif kind == "glass":
        rows = models.bench_glass(repeats=repeats or 3)
    elif kind == "yoda":
        rows = models.bench_yoda(repeats=repeats or 5, autoencoder=autoencoder, precision=precision)
    elif kind == "plan":
        rows = plan.bench_plan(
            repeats=repeats or 3,
            checkpoint=checkpoint,
            keypoint_checkpoint=keypoint_checkpoint,
            full=full,
        )
    elif kind == "torchrun":
        rows = models.bench_torchrun(model=model, repeats=repeats or 3)
    elif kind == "import":
        rows = importing.bench_import(repeats=repeats or 3)
    elif kind == "collect":
        n = repeats or 3
        rows = collect.bench_collect(env, (1, 2), episodes, repeats=n)
        if ray:
            rows += collect.bench_collect(env, (1, 2), episodes, repeats=n, launcher="ray")
        rows += collect.bench_vector_env(env, (1, 2), repeats=n)
    else:
        raise ValueError(f"benchmark {kind!r}; expected one of {list(KINDS)}")
    return rows, COLUMNS[kind]
