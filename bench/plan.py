"""Planning latency: milliseconds per CEM replan per world model, beside the true simulator."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def bench_plan(
    repeats: int = 3,
    samples: int = 300,
    horizon: int = 5,
    iterations: int = 10,
    checkpoint: str | None = None,
    keypoint_checkpoint: str | None = None,
    image_size: int = 64,
    full: bool = True,
) -> list[dict[str, Any]]:
    """Milliseconds per CEM replan (``samples`` x ``horizon`` x ``iterations`` imagined
    transitions, goal-image cost) per world model, median over ``repeats`` replans: GLASS
    size s rolled out with its GMA alone (``GlassGlobal``; cost on decoded frames, and in its
    state, the mask centroid) and in full (GMA + LMA, unless ``full=False``), and the true
    simulator (Push-v0, env actions, true-position cost); the keypoint model with its state
    cost (keypoint distances, no frame decoded) and with the goal-image cost, and with its
    steps compiled (``torch.compile``; the first replan's seconds say what compiling takes;
    a row says why where it cannot run). Without
    ``checkpoint`` (``keypoint_checkpoint``) an untrained size-s GLASS (keypoint model) is
    timed: speed does not depend on the weights."""
    import torch

    from latentplay.agents.mpc import OracleController
    from latentplay.agents.planners import CEM
    from latentplay.agents.planners.costs import GoalImageCost
    from latentplay.agents.simulator import SimulatorModel
    from latentplay.agents.views import PLAN_WITHOUT, without_calibrations
    from latentplay.envs.arm import PushEnv
    from latentplay.utils.frames import to_tensor_frames
    from latentplay.world_models.checkpoint import load_model
    from latentplay.world_models.compiling import compile_unavailable
    from latentplay.world_models.glass import Glass
    from latentplay.world_models.glass.global_model import GlassGlobal
    from latentplay.world_models.keypoints import Keypoints

    if checkpoint:
        glass = load_model(checkpoint)[0]
    else:
        torch.manual_seed(0)
        glass = Glass(size="s", image_size=image_size).eval()
    env = PushEnv(width=image_size, height=image_size, time_limit=None)
    env.reset(seed=0)
    frame = to_tensor_frames(env.render_rgb())
    goal = to_tensor_frames(env.render_goal())
    settings = {"horizon": horizon, "samples": samples, "elites": 30, "iterations": iterations}

    def timed(plan_once: Callable[[], Any]) -> tuple[list[float], float]:
        """Milliseconds per replan after a first one (warm-up, compiling where compiled),
        and that first one's seconds."""
        t0 = time.perf_counter()
        plan_once()
        first = time.perf_counter() - t0
        out = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            plan_once()
            out.append(1e3 * (time.perf_counter() - t0))
        return out, first

    rows = []
    runs = [
        ("GLASS s, GMA rollout (GlassGlobal), goal-image cost", GlassGlobal(glass), "pixels"),
        ("GLASS s, GMA rollout (GlassGlobal), state cost", GlassGlobal(glass), "state"),
    ]
    if full:
        runs.append(("GLASS s, full rollout (GMA + LMA), goal-image cost", glass, "pixels"))

    def keypoint_model() -> Keypoints:
        torch.manual_seed(0)
        if keypoint_checkpoint:
            model = load_model(keypoint_checkpoint)[0].eval()
            without_calibrations(model, PLAN_WITHOUT)  # as scripts/plan.py plans
            return model
        return Keypoints(image_size=image_size).eval()

    keypoints = keypoint_model()
    runs += [
        ("keypoint model, state cost (keypoint distances)", keypoints, "state"),
        ("keypoint model, goal-image cost", keypoints, "pixels"),
    ]
    why = compile_unavailable(torch.device("cpu"))
    compiled = None
    if why is None:
        compiled = keypoint_model()
        compiled.compile_steps()  # a failure at the first step: eager, and the row says so
        runs.append(("keypoint model, state cost, compiled steps", compiled, "state"))
    for name, model, space in runs:
        planner = CEM(model.action_spec, **settings)
        with torch.inference_mode():
            ms, first = timed(
                lambda m=model, p=planner, s=space: p.plan(
                    GoalImageCost(m, frame[None, None], goal, space=s)
                )
            )
        if model is compiled and not compiled.steps_compiled:
            name += " (compiling failed: ran eagerly)"
        rows.append({"name": name, "ms": ms, "first_s": first})
    if why is not None:
        rows.append({"name": f"keypoint model, compiled steps: not run ({why})"})
    oracle = OracleController(
        lambda: PushEnv(width=image_size, height=image_size, time_limit=None),
        CEM(SimulatorModel.action_spec, **settings),
    )
    oracle.reset(env)
    ms, first = timed(lambda: oracle.act([], env.get_state()))
    rows.append({"name": "true simulator (Push-v0)", "ms": ms, "first_s": first})
    env.close()
    for r in rows:
        if "ms" not in r:
            continue
        ms = r.pop("ms")
        r.update(
            ms_per_replan=statistics.median(ms),
            min=min(ms),
            max=max(ms),
            x_target_1s=statistics.median(ms) / 1000.0,
            transitions=samples * horizon * iterations,
            repeats=repeats,
        )
    return rows
