"""Poke and chain queries: a start state in PushMulti-v0 and its true branch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from latentplay.agents.policies import scripted_run
from latentplay.envs.arm import OBJECT_HALF_HEIGHT, PushMultiEnv
from latentplay.evaluation.detector import MOVED_M

KINDS = ("poke", "chain")
CHAIN_SEED_OFFSET = 100_000  # chain queries draw their seeds apart from poke queries'


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


def build_query(
    env: PushMultiEnv, seed: int, kind: str, steps: int, context: int = 2, max_warmup: int = 60
) -> PokeQuery | None:
    """One query from ``seed`` (None when the scene does not give one: the stroke never
    started, or for a chain, the pushed object hit nothing)."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}; expected one of {KINDS}")
    start = scripted_run(
        env,
        seed,
        max_warmup,
        stop=lambda run: run.policy.phase == "push",  # S: behind the object, about to push
        render=True,
        noise=0.0,
        aim_at_object=1.0 if kind == "chain" else 0.0,
    )
    if not start.stopped:
        return None
    policy, seen = start.policy, start.frames
    push = np.append(policy.direction * policy.speed, 0.0).astype(np.float32)
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
    pushed, hit = int(policy.target), -1
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
    """``n_poke`` poke and ``n_chain`` chain queries from consecutive seeds (scenes that give
    no query are skipped, up to ``max_tries`` seeds per kind)."""
    env = PushMultiEnv(width=64, height=64, time_limit=None)
    out: list[PokeQuery] = []
    for kind, n in (("poke", n_poke), ("chain", n_chain)):
        first = seed + (0 if kind == "poke" else CHAIN_SEED_OFFSET)
        got, s = 0, first
        while got < n and s < first + max_tries:
            q = build_query(env, s, kind, steps)
            s += 1
            if q is not None:
                out.append(q)
                got += 1
    env.close()
    return out


def px_per_m(env: PushMultiEnv) -> float:
    """Image pixels per metre on the plane of the objects' centres."""
    z = OBJECT_HALF_HEIGHT
    pts = env.camera.world_to_pixel(np.array([[0.0, 0.0, z], [0.1, 0.0, z]]))
    return float(np.linalg.norm(pts[1] - pts[0]) / 0.1)
