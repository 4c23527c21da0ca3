"""What a counterfactual query is, and how query files (``configs/query/*.yaml``, or a user's
own YAML files anywhere) are read and checked."""

from __future__ import annotations

from dataclasses import dataclass, fields
from numbers import Real
from pathlib import Path
from typing import Any

import yaml

from latentplay.envs.arm import MAX_OBJECTS

KINDS = ("move_object", "add_object", "remove_object", "set_mass", "set_friction", "actions")
ENVS = ("push", "push_multi")  # the scenes a query can start in (branches.make_env builds them)


class ImpossibleQuery(ValueError):
    """The intervention cannot be carried out in this query's scene (an object moved off the
    table, a spot "ahead" that lands on another object, an object the scene does not have).
    A suite reports the query as skipped, with this reason, and answers the others."""


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
        for key in ("object", "toward"):
            i = getattr(self, key)
            if i is not None and not 0 <= i < MAX_OBJECTS:
                raise ValueError(f"{key}={i}; expected an object index in 0..{MAX_OBJECTS - 1}")
        for key in ("factor", "value"):
            v = getattr(self, key)
            if self.kind in ("set_mass", "set_friction") and v is not None and v <= 0:
                raise ValueError(f"{key}={v}; expected a positive number for {self.kind}")


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


# The form each key of a query file takes, for the error that names it.
_PAIR = "a pair of numbers [x, y]"
_FORMS: dict[str, tuple[str, str]] = {
    # key: (kind, what the error says is expected)
    "name": ("str", "a string"),
    "env": ("str", f"one of {list(ENVS)}"),
    "seed": ("int", "an integer"),
    "n_objects": ("int?", "an integer or null"),
    "lead": ("int", "an integer >= 0"),
    "horizon": ("int", "an integer >= 1"),
    "max_warmup": ("int", "an integer"),
    "seeds": ("ints", "a non-empty list of integers"),
    "kind": ("str", f"one of {list(KINDS)}"),
    "object": ("int", "an object index (integer)"),
    "xy": ("pair?", _PAIR),
    "offset": ("pair?", _PAIR),
    "direction": ("pair?", _PAIR),
    "sideways": ("num?", "a number of metres"),
    "path_step": ("int?", "an integer step"),
    "factor": ("num?", "a number"),
    "value": ("num?", "a number"),
    "toward": ("int?", "an object index (integer)"),
    "ahead": ("num?", "a number of metres"),
    "speed": ("num", "a number with 0 < |speed| <= 1"),
}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool)


def _checked(path: Path, where: str, key: str, v: Any) -> Any:
    """``v`` if it has the form of ``key`` (a pair comes back as a tuple); else an error
    naming the file, the key, the value and the expected form."""
    kind, expected = _FORMS[key]
    optional = kind.endswith("?")
    kind = kind.rstrip("?")
    ok = (
        (optional and v is None)
        or (kind == "str" and isinstance(v, str))
        or (kind == "int" and _is_int(v))
        or (kind == "num" and _is_num(v))
        or (kind == "ints" and isinstance(v, list) and bool(v) and all(map(_is_int, v)))
        or (kind == "pair" and isinstance(v, list) and len(v) == 2 and all(map(_is_num, v)))
    )
    if not ok:
        raise ValueError(f"{path}: {where}{key}={v!r}; expected {expected}")
    return tuple(float(x) for x in v) if kind == "pair" and v is not None else v


def load_queries(path: str | Path) -> list[Query]:
    """A query YAML: ``name``, ``intervention: {kind: ..., ...}``, the other :class:`Query`
    fields, and optionally ``seeds: [...]`` for one query per seed (named ``name/s<seed>``).
    A key of the wrong form is an error naming the file, the key and the form expected."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"query file {path} does not exist; expected a YAML file")
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
    if not isinstance(iv_raw, dict) or "kind" not in iv_raw:
        raise ValueError(
            f"{path}: intervention={iv_raw!r}; expected a mapping with a 'kind' "
            f"(one of {list(KINDS)}) and its keys"
        )
    if set(iv_raw) - iv_allowed:
        raise ValueError(
            f"{path}: unknown intervention keys {sorted(set(iv_raw) - iv_allowed)}; "
            f"expected some of {sorted(iv_allowed)}"
        )
    raw = {k: _checked(path, "", k, v) for k, v in raw.items()}
    iv_raw = {k: _checked(path, "intervention.", k, v) for k, v in iv_raw.items()}
    try:
        iv = Intervention(**iv_raw)
        seeds = raw.pop("seeds", None)
        if seeds is None:
            return [Query(intervention=iv, **raw)]
        base = raw.pop("name")
        return [Query(name=f"{base}/s{s}", intervention=iv, seed=s, **raw) for s in seeds]
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e


def query_files(folder: str | Path, names: str | list[str] | None = None) -> list[Path]:
    """The query files to run. ``names=None``: every ``<name>.yaml`` of ``folder`` (the
    package's queries). Else each entry is the name of one of them, or the path of a user's
    own YAML file or of a folder of them (relative to the working directory), in that order;
    an entry that is neither is an error listing the known names."""
    folder = Path(folder)
    files = sorted(folder.glob("*.yaml"))
    if names is None:
        return files
    if isinstance(names, str):
        names = [names]
    known = {f.stem: f for f in files}
    out: list[Path] = []
    for n in names:
        p = Path(str(n)).expanduser()
        if str(n) in known:
            out.append(known[str(n)])
        elif p.is_dir():
            found = sorted([*p.glob("*.yaml"), *p.glob("*.yml")])
            if not found:
                raise ValueError(f"queries: folder {p} holds no .yaml query files")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise ValueError(
                f"queries: {n!r} is neither a query of {folder} ({sorted(known)}) nor an "
                "existing YAML file or folder"
            )
    return out
