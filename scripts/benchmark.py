"""Speed benchmarks, each measured beside its anchor in the same run (docs/BENCHMARKS.md).

    python scripts/benchmark.py envs      # steps/s at 64x64 vs Gymnasium Pusher-v5
    python scripts/benchmark.py collect   # frames/s written to disk, 1 vs 2 workers, local
                                          # pool and Ray; AsyncVectorEnv stepping alone
    python scripts/benchmark.py torchrun  # training samples/s, 1 process vs torchrun 1 and 2
    python scripts/benchmark.py glass     # GLASS training transitions/s: size s vs paper
    python scripts/benchmark.py plan      # ms per CEM replan (300 x 5 x 10) per world model
    python scripts/benchmark.py yoda      # s per generated YODA frame by ODE steps, vs 0.3 s

Prints a Markdown table and writes JSON (``--out``, default benchmarks/<kind>.json).
"""

from __future__ import annotations

import argparse
import shlex
import sys

import latentplay.envs  # noqa: F401  (GL platform before mujoco is imported)
from latentplay.envs import ENV_IDS
from latentplay.utils import bench


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("kind", choices=["envs", "collect", "glass", "plan", "yoda", "torchrun"])
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/<kind>.json)")
    p.add_argument("--repeats", type=int, default=None, help="runs per row; the median is kept")
    p.add_argument("--size", type=int, default=64, help="frame size for `envs`")
    p.add_argument("--steps", type=int, default=2000, help="timed steps per run for `envs`")
    p.add_argument("--episodes", type=int, default=400, help="episodes per run for `collect`")
    p.add_argument("--env", default="latentplay/Push-v0", help="env id for `collect`")
    p.add_argument("--checkpoint", default=None, help="GLASS checkpoint for `plan`")
    p.add_argument("--model", default="glass", help="model for `torchrun` (glass or yoda)")
    p.add_argument(
        "--no-ray", action="store_true", help="`collect`: skip the Ray rows (Ray not installed)"
    )
    p.add_argument(
        "--no-full", action="store_true", help="`plan`: skip the full GLASS rollout (~1 min/plan)"
    )
    args = p.parse_args(argv)
    command = "python scripts/benchmark.py " + shlex.join(
        argv if argv is not None else sys.argv[1:]
    )

    if args.kind == "envs":
        rows = bench.bench_envs(ENV_IDS, args.size, args.steps, args.repeats or 5)
        columns = [
            ("name", "env", ""),
            ("steps_per_s", "steps/s (median)", ".0f"),
            ("min", "min", ".0f"),
            ("max", "max", ".0f"),
            ("x_pusher_shipped", "x Pusher shipped", ".1f"),
            ("x_pusher_tuned", "x Pusher tuned", ".2f"),
        ]
    elif args.kind == "glass":
        rows = bench.bench_glass(repeats=args.repeats or 3)
        columns = [
            ("name", "model", ""),
            ("params", "params", ""),
            ("masker_params", "masking net params", ""),
            ("transitions_per_s", "train transitions/s (median)", ".1f"),
            ("min", "min", ".1f"),
            ("max", "max", ".1f"),
            ("x_first", "x size s", ".3f"),
        ]
    elif args.kind == "yoda":
        rows = bench.bench_yoda(repeats=args.repeats or 5)
        columns = [
            ("name", "model", ""),
            ("params", "params", ""),
            ("evaluations", "net evals", ""),
            ("s_per_frame", "s / frame (median)", ".3f"),
            ("min", "min", ".3f"),
            ("max", "max", ".3f"),
            ("x_target", "x 0.3 s target", ".2f"),
            ("paper_sampler_s", "s / frame at 100 RK4 steps", ".1f"),
            ("train_samples_per_s", "train samples/s", ".1f"),
        ]
    elif args.kind == "plan":
        rows = bench.bench_plan(
            repeats=args.repeats or 3, checkpoint=args.checkpoint, full=not args.no_full
        )
        columns = [
            ("name", "model", ""),
            ("ms_per_replan", "ms / replan (median)", ".0f"),
            ("min", "min", ".0f"),
            ("max", "max", ".0f"),
            ("x_target_1s", "x the 1 s target", ".2f"),
            ("transitions", "imagined transitions / replan", ""),
        ]
    elif args.kind == "torchrun":
        rows = bench.bench_torchrun(model=args.model, repeats=args.repeats or 3)
        columns = [
            ("name", "run", ""),
            ("samples_per_s", "train samples/s (median)", ".1f"),
            ("min", "min", ".1f"),
            ("max", "max", ".1f"),
            ("x_one_process", "x 1 process", ".2f"),
            ("threads_per_process", "threads/process", ""),
        ]
    else:
        n = args.repeats or 3
        rows = bench.bench_collect(args.env, (1, 2), args.episodes, repeats=n)
        if not args.no_ray:
            rows += bench.bench_collect(args.env, (1, 2), args.episodes, repeats=n, launcher="ray")
        rows += bench.bench_vector_env(args.env, (1, 2), repeats=n)
        columns = [
            ("name", "run", ""),
            ("frames_per_s", "frames/s (median)", ".0f"),
            ("min", "min", ".0f"),
            ("max", "max", ".0f"),
            ("x_one_worker", "x 1 worker", ".2f"),
            ("bytes_per_frame", "bytes/frame on disk", ".0f"),
        ]
    print(bench.table(rows, columns))
    path = bench.save(args.out or f"benchmarks/{args.kind}.json", args.kind, rows, command)
    print(f"\nwritten: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
