"""The two MuJoCo branches of a query: the factual replay from its start state S, and the
counterfactual one from the same restored S after the intervention (exact to the bit)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from latentplay.agents.policies import scripted_run
from latentplay.envs.arm import ArmEnv, ArmState, PushEnv, PushMultiEnv
from latentplay.evaluation.counterfactual.queries import ImpossibleQuery, Query

SCENES: dict[str, type[ArmEnv]] = {"push": PushEnv, "push_multi": PushMultiEnv}
OBJECT_CLEARANCE_M = 0.055  # centre to centre: two 4.4 cm objects plus a gap
PATH_CLEARANCE_M = 0.07  # object centre to the end-effector path: paddle half-length + object
TABLE_LIMIT_M = 0.13  # |x|, |y| of a moved object's centre (the env takes up to 0.128)
STILL_M = 5e-4  # an object that moved less than this in a step was not pushed


@dataclass
class Branch:
    """One replay from the start: frames (H+1, h, w, 3) uint8 and ground truth per frame."""

    frames: np.ndarray
    object_pos: np.ndarray  # (H+1, 4, 3) m
    object_active: np.ndarray  # (4,)
    ee_pos: np.ndarray  # (H+1, 3)
    contact: np.ndarray  # (H, 4) arm-object contact after each step
    actions: np.ndarray  # (H, 3) env actions replayed
    start: ArmState  # the state of frame 0


@dataclass
class QueryBranches:
    query: Query
    factual: Branch
    counterfactual: Branch


def make_env(query: Query, width: int = 64, height: int = 64) -> ArmEnv:
    return SCENES[query.env](n_objects=query.n_objects, width=width, height=height, time_limit=None)


def replay(env: ArmEnv, actions: np.ndarray) -> Branch:
    """Step ``env`` from where it is through ``actions``, recording frames and ground truth."""
    start = env.get_state()
    frames, pos, ee, contact = [env.render_rgb()], [], [], []
    gt = env.ground_truth()
    pos.append(gt["object_pos"])
    ee.append(gt["ee_pos"])
    for a in actions:
        env.step(a)
        gt = env.ground_truth()
        frames.append(env.render_rgb())
        pos.append(gt["object_pos"])
        ee.append(gt["ee_pos"])
        contact.append(gt["contact_arm_object"])
    return Branch(
        np.stack(frames),
        np.stack(pos),
        env.ground_truth()["object_active"].copy(),
        np.stack(ee),
        np.stack(contact),
        np.asarray(actions, np.float32),
        start,
    )


def start_state(env: ArmEnv, query: Query) -> tuple[ArmState, np.ndarray]:
    """The query's start S and the factual env actions from it (H, 3): the scripted push
    policy's, run from ``reset(seed)``. S is ``lead`` steps before the first step in which an
    object moves (more than 0.5 mm) or is touched, so every object is at rest at S."""

    def first_touch(infos: list[dict]) -> int | None:
        for t in range(1, len(infos)):
            moved = np.linalg.norm(
                infos[t]["object_pos"][:, :2] - infos[t - 1]["object_pos"][:, :2], axis=1
            )
            if infos[t]["contact_arm_object"].any() or (moved > STILL_M).any():
                return t - 1
        return None

    def enough(run) -> bool:  # the horizon's steps after the first touch were taken
        first = first_touch(run.infos)
        return first is not None and len(run.actions) >= first + query.horizon

    run = scripted_run(env, query.seed, query.max_warmup + query.horizon, stop=enough)
    s0 = max(0, (first_touch(run.infos) or 0) - query.lead)
    acts = np.stack(run.actions[s0 : s0 + query.horizon])
    if len(acts) < query.horizon:
        raise ImpossibleQuery(
            f"query {query.name}: the scripted episode has only {len(acts)} of the horizon's "
            f"{query.horizon} steps after its start"
        )
    return run.states[s0], acts


def intervene(env: ArmEnv, query: Query, factual: Branch) -> np.ndarray:
    """Apply do(C) to the env (already at S); returns the actions to replay."""
    iv, actions = query.intervention, factual.actions.copy()
    i = iv.object
    if iv.kind == "move_object":
        start = factual.object_pos[0, i, :2]
        if iv.xy is not None:
            xy = np.asarray(iv.xy)
        elif iv.offset is not None:
            xy = start + np.asarray(iv.offset)
        else:
            xy = _out_of_path(query, start, factual.ee_pos[:, :2], iv.sideways)
        env.move_object(i, xy)
    elif iv.kind == "add_object":
        if iv.xy is not None:
            xy = np.asarray(iv.xy)
        elif iv.ahead is not None:
            xy = _ahead_of(query, factual, i, iv.ahead)
        else:
            xy = _free_path_point(query, factual)
        env.add_object(xy)
    elif iv.kind == "remove_object":
        env.remove_object(i)
    elif iv.kind in ("set_mass", "set_friction"):
        base = env.get_state()
        now = (base.object_mass if iv.kind == "set_mass" else base.object_friction)[i]
        v = iv.value if iv.value is not None else now * iv.factor
        (env.set_object_mass if iv.kind == "set_mass" else env.set_object_friction)(i, v)
    else:  # new actions
        if iv.toward is not None:
            if not factual.object_active[iv.toward]:
                raise ImpossibleQuery(
                    f"query {query.name}: toward={iv.toward} is not an object here"
                )
            d = factual.object_pos[0, iv.toward, :2] - factual.ee_pos[0, :2]
        else:
            d = np.asarray(iv.direction, np.float64)
        d = d / max(np.linalg.norm(d), 1e-9) * iv.speed
        actions[:, :2] = d
    return actions


def build_branches(query: Query, width: int = 64, height: int = 64) -> QueryBranches:
    """The factual and counterfactual replays of a query, from the same restored state."""
    env = make_env(query, width, height)
    try:
        s, actions = start_state(env, query)
        env.set_state(s)
        factual = replay(env, actions)
        env.set_state(s)
        try:
            cf_actions = intervene(env, query, factual)
        except ImpossibleQuery:
            raise
        except ValueError as e:  # the env refused the edit: off the table, no such object
            raise ImpossibleQuery(f"query {query.name}: {e}") from e
        counterfactual = replay(env, cf_actions)
    finally:
        env.close()
    return QueryBranches(query, factual, counterfactual)


# ---------------------------------------------------------------------- where objects can go
def _dist_to_path(p: np.ndarray, path: np.ndarray) -> float:
    """Distance from point p (2,) to the polyline ``path`` (T, 2)."""
    a, b = path[:-1], path[1:]
    ab = b - a
    t = np.clip(((p - a) * ab).sum(1) / np.maximum((ab * ab).sum(1), 1e-12), 0, 1)
    return float(np.linalg.norm(a + t[:, None] * ab - p, axis=1).min())


def _out_of_path(query: Query, start: np.ndarray, path: np.ndarray, distance: float) -> np.ndarray:
    """``start`` moved across the end effector's factual path, to the side it already is on,
    by ``distance`` or more, until it is ``PATH_CLEARANCE_M`` from the whole path."""
    d = path[-1] - path[0]
    normal = np.array([-d[1], d[0]]) / max(np.linalg.norm(d), 1e-9)
    side = np.sign(np.dot(start - path[0], normal)) or 1.0
    for sign in (side, -side):
        for k in range(8):
            p = start + sign * (distance + 0.01 * k) * normal
            if np.abs(p).max() <= TABLE_LIMIT_M and _dist_to_path(p, path) >= PATH_CLEARANCE_M:
                return p
    raise ImpossibleQuery(
        f"query {query.name}: no spot {distance} m or more across the arm's path is "
        f"{PATH_CLEARANCE_M} m clear of it and on the table; choose another seed"
    )


def _ahead_of(query: Query, factual: Branch, i: int, distance: float) -> np.ndarray:
    """``distance`` m beyond object ``i`` along its factual motion (the end effector's, if it
    barely moves), on the table and clear of the other objects."""
    start = factual.object_pos[0, i, :2]
    d = factual.object_pos[-1, i, :2] - start
    if np.linalg.norm(d) < 0.005:
        d = factual.ee_pos[-1, :2] - factual.ee_pos[0, :2]
    p = start + d / max(np.linalg.norm(d), 1e-9) * distance
    others = [j for j in np.flatnonzero(factual.object_active) if j != i]
    clear = all(
        np.linalg.norm(factual.object_pos[0, j, :2] - p) >= OBJECT_CLEARANCE_M for j in others
    )
    if np.abs(p).max() > 0.125 or not clear:  # the env takes |x|, |y| <= 0.128
        raise ImpossibleQuery(
            f"query {query.name}: {distance} m ahead of object {i} is off the table or on "
            "another object; choose another seed"
        )
    return p


def _free_path_point(query: Query, factual: Branch) -> np.ndarray:
    """Where the factual end effector is after ``path_step`` steps, or the nearest later or
    earlier path point that is clear of every object and of the end effector at the start."""
    iv, path = query.intervention, factual.ee_pos[:, :2]
    objs = factual.object_pos[0, factual.object_active, :2]
    order = sorted(range(1, len(path)), key=lambda k: abs(k - iv.path_step))
    for k in order:
        p = path[k]
        if (np.linalg.norm(objs - p, axis=1) >= OBJECT_CLEARANCE_M).all() and np.linalg.norm(
            p - path[0]
        ) >= OBJECT_CLEARANCE_M:
            return p
    raise ImpossibleQuery(
        f"query {query.name}: no point of the arm's path is {OBJECT_CLEARANCE_M} m clear of "
        "the objects; choose another seed"
    )
