"""Counterfactual "what if" queries, answered by a world model and checked against MuJoCo.

CoPhy's protocol (DESIGN.md): a start state S and env actions give the factual video A -> B;
an intervention do(C) changes the start (move, add or remove an object; change a mass or a
friction) or the actions; the ground truth D replays from the restored S with the intervention,
exact to the bit. The model predicts D from C's first frame under the factual video's parsed
latent actions (or, when the intervention changes the actions, the new env actions mapped
through grounding).

Object positions of every video (true, predicted, baselines) are read by the same colour
detector, so a perfect prediction scores exactly zero; the detector's own error against the
simulator's positions is reported beside (``validate`` in :mod:`evaluation.detector`).
Baselines in the same run: *copy* (C's first frame held) and *factual* (the true factual
video B standing in for D).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from latentplay.agents.policies import ScriptedPushPolicy
from latentplay.envs.arm import ArmEnv, ArmState, PushEnv, PushMultiEnv
from latentplay.evaluation import metrics as M
from latentplay.world_models.protocol import Actions

KINDS = ("move_object", "add_object", "remove_object", "set_mass", "set_friction", "actions")
ENVS: dict[str, type[ArmEnv]] = {"push": PushEnv, "push_multi": PushMultiEnv}
MOVED_M = 0.01  # an object "moved" when it ends more than 1 cm from where it started
PREDICTORS = ("model", "copy", "factual")
OBJECT_HALF_HEIGHT = 0.02  # m: detected pixels are mapped to the plane of object centres


@dataclass(frozen=True)
class Intervention:
    """do(...) on the start state, or new actions. Fields used per ``kind``:

    - ``move_object``: ``object`` moved by ``offset`` (m), to ``xy``, or ``sideways`` m (or
      more) across the factual end effector's path, until it is clear of it (out of its way);
    - ``add_object``: a new object at ``xy``, or where the factual end effector is after
      ``path_step`` steps (in the arm's path; the nearest path point clear of the objects), or
      ``ahead`` m beyond ``object`` in the direction the factual push moves it (in the pushed
      object's way: a chained push);
    - ``remove_object``: ``object``;
    - ``set_mass`` / ``set_friction``: ``object``'s value times ``factor`` (or set to ``value``);
    - ``actions``: constant actions toward object ``toward`` (from where the end effector
      starts), or along ``direction`` (env units, x and y), with the factual wrist commands.
    """

    kind: str
    object: int = 0
    xy: tuple[float, float] | None = None
    offset: tuple[float, float] | None = None
    sideways: float | None = None
    path_step: int | None = None
    factor: float | None = None
    value: float | None = None
    toward: int | None = None
    direction: tuple[float, float] | None = None
    ahead: float | None = None
    speed: float = 0.8

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"intervention kind={self.kind!r}; expected one of {KINDS}")
        need = {
            "move_object": ("offset", "xy", "sideways"),
            "add_object": ("xy", "path_step", "ahead"),
            "set_mass": ("factor", "value"),
            "set_friction": ("factor", "value"),
            "actions": ("toward", "direction"),
        }.get(self.kind, ())
        if need and all(getattr(self, k) is None for k in need):
            raise ValueError(f"intervention {self.kind} needs one of {need}")
        if not 0 < abs(self.speed) <= 1:
            raise ValueError(f"speed={self.speed}; expected 0 < |speed| <= 1 (env action units)")


@dataclass(frozen=True)
class Query:
    """One counterfactual question. The start is ``lead`` steps before the scripted policy's
    first arm-object contact in the episode ``env.reset(seed)`` (or its first step)."""

    name: str
    intervention: Intervention
    env: str = "push"
    seed: int = 0
    n_objects: int | None = None
    lead: int = 3
    horizon: int = 8
    max_warmup: int = 60

    def __post_init__(self) -> None:
        if self.env not in ENVS:
            raise ValueError(f"query {self.name}: env={self.env!r}; expected one of {list(ENVS)}")
        if self.horizon < 1 or self.lead < 0:
            raise ValueError(f"query {self.name}: horizon={self.horizon}, lead={self.lead}")


def load_queries(path: str | Path) -> list[Query]:
    """A query YAML: ``name``, ``intervention: {kind: ..., ...}``, the other :class:`Query`
    fields, and optionally ``seeds: [...]`` for one query per seed (named ``name/s<seed>``)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"{path}: cannot read the query ({e})") from e
    if not isinstance(raw, dict) or "intervention" not in raw:
        raise ValueError(f"{path}: expected a mapping with an 'intervention' key")
    raw = dict(raw)
    raw.setdefault("name", path.stem)
    allowed = {f.name for f in fields(Query)} | {"seeds"}
    unknown = set(raw) - allowed
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}; expected {sorted(allowed)}")
    iv_raw = raw.pop("intervention")
    iv_allowed = {f.name for f in fields(Intervention)}
    if not isinstance(iv_raw, dict) or set(iv_raw) - iv_allowed:
        raise ValueError(f"{path}: intervention keys must be among {sorted(iv_allowed)}")
    iv = Intervention(**{k: tuple(v) if isinstance(v, list) else v for k, v in iv_raw.items()})
    seeds = raw.pop("seeds", None)
    if seeds is None:
        return [Query(intervention=iv, **raw)]
    base = raw.pop("name")
    return [Query(name=f"{base}/s{s}", intervention=iv, seed=int(s), **raw) for s in seeds]


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


def _replay(env: ArmEnv, actions: np.ndarray) -> Branch:
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


def make_env(query: Query, width: int = 64, height: int = 64) -> ArmEnv:
    return ENVS[query.env](n_objects=query.n_objects, width=width, height=height, time_limit=None)


def start_state(env: ArmEnv, query: Query) -> tuple[ArmState, np.ndarray]:
    """The query's start S and the factual env actions from it (H, 3): the scripted push
    policy's, run from ``reset(seed)``. S is ``lead`` steps before the first step in which an
    object moves (more than 0.5 mm) or is touched, so every object is at rest at S."""
    _, info = env.reset(seed=query.seed)
    policy = ScriptedPushPolicy(env.action_space)
    policy.reset(np.random.default_rng(query.seed), info)
    states, actions, first = [env.get_state()], [], None
    for t in range(query.max_warmup + query.horizon):
        before = info["object_pos"][:, :2].copy()
        a = policy.act(None, info)
        _, _, _, _, info = env.step(a)
        actions.append(a)
        states.append(env.get_state())
        moved = np.linalg.norm(info["object_pos"][:, :2] - before, axis=1) > 5e-4
        if first is None and (info["contact_arm_object"].any() or moved.any()):
            first = t
        if first is not None and len(actions) >= first + query.horizon:
            break
    s0 = max(0, (first or 0) - query.lead)
    acts = np.stack(actions[s0 : s0 + query.horizon])
    if len(acts) < query.horizon:
        raise RuntimeError(f"query {query.name}: only {len(acts)} factual steps")
    return states[s0], acts


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
                raise ValueError(f"query {query.name}: toward={iv.toward} is not an object here")
            d = factual.object_pos[0, iv.toward, :2] - factual.ee_pos[0, :2]
        else:
            d = np.asarray(iv.direction, np.float64)
        d = d / max(np.linalg.norm(d), 1e-9) * iv.speed
        actions[:, :2] = d
    return actions


OBJECT_CLEARANCE_M = 0.055  # centre to centre: two 4.4 cm objects plus a gap
PATH_CLEARANCE_M = 0.07  # object centre to the end-effector path: paddle half-length + object


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
    lim = 0.13
    for sign in (side, -side):
        for k in range(8):
            p = start + sign * (distance + 0.01 * k) * normal
            if np.abs(p).max() <= lim and _dist_to_path(p, path) >= PATH_CLEARANCE_M:
                return p
    raise ValueError(
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
        raise ValueError(
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
    raise ValueError(
        f"query {query.name}: no point of the arm's path is {OBJECT_CLEARANCE_M} m clear of "
        "the objects; choose another seed"
    )


@dataclass
class QueryBranches:
    query: Query
    factual: Branch
    counterfactual: Branch


def build_branches(query: Query, width: int = 64, height: int = 64) -> QueryBranches:
    """The factual and counterfactual replays of a query, from the same restored state."""
    env = make_env(query, width, height)
    try:
        s, actions = start_state(env, query)
        env.set_state(s)
        factual = _replay(env, actions)
        env.set_state(s)
        cf_actions = intervene(env, query, factual)
        counterfactual = _replay(env, cf_actions)
    finally:
        env.close()
    return QueryBranches(query, factual, counterfactual)


# ---------------------------------------------------------------------- prediction
def _to_tensor(frames: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(frames).permute(0, 3, 1, 2)[None].to(device)  # (1, T, 3, H, W)


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x[0].clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def predict(
    model: Any,
    branches: QueryBranches,
    to_learned: Callable[[np.ndarray], Actions] | None = None,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """The model's counterfactual and factual videos (H, h, w, 3) uint8 from each branch's
    first frame. Actions: the factual video's parsed latent actions, or ``to_learned`` of the
    env actions (needed when the intervention changes the actions). A model with
    ``set_start`` (the simulator) is told each branch's true start state."""
    device = torch.device(device)
    f, cf = branches.factual, branches.counterfactual
    changes_actions = branches.query.intervention.kind == "actions"
    if to_learned is None and changes_actions:
        raise ValueError(
            f"query {branches.query.name} changes the actions: predicting it needs grounding "
            "(env actions -> learned actions)"
        )
    if to_learned is not None:
        acts_f, acts_cf = to_learned(f.actions), to_learned(cf.actions)
    else:
        acts_f = acts_cf = model.infer_actions(_to_tensor(f.frames, device))
    out = []
    for branch, acts in ((cf, acts_cf), (f, acts_f)):
        if hasattr(model, "set_start"):
            model.set_start(branch.start)
        out.append(_to_uint8(model.rollout(_to_tensor(branch.frames[:1], device), acts)))
    return out[0], out[1]


# ---------------------------------------------------------------------- scoring
Locate = Callable[[np.ndarray], np.ndarray]  # frames (N, h, w, 3) uint8 -> (N, 4, 2) px, NaN


def _fill(pred: np.ndarray, start: np.ndarray) -> tuple[np.ndarray, float]:
    """Objects the detector misses in a predicted frame are taken to be where they started;
    returns the filled positions and the detection rate."""
    miss = ~np.isfinite(pred).all(axis=-1)
    filled = np.where(miss[..., None], start[None], pred)
    return filled, float(1 - miss.mean()) if miss.size else 1.0


PADDLE_REACH_M = 0.030  # paddle pixel centre to object centre (box half-size 2.2 cm + ~1 px)


def paddle_pixels(frames: np.ndarray) -> np.ndarray:
    """Pixels of the orange wrist paddle (the only part of the arm low enough to touch an
    object; the links pass above them). (N, h, w, 3) uint8 -> (N, h, w) bool."""
    f = frames.astype(np.int16)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    return (r > 170) & (g > 70) & (g < 190) & (b < 90) & (r - g > 50)


def visual_contact(
    frames: np.ndarray, object_px: np.ndarray, to_metres: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """Contact read from frames: a paddle pixel within ``PADDLE_REACH_M`` of an object's
    detected centre (table metres). frames (N, h, w, 3), object_px (N, n, 2) -> (N, n) bool."""
    paddle = paddle_pixels(frames)
    out = np.zeros(object_px.shape[:2], bool)
    for t in range(len(frames)):
        vs, us = np.nonzero(paddle[t])
        if not len(us):
            continue
        pts = to_metres(np.stack([us + 0.5, vs + 0.5], axis=1))  # (P, 2)
        obj = to_metres(object_px[t])  # (n, 2), NaN where not found
        d = np.linalg.norm(pts[None] - obj[:, None], axis=-1).min(axis=1)
        out[t] = np.nan_to_num(d, nan=np.inf) < PADDLE_REACH_M
    return out


def _outcomes(
    frames: np.ndarray, pos: np.ndarray, start: np.ndarray, to_metres: Callable
) -> tuple[np.ndarray, np.ndarray]:
    """Did each object end > 1 cm from where it started; was it touched at any step (the
    paddle within reach in a frame, or the object moved: objects here only move when touched,
    and a touch can fall between frames)?"""
    moved = np.linalg.norm(to_metres(pos[-1]) - to_metres(start), axis=-1) > MOVED_M
    return moved, visual_contact(frames, pos, to_metres).any(axis=0) | moved


def score_query(
    branches: QueryBranches,
    model_cf: np.ndarray,
    model_f: np.ndarray,
    locate: Locate,
    to_metres: Callable[[np.ndarray], np.ndarray],
) -> dict[str, Any]:
    """Per-step errors of the model and the baselines; see the module doc.

    Every quantity of the truth and of the predictions is read from frames the same way (the
    detector's object positions; moved = ended more than 1 cm from the start; contact = the
    paddle within reach of the object), so a perfect prediction scores exactly zero; how
    these readings agree with the simulator on the true frames is reported as
    ``reading_vs_simulator``. Steps where the detector misses an object in the *true*
    counterfactual video (the arm over it) are left out of the position errors (NaN-aware
    means); objects it misses in a *predicted* frame count as where they started.

    ``to_metres``: (..., 2) pixels -> (..., 2) table metres (the camera's inverse projection)."""
    f, cf = branches.factual, branches.counterfactual
    h, name = len(cf.actions), branches.query.name
    for what, video in (("model_cf", model_cf), ("model_f", model_f)):
        if video.shape != cf.frames[1:].shape:
            raise ValueError(
                f"query {name}: {what} of shape {video.shape}; expected {cf.frames[1:].shape}"
            )
    objs = np.flatnonzero(cf.object_active)  # objects of the counterfactual scene
    if not len(objs):
        raise ValueError(f"query {name}: the counterfactual scene has no object to score")
    both = [i for i in objs if f.object_active[i]]  # ... also in the factual one
    true_cf = locate(cf.frames)[:, objs]  # (H+1, n, 2)
    true_f = locate(f.frames)[:, objs]
    start_cf, start_f = true_cf[0], true_f[0]
    if not np.isfinite(start_cf).all():
        raise RuntimeError(
            f"query {name}: the detector misses an object in the true start frame "
            "(occluded?); choose another start"
        )
    preds = {
        "model": (model_cf, model_f),
        "copy": (np.repeat(cf.frames[:1], h, 0), np.repeat(f.frames[:1], h, 0)),
        "factual": (f.frames[1:], f.frames[1:]),
    }
    truth_px = true_cf[1:]
    idx_both = [int(np.flatnonzero(objs == i)[0]) for i in both]
    true_effect = (true_cf[1:, idx_both] - true_f[1:, idx_both]) if both else None
    moved_true, contact_true = _outcomes(cf.frames[1:], truth_px, start_cf, to_metres)
    sim_moved = np.linalg.norm(cf.object_pos[-1, objs, :2] - cf.object_pos[0, objs, :2], -1)
    out: dict[str, Any] = {
        "name": name,
        "kind": branches.query.intervention.kind,
        "true_moved": moved_true.tolist(),
        "true_contact": contact_true.tolist(),
        "reading_vs_simulator": {
            "moved_agree": (moved_true == (sim_moved > MOVED_M)).tolist(),
            "contact_agree": (
                contact_true == (cf.contact[:, objs].any(axis=0) | (sim_moved > MOVED_M))
            ).tolist(),
            "truth_detected": float(np.isfinite(truth_px).all(axis=-1).mean()),
        },
    }
    chw = lambda v: v.transpose(0, 3, 1, 2).astype(np.float64) / 255  # noqa: E731
    real = chw(cf.frames[1:])
    for pred_name, (p_cf, p_f) in preds.items():
        pos_cf, rate = _fill(locate(p_cf)[:, objs], start_cf)
        err_px = np.linalg.norm(pos_cf - truth_px, axis=-1)  # (H, n), NaN: truth unseen
        err_m = np.linalg.norm(to_metres(pos_cf) - to_metres(truth_px), axis=-1)
        row = {
            "object_err_px": _nanmean_rows(err_px),
            "object_err_cm": _nanmean_rows(100 * err_m),
            "detected": rate,
        }
        if true_effect is not None:
            pos_f, _ = _fill(locate(p_f)[:, both], start_f[idx_both])
            effect = pos_cf[:, idx_both] - pos_f
            row["effect_err_px"] = _nanmean_rows(np.linalg.norm(effect - true_effect, axis=-1))
        moved, contact = _outcomes(p_cf, pos_cf, start_cf, to_metres)
        row["moved_correct"] = (moved == moved_true).tolist()
        row["contact_correct"] = (contact == contact_true).tolist()
        pf = chw(p_cf)
        row["psnr"] = np.minimum(M.psnr(pf, real), 60.0).tolist()
        row["ssim"] = M.ssim(pf, real).tolist()
        out[pred_name] = row
    return out


def _nanmean_rows(x: np.ndarray) -> list[float]:
    """Mean over objects per step, ignoring NaN (a step with no seen object stays NaN)."""
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=1).tolist()


@dataclass
class SuiteSummary:
    per_step: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    overall: dict[str, dict[str, float]] = field(default_factory=dict)
    per_kind: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)


SERIES = ("object_err_px", "object_err_cm", "effect_err_px", "psnr", "ssim")


def summarize(results: list[dict[str, Any]]) -> SuiteSummary:
    """Means over queries (NaN-aware: steps where the truth was unseen are skipped): per
    horizon step, overall (mean over steps), and per kind."""
    horizons = {len(r["model"]["object_err_px"]) for r in results}
    if len(horizons) != 1:
        raise ValueError(f"queries of different horizons {sorted(horizons)}; summarize apart")
    s = SuiteSummary()

    def agg(rows: list[dict[str, Any]]) -> tuple[dict, dict]:
        steps, overall = {}, {}
        for p in PREDICTORS:
            steps[p], overall[p] = {}, {}
            for key in SERIES:
                vals = [r[p][key] for r in rows if key in r[p]]
                if vals:
                    arr = np.asarray(vals, np.float64)
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)
                        steps[p][key] = np.nanmean(arr, axis=0).tolist()
                        overall[p][key] = float(np.nanmean(arr))
                        overall[p][f"{key}_final"] = float(np.nanmean(arr[:, -1]))
            for key in ("moved_correct", "contact_correct"):
                flat = [v for r in rows for v in r[p][key]]
                overall[p][key.replace("_correct", "_acc")] = (
                    float(np.mean(flat)) if flat else float("nan")
                )
            overall[p]["detected"] = float(np.mean([r[p]["detected"] for r in rows]))
        return steps, overall

    s.per_step, s.overall = agg(results)
    for kind in sorted({r["kind"] for r in results}):
        s.per_kind[kind] = agg([r for r in results if r["kind"] == kind])[1]
    return s


@dataclass
class QueryOutcome:
    """A scored query and its videos (H+1 frames each: the shared start frame, then steps)."""

    scores: dict[str, Any]
    true_video: np.ndarray
    model_video: np.ndarray
    factual_video: np.ndarray


def run_queries(
    model: Any,
    queries: list[Query],
    locate: Locate,
    to_metres: Callable[[np.ndarray], np.ndarray],
    to_learned: Callable[[np.ndarray], Actions] | None = None,
    action_source: str = "latent",
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> list[QueryOutcome]:
    """Build, predict and score every query (see :func:`score_query`). ``action_source``:
    "latent" parses the factual video (queries that change the actions still go through
    ``to_learned``); "grounded" maps every query's env actions with ``to_learned``."""
    if action_source not in ("latent", "grounded"):
        raise ValueError(f"action_source={action_source!r}; expected 'latent' or 'grounded'")
    if action_source == "grounded" and to_learned is None:
        raise ValueError("action_source='grounded' needs to_learned (a grounding)")
    from tqdm.auto import tqdm

    out = []
    for q in tqdm(queries, desc="queries", disable=not progress, leave=False):
        b = build_branches(q)
        grounded = action_source == "grounded" or q.intervention.kind == "actions"
        pred_cf, pred_f = predict(model, b, to_learned if grounded else None, device)
        scores = score_query(b, pred_cf, pred_f, locate, to_metres)
        start = b.counterfactual.frames[:1]
        out.append(
            QueryOutcome(
                scores,
                b.counterfactual.frames,
                np.concatenate([start, pred_cf]),
                b.factual.frames,
            )
        )
    return out
