"""A known-answer toy dataset: a sprite moved by true global and local actions.

A square sprite on a fixed striped background is translated each step by a true global action
(integer pixel shift in [-max_shift, max_shift]^2, reflected at the borders) and takes the
colour of the true local action of the step (one of ``num_local``). A model
that learns from these frames alone should recover both: its global shifts map linearly onto
the true shifts, and its local actions match the true ones up to relabelling. Written in the
dataset format of :mod:`latentplay.rollouts.format` (ground truth under ``gt/``: ``shift``
(T, 2) px, ``local`` (T,), ``center`` (T+1, 2) px).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from latentplay.rollouts.format import FORMAT, FORMAT_VERSION, Episode, ShardWriter, split_of
from latentplay.utils.io import provenance, write_json_atomic

FRACTIONS = (0.7, 0.15, 0.15)  # train, val, test
LIGHTS = np.array([[230, 40, 40], [40, 200, 60], [50, 90, 240], [240, 220, 40]], np.uint8)


def _background(size: int) -> np.ndarray:
    y, x = np.mgrid[:size, :size]
    bg = np.empty((size, size, 3), np.uint8)
    bg[..., 0] = 90 + 40 * ((x // 4) % 2)
    bg[..., 1] = 110 + 30 * ((y // 4) % 2)
    bg[..., 2] = 120
    return bg


def _draw(bg: np.ndarray, center: np.ndarray, local: int, sprite: int) -> np.ndarray:
    img = bg.copy()
    r = sprite // 2
    cx, cy = int(center[0]), int(center[1])
    img[cy - r : cy + r, cx - r : cx + r] = LIGHTS[local]  # the local action sets the colour
    img[cy - 1 : cy + 1, cx - 1 : cx + 1] = (250, 250, 250)  # a white core
    return img


def make_toy_dataset(
    root: str | Path,
    episodes: int = 64,
    steps: int = 16,
    size: int = 32,
    sprite: int = 8,
    max_shift: int = 2,
    num_local: int = 3,
    seed: int = 0,
) -> Path:
    if not 1 <= num_local <= len(LIGHTS):
        raise ValueError(f"num_local={num_local}; expected 1..{len(LIGHTS)}")
    root, writer = Path(root), _writer(root)
    rng = np.random.default_rng(seed)
    bg = _background(size)
    lo, hi = sprite // 2, size - sprite // 2
    env_kwargs = {"size": size, "sprite": sprite, "max_shift": max_shift, "num_local": num_local}
    for e in range(episodes):
        center = rng.integers(lo, hi, 2).astype(np.int64)
        local = int(rng.integers(num_local))
        frames, centers, shifts, locals_ = (
            [_draw(bg, center, local, sprite)],
            [center.copy()],
            [],
            [],
        )
        for _ in range(steps):
            shift = rng.integers(-max_shift, max_shift + 1, 2)
            new = center + shift
            for d in range(2):  # reflect at the borders
                if not lo <= new[d] < hi:
                    shift[d] = -shift[d]
                    new[d] = center[d] + shift[d]
            center, local = new, int(rng.integers(num_local))
            frames.append(_draw(bg, center, local, sprite))
            centers.append(center.copy())
            shifts.append(shift.astype(np.float64))
            locals_.append(local)
        writer.add(
            _episode(
                e,
                seed,
                frames,
                np.concatenate([np.stack(shifts), np.array(locals_)[:, None]], axis=1),
                per_frame={"center": np.stack(centers).astype(np.float64)},
                per_step={"shift": np.stack(shifts), "local": np.array(locals_)},
            )
        )
    _finish(root, writer, "toy/sprite", seed, steps, episodes, size, env_kwargs)
    return root


def _writer(root: str | Path) -> ShardWriter:
    """The single shard writer of a toy dataset in ``root``."""
    (Path(root) / "shards").mkdir(parents=True, exist_ok=True)
    return ShardWriter(Path(root) / "shards", 0)


def _episode(
    index: int,
    seed: int,
    frames: list[np.ndarray],
    actions: np.ndarray,
    per_frame: dict[str, np.ndarray],
    per_step: dict[str, np.ndarray],
) -> Episode:
    """A toy episode in the dataset format: its split from ``index`` and ``seed``, no rewards,
    no simulator state."""
    return Episode(
        index=index,
        seed=seed,
        split=split_of(index, seed, FRACTIONS),
        policy="toy",
        frames=np.stack(frames),
        actions=actions.astype(np.float32),
        rewards=np.zeros(len(actions)),
        per_frame=per_frame,
        per_step=per_step,
        state={},
    )


def _finish(
    root: Path,
    writer: ShardWriter,
    env_id: str,
    seed: int,
    steps: int,
    episodes: int,
    size: int,
    env_kwargs: dict,
) -> None:
    """Close the single shard and write ``meta.json`` with the splits."""
    shard = writer.close()
    splits = {
        s: [i for i, sp in zip(shard["episode_index"], shard["splits"], strict=True) if sp == s]
        for s in ("train", "val", "test")
    }
    write_json_atomic(
        root / "meta.json",
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "env_id": env_id,
            "env_kwargs": env_kwargs,
            "seed": seed,
            "steps": steps,
            "episodes": episodes,
            "complete": True,
            "width": size,
            "height": size,
            "fps": 10,
            "camera": "fixed",
            **provenance(),
            "shards": [shard],
            "splits": splits,
        },
    )


AGENT = np.array([245, 245, 245], np.uint8)


def _push_step(
    agent: np.ndarray, objects: np.ndarray, move: np.ndarray, half: int, lo: int, hi: int
) -> tuple[np.ndarray, np.ndarray]:
    """The agent moves by ``move``; an object it would overlap is pushed along by the same move
    (and an object that one overlaps, in turn). A move that would push an object out of the
    frame is cancelled: the agent stays put."""
    new_agent, new_objects = agent + move, objects.copy()
    if not np.all((lo <= new_agent) & (new_agent < hi)):
        return agent, objects
    movers = [new_agent]
    for _ in range(len(objects)):
        pushed = False
        for i, o in enumerate(new_objects):
            if any(np.all(np.abs(o - m) < 2 * half) for m in movers) and not np.array_equal(
                o, objects[i] + move
            ):
                new_objects[i] = o + move
                movers.append(new_objects[i])
                pushed = True
        if not pushed:
            break
    if not np.all((lo <= new_objects) & (new_objects < hi)):
        return agent, objects
    return new_agent, new_objects


def make_push_toy_dataset(
    root: str | Path,
    episodes: int = 64,
    steps: int = 16,
    size: int = 32,
    sprite: int = 6,
    max_shift: int = 2,
    num_objects: int = 2,
    seed: int = 0,
    absent: float = 0.0,
) -> Path:
    """A known-answer scene for object-centric models: a white agent square moved by the true
    action (an integer shift in ``[-max_shift, max_shift]^2``, repeated for a few steps so that
    the agent travels) and ``num_objects`` coloured squares that move only when the agent (or
    an object it pushes) runs into them. ``absent``: the chance that an episode lacks its last
    object (scenes of varied object sets). Ground truth: ``action`` (T, 2) px, ``agent``
    (T+1, 2) and ``objects`` (T+1, n, 2) pixel centres (NaN for an absent object), ``present``
    (T+1, n) bool."""
    if not 1 <= num_objects <= len(LIGHTS):
        raise ValueError(f"num_objects={num_objects}; expected 1..{len(LIGHTS)}")
    if not 0.0 <= absent <= 1.0:
        raise ValueError(f"absent={absent}; expected a probability in [0, 1]")
    root, writer = Path(root), _writer(root)
    rng = np.random.default_rng(seed)
    bg = _background(size)
    half = sprite // 2
    lo, hi = half, size - half

    def draw(agent: np.ndarray, objects: np.ndarray, present: np.ndarray) -> np.ndarray:
        img = bg.copy()
        colours = [c for c, p in zip(LIGHTS[: len(present)], present, strict=True) if p]
        for colour, (cx, cy) in zip([*colours, AGENT], [*objects, agent], strict=True):
            img[cy - half : cy + half, cx - half : cx + half] = colour
        return img

    def full(objects: np.ndarray, present: np.ndarray) -> np.ndarray:
        out = np.full((len(present), 2), np.nan)
        out[present] = objects
        return out

    for e in range(episodes):
        spots: list[np.ndarray] = []
        while len(spots) < num_objects + 1:  # no two squares overlap at the start
            xy = rng.integers(lo, hi, 2)
            if all(np.abs(xy - t).max() >= 2 * half + 1 for t in spots):
                spots.append(xy)
        present = np.ones(num_objects, bool)
        if absent > 0 and rng.random() < absent:  # drawn only then: other toys keep their stream
            present[-1] = False
        agent, objects = spots[-1].astype(np.int64), np.array(spots[:-1], np.int64)[present]
        frames, agents = [draw(agent, objects, present)], [agent]
        objs, moves = [full(objects, present)], []
        # Drawn and redrawn at t = 0: this draw only advances the seeded stream, which fixes the
        # episodes that tests/test_keypoints.py's bars were measured on (see docs/BENCHMARKS.md).
        move = rng.integers(-max_shift, max_shift + 1, 2)
        for t in range(steps):
            if t % 3 == 0:  # a new heading every 3 steps
                move = rng.integers(-max_shift, max_shift + 1, 2)
            new_agent, objects = _push_step(agent, objects, move, half, lo, hi)
            moves.append((new_agent - agent).astype(np.float64))
            agent = new_agent
            frames.append(draw(agent, objects, present))
            agents.append(agent)
            objs.append(full(objects, present))
        actions = np.stack(moves)
        writer.add(
            _episode(
                e,
                seed,
                frames,
                actions,
                per_frame={
                    "agent": np.stack(agents).astype(np.float64),
                    "objects": np.stack(objs).astype(np.float64),
                    "present": np.repeat(present[None], len(frames), 0),
                },
                per_step={"action": actions},
            )
        )
    env_kwargs = {
        "size": size,
        "sprite": sprite,
        "max_shift": max_shift,
        "num_objects": num_objects,
        **({"absent": absent} if absent else {}),
    }
    _finish(root, writer, "toy/push", seed, steps, episodes, size, env_kwargs)
    return root
