"""Speed benchmarks, each measured beside its anchor in the same run (docs/BENCHMARKS.md).

    python scripts/benchmark.py envs      # steps/s at 64x64 vs Gymnasium Pusher-v5
    python scripts/benchmark.py collect   # frames/s written to disk, 1 vs 2 workers, local
                                          # pool and Ray; AsyncVectorEnv stepping alone
    python scripts/benchmark.py import    # frames/s importing 16 mp4s (256x256) at 64x64,
                                          # beside ffmpeg decoding alone
    python scripts/benchmark.py torchrun  # training samples/s, 1 process vs torchrun 1 and 2
    python scripts/benchmark.py glass     # GLASS training transitions/s: size s vs paper
    python scripts/benchmark.py plan      # ms per CEM replan (300 x 5 x 10) per world model
                                          # (GLASS, the keypoint model, the simulator)
    python scripts/benchmark.py yoda      # s per generated YODA frame by ODE steps, vs 0.3 s

Prints a Markdown table and writes JSON (``--out``, default benchmarks/<kind>.json).
"""

from __future__ import annotations

import argparse
import shlex
import sys

import latentplay.envs  # noqa: F401  (GL platform before mujoco is imported)
from latentplay.bench import suite
from latentplay.bench.common import save, table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("kind", choices=suite.KINDS)
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/<kind>.json)")
    p.add_argument("--repeats", type=int, default=None, help="runs per row; the median is kept")
    p.add_argument("--size", type=int, default=64, help="frame size for `envs`")
    p.add_argument("--steps", type=int, default=2000, help="timed steps per run for `envs`")
    p.add_argument("--episodes", type=int, default=400, help="episodes per run for `collect`")
    p.add_argument("--env", default="latentplay/Push-v0", help="env id for `collect`")
    p.add_argument("--checkpoint", default=None, help="GLASS checkpoint for `plan`")
    p.add_argument(
        "--keypoint-checkpoint", default=None, help="keypoint model checkpoint for `plan`"
    )
    p.add_argument(
        "--autoencoder",
        default=None,
        help="`yoda`: autoencoder checkpoint of the latent rows (default: an untrained one)",
    )
    p.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "fp32", "bf16"),
        help="`yoda`: the training rows' precision, as trainer.precision (auto: bf16 where native)",
    )
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

    rows, columns = suite.run(
        args.kind,
        repeats=args.repeats,
        size=args.size,
        steps=args.steps,
        episodes=args.episodes,
        env=args.env,
        checkpoint=args.checkpoint,
        keypoint_checkpoint=args.keypoint_checkpoint,
        model=args.model,
        ray=not args.no_ray,
        full=not args.no_full,
        autoencoder=args.autoencoder,
        precision=args.precision,
    )
    print(table(rows, columns))
    path = save(args.out or f"benchmarks/{args.kind}.json", args.kind, rows, command)
    print(f"\nwritten: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
