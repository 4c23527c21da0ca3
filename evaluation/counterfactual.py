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

    - ``move_object``: ``object`` moved by ``offset`` (m), to ``xy``, or ``sideways`` m across
      the factual end effector's path (out of its way; the side that stays on the table);
    - ``add_object``: a new object at ``xy``, or where the factual end effector is after
      ``path_step`` steps (in the arm's path);
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
    speed: float = 0.8

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"intervention kind={self.kind!r}; expected one of {KINDS}")
        need = {
            "move_object": ("offset", "xy", "sideways"),
            "add_object": ("xy", "path_step"),
            "set_mass": ("factor", "value"),
            "set_friction": ("factor", "value"),
            "actions": ("toward", "direction"),
        }.get(self.kind, ())
        if need and all(getattr(self, k) is None for k in need):
            raise ValueError(f"intervention {self.kind} needs one of {need}")


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
    policy's, run from ``reset(seed)``."""
    _, info = env.reset(seed=query.seed)
    policy = ScriptedPushPolicy(env.action_space)
    policy.reset(np.random.default_rng(query.seed), info)
    states, actions, first_contact = [env.get_state()], [], None
    for t in range(query.max_warmup + query.horizon):
        a = policy.act(None, info)
        _, _, _, _, info = env.step(a)
        actions.append(a)
        states.append(env.get_state())
        if first_contact is None and info["contact_arm_object"].any():
            first_contact = t
        if first_contact is not None and len(actions) >= first_contact + query.horizon:
            break
    s0 = max(0, (first_contact or 0) - query.lead)
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
            xy = _sideways(start, factual.ee_pos[-1, :2] - factual.ee_pos[0, :2], iv.sideways)
        env.move_object(i, xy)
    elif iv.kind == "add_object":
        if iv.xy is not None:
            xy = np.asarray(iv.xy)
        else:
            step = min(iv.path_step, query.horizon)
            xy = factual.ee_pos[step, :2]
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
            d = factual.object_pos[0, iv.toward, :2] - factual.ee_pos[0, :2]
        else:
            d = np.asarray(iv.direction, np.float64)
        d = d / max(np.linalg.norm(d), 1e-9) * iv.speed
        actions[:, :2] = d
    return actions


def _sideways(start: np.ndarray, path: np.ndarray, distance: float) -> np.ndarray:
    """``start`` moved ``distance`` across ``path``, to the side nearer the table's centre."""
    d = path / max(np.linalg.norm(path), 1e-9)
    normal = np.array([-d[1], d[0]])
    cands = [start + distance * normal, start - distance * normal]
    return min(cands, key=lambda p: float(np.abs(p).max()))


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


def score_query(
    branches: QueryBranches,
    model_cf: np.ndarray,
    model_f: np.ndarray,
    locate: Locate,
    to_metres: Callable[[np.ndarray], np.ndarray],
) -> dict[str, Any]:
    """Per-step errors of the model and the baselines; see the module doc.

    ``to_metres``: (..., 2) pixels -> (..., 2) table metres (the camera's inverse projection)."""
    f, cf = branches.factual, branches.counterfactual
    h = len(cf.actions)
    objs = np.flatnonzero(cf.object_active)  # objects of the counterfactual scene
    both = [i for i in objs if f.object_active[i]]  # ... also in the factual one
    true_cf = locate(cf.frames)[:, objs]  # (H+1, n, 2)
    true_f = locate(f.frames)[:, objs]
    start_cf, start_f = true_cf[0], true_f[0]
    if not np.isfinite(start_cf).all():
        raise RuntimeError(
            f"query {branches.query.name}: the detector misses an object in the true start "
            "frame (occluded?); choose another start"
        )
    preds = {
        "model": (model_cf, model_f),
        "copy": (np.repeat(cf.frames[:1], h, 0), np.repeat(f.frames[:1], h, 0)),
        "factual": (f.frames[1:], f.frames[1:]),
    }
    truth_px = true_cf[1:]
    idx_both = [int(np.flatnonzero(objs == i)[0]) for i in both]
    true_effect = (true_cf[1:, idx_both] - true_f[1:, idx_both]) if both else None
    moved_true = np.linalg.norm(cf.object_pos[-1, objs, :2] - cf.object_pos[0, objs, :2], axis=-1)
    contact_true = cf.contact[:, objs].any(axis=0)
    out: dict[str, Any] = {"name": branches.query.name, "kind": branches.query.intervention.kind}
    chw = lambda v: v.transpose(0, 3, 1, 2).astype(np.float64) / 255  # noqa: E731
    real = chw(cf.frames[1:])
    for name, (p_cf, p_f) in preds.items():
        pos_cf, rate = _fill(locate(p_cf)[:, objs], start_cf)
        err_px = np.linalg.norm(pos_cf - truth_px, axis=-1)  # (H, n)
        err_m = np.linalg.norm(to_metres(pos_cf) - to_metres(truth_px), axis=-1)
        row = {
            "object_err_px": err_px.mean(axis=1).tolist(),
            "object_err_cm": (100 * err_m.mean(axis=1)).tolist(),
            "detected": rate,
        }
        if true_effect is not None:
            pos_f, _ = _fill(locate(p_f)[:, both], start_f[idx_both])
            effect = pos_cf[:, idx_both] - pos_f
            row["effect_err_px"] = (
                np.linalg.norm(effect - true_effect, axis=-1).mean(axis=1).tolist()
            )
        moved_pred = np.linalg.norm(to_metres(pos_cf[-1]) - to_metres(start_cf), axis=-1) > MOVED_M
        row["moved_correct"] = (moved_pred == (moved_true > MOVED_M)).tolist()
        row["contact_correct"] = (moved_pred == contact_true).tolist()
        pf = chw(p_cf)
        row["psnr"] = np.minimum(M.psnr(pf, real), 60.0).tolist()
        row["ssim"] = M.ssim(pf, real).tolist()
        out[name] = row
    out["true_moved"] = (moved_true > MOVED_M).tolist()
    out["true_contact"] = contact_true.tolist()
    return out


@dataclass
class SuiteSummary:
    per_step: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    overall: dict[str, dict[str, float]] = field(default_factory=dict)
    per_kind: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)


SERIES = ("object_err_px", "object_err_cm", "effect_err_px", "psnr", "ssim")


def summarize(results: list[dict[str, Any]]) -> SuiteSummary:
    """Means over queries: per horizon step, overall (mean over steps), and per kind."""
    s = SuiteSummary()

    def agg(rows: list[dict[str, Any]]) -> tuple[dict, dict]:
        steps, overall = {}, {}
        for p in PREDICTORS:
            steps[p], overall[p] = {}, {}
            for key in SERIES:
                vals = [r[p][key] for r in rows if key in r[p]]
                if vals:
                    arr = np.asarray(vals, np.float64)
                    steps[p][key] = arr.mean(axis=0).tolist()
                    overall[p][key] = float(arr.mean())
                    overall[p][f"{key}_final"] = float(arr[:, -1].mean())
            for key in ("moved_correct", "contact_correct"):
                flat = [v for r in rows for v in r[p][key]]
                overall[p][key.replace("_correct", "_acc")] = float(np.mean(flat))
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
