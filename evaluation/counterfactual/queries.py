"""What a counterfactual query is, and how query files (``configs/query/*.yaml``) are read."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import yaml

KINDS = ("move_object", "add_object", "remove_object", "set_mass", "set_friction", "actions")
ENVS = ("push", "push_multi")  # the scenes a query can start in (branches.make_env builds them)


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


def query_files(folder: str | Path, names: list[str] | None = None) -> list[Path]:
    """The query files of ``folder`` (``<name>.yaml``): all of them (``names=None``), or those
    named, in that order; an unknown name is an error listing the known ones."""
    folder = Path(folder)
    files = sorted(folder.glob("*.yaml"))
    if names is None:
        return files
    known = {f.stem: f for f in files}
    missing = [n for n in names if n not in known]
    if missing:
        raise ValueError(f"queries {missing} not in {folder}; known: {sorted(known)}")
    return [known[n] for n in names]
