"""Export a latentplay dataset folder to a Minari dataset, losslessly.

Each latentplay episode becomes one Minari episode:

=================  =======================================================================
observations       the frames ``(T+1, H, W, 3) uint8`` in ``Box(0, 255, (H, W, 3), uint8)``;
                   with ``include_state_obs`` a ``Dict(pixels=..., state=...)`` whose state
                   vector is recomputed per frame from the stored ``gt/state`` (exactly the
                   env's ``obs_type="state"`` observation)
actions            ``gt/actions`` ``(T, A) float32`` in the env's action Box
rewards            ``gt/rewards`` ``(T,)``
terminations       all False (the envs never terminate)
truncations        False, True at the last step (episodes are cut at ``steps``)
infos              the per-frame ground truth ``gt/<key>`` ``(T+1, ...)``: the env's info
                   entries at reset and after each step
episode metadata   ``seed`` (the env reset seed), ``latentplay_episode``, ``split``, ``policy``
                   (``dataset.storage.get_episode_metadata([i])``)
dataset metadata   ``latentplay``: source folder, env id and kwargs, seeds, splits, provenance
                   (``dataset.storage.metadata["latentplay"]``), and a readable ``description``
=================  =======================================================================

Not exported: the per-step reward terms (``gt/reward_*``), the full env state (``gt/state``,
for branching) and segmentation masks; they stay in the latentplay dataset.

Minari JPEG-encodes image spaces by default (lossy); the export stores raw arrays
(``jpeg_encoding=False``), so ``load_dataset`` gives back the frames byte for byte. Loading
needs no env: both spaces are stored in the dataset. The stored env spec (``obs_type`` and
``max_episode_steps`` matching the data) lets ``dataset.recover_environment()`` rebuild the env.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from latentplay.rollouts.format import SPLITS, EpisodeReader

# Minari's own pattern, with the namespace and the version required.
_NAMESPACE = r"[-_\w][-_\w/]*[-_\w]+"
DATASET_ID_RE = re.compile(rf"^(?P<namespace>{_NAMESPACE})/(?P<name>[-_\w]+?)-v(?P<version>\d+)$")

# Minari warns about every optional metadata field left out; these are expected here.
_QUIET = (
    r"`(author|author_email|code_permalink|eval_env)` is set to None",
    r"env_spec is None",
)


def check_dataset_id(dataset_id: str) -> str:
    """``dataset_id`` if it has Minari's ``namespace/name-v<version>`` form; else ValueError."""
    if not isinstance(dataset_id, str) or not DATASET_ID_RE.fullmatch(dataset_id):
        raise ValueError(
            f"dataset_id={dataset_id!r} is not a Minari dataset id; expected the form "
            "'namespace/name-v<version>', e.g. 'latentplay/push-v0'"
        )
    return dataset_id


@contextlib.contextmanager
def minari_datasets_path(path: str | Path | None) -> Iterator[None]:
    """Point ``MINARI_DATASETS_PATH`` at ``path`` for the block (nothing when None), then
    restore the variable as it was."""
    if path is None:
        yield
        return
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(Path(path).resolve())
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def _make_env(meta: dict[str, Any], obs_type: str) -> Any:
    """The collecting env, not reset (nothing rendered), with the data's obs_type and episode
    length in its spec: the spec Minari stores for ``recover_environment``."""
    import gymnasium as gym

    import latentplay.envs  # noqa: F401  (registers latentplay/*)

    spec = gym.spec(meta["env_id"])
    kwargs = {**spec.kwargs, **meta.get("env_kwargs", {}), "obs_type": obs_type}
    return gym.make(dataclasses.replace(spec, kwargs=kwargs, max_episode_steps=int(meta["steps"])))


def _state_observer(env: Any) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    """Stored state arrays (one frame of ``gt/state``) -> the env's ``obs_type="state"`` vector."""
    u = env.unwrapped

    def observe(arrays: dict[str, np.ndarray]) -> np.ndarray:
        u.set_state(u.state_from_arrays(arrays))
        return u.state_vector()

    return observe


def _episode(
    reader: EpisodeReader, i: int, observe: Callable[[dict[str, np.ndarray]], Any] | None
) -> tuple[Any, dict[str, Any]]:
    """(Minari EpisodeBuffer, episode metadata) of episode ``i`` of the reader."""
    from minari.data_collector import EpisodeBuffer

    frames = reader.frames(i)
    gt = reader.ground_truth(i)
    actions = np.asarray(gt["actions"], np.float32)
    t = actions.shape[0]
    if frames.shape[0] != t + 1 or gt["rewards"].shape != (t,) or t < 1:
        raise ValueError(
            f"{reader.root}: episode {reader.episodes[i][1]} has {frames.shape[0]} frames, "
            f"{t} actions and {gt['rewards'].shape[0]} rewards; expected T+1, T, T with T >= 1"
        )
    obs: Any = frames
    if observe is not None:
        st = gt["state"]
        states = [observe({k: v[j] for k, v in st.items()}) for j in range(t + 1)]
        obs = {"pixels": frames, "state": np.stack(states)}
    infos = {
        k: v
        for k, v in gt.items()
        if k != "masks" and isinstance(v, np.ndarray) and v.shape[:1] == (t + 1,)
    }
    truncations = np.zeros(t, bool)
    truncations[-1] = True
    attrs = gt["attrs"]
    buffer = EpisodeBuffer(
        seed=int(attrs["seed"]),
        observations=obs,
        actions=actions,
        rewards=np.asarray(gt["rewards"]),
        terminations=np.zeros(t, bool),
        truncations=truncations,
        infos=infos,
    )
    metadata = {
        "latentplay_episode": int(reader.episodes[i][1]),
        "split": str(attrs.get("split", reader.episodes[i][3])),
        "policy": str(attrs.get("policy", "")),
    }
    return buffer, metadata


def export_minari(
    root: str | Path,
    dataset_id: str,
    out_dir: str | Path | None = None,
    split: str | None = None,
    include_state_obs: bool = False,
) -> Path:
    """Write the latentplay dataset at ``root`` as the Minari dataset ``dataset_id``.

    ``out_dir`` is the Minari datasets root (``MINARI_DATASETS_PATH`` is set to it while
    writing and restored afterwards; None: Minari's default, ``$MINARI_DATASETS_PATH`` or
    ``~/.minari/datasets``). ``split`` exports only ``train``/``val``/``test`` episodes.
    ``include_state_obs`` adds the env's state vector beside the pixels (needs the env).
    An existing Minari dataset of that id raises FileExistsError: nothing is overwritten.
    On an error the partly written dataset is removed. Returns the Minari dataset folder.
    """
    check_dataset_id(dataset_id)
    if split is not None and split not in SPLITS:
        raise ValueError(f"split={split!r}; expected one of {list(SPLITS)} or None")
    _check_free(dataset_id, out_dir)  # fail before reading anything
    reader = EpisodeReader(root)
    try:
        meta = reader.meta
        if reader.imported:
            raise ValueError(
                f"{root} holds imported {reader.imported}, not episodes collected from an env: "
                "a Minari export needs the env's spaces and spec"
            )
        if not meta.get("complete", False):
            raise ValueError(
                f"{root}: the dataset is incomplete ({meta.get('episodes_written')} of "
                f"{meta.get('episodes')} episodes); finish it with resume=true first"
            )
        indices = reader.indices(split)
        if not indices:
            raise ValueError(f"{root}: no episodes in split {split!r}")
        env = _make_env(meta, "pixels_state" if include_state_obs else "pixels")
        try:
            space = env.observation_space
            pixels = space["pixels"] if include_state_obs else space
            h, w = int(meta["height"]), int(meta["width"])
            if pixels.shape != (h, w, 3) or pixels.dtype != np.uint8:
                raise ValueError(f"{root}: meta.json says {w}x{h} frames, the env gives {pixels}")
            if list(env.action_space.shape) != list(meta["action_space"]["shape"]):
                raise ValueError(
                    f"{root}: meta.json says actions of shape {meta['action_space']['shape']}, "
                    f"the env acts in {env.action_space}"
                )
            observe = _state_observer(env) if include_state_obs else None
            return _write(
                reader, indices, dataset_id, out_dir, env, observe, split, include_state_obs
            )
        finally:
            env.close()
    finally:
        reader.close()


def _check_free(dataset_id: str, out_dir: str | Path | None) -> Path:
    """The folder the Minari dataset would take; FileExistsError when it is taken."""
    from minari.storage import get_dataset_path

    with minari_datasets_path(out_dir):
        path = get_dataset_path(dataset_id)
    if path.exists():
        raise FileExistsError(
            f"Minari dataset {dataset_id!r} already exists at {path}; choose another "
            "dataset_id (or version), or delete it first (`minari delete`)"
        )
    return path


def _write(
    reader: EpisodeReader,
    indices: list[int],
    dataset_id: str,
    out_dir: str | Path | None,
    env: Any,
    observe: Callable[[dict[str, np.ndarray]], Any] | None,
    split: str | None,
    include_state_obs: bool,
) -> Path:
    import minari

    meta = reader.meta
    source = str(reader.root.resolve())
    info = {
        "source": source,
        "env_id": meta["env_id"],
        "env_kwargs": meta.get("env_kwargs", {}),
        "seed": meta.get("seed"),
        "steps": meta.get("steps"),
        "split": split,
        "episodes": [int(reader.episodes[i][1]) for i in indices],
        "splits": meta.get("splits"),
        "camera": meta.get("camera"),
        "fps": meta.get("fps"),
        "policy": meta.get("policy"),
        "include_state_obs": include_state_obs,
        "format_version": meta.get("format_version"),
        "package_version": meta.get("package_version"),
        "git_commit": meta.get("git_commit"),
    }
    obs_text = (
        "Dict(pixels=the frames, state=the env's state vector)"
        if include_state_obs
        else "the frames"
    )
    description = (
        f"latentplay rollouts of {meta['env_id']} ({meta['width']}x{meta['height']} frames from "
        f"camera {meta.get('camera')!r}, {meta.get('steps')} steps per episode, "
        f"{'all splits' if split is None else f'split {split!r}'}), exported from {source}. "
        f"Observations are {obs_text}, stored losslessly; infos hold the per-frame ground "
        "truth; episode metadata holds latentplay_episode, seed and split; metadata['latentplay'] "
        "the source dataset."
    )
    policy = meta.get("policy") or {}
    algorithm = str(policy.get("_target_", "unknown")).rsplit(".", 1)[-1]

    with minari_datasets_path(out_dir):
        path = _check_free(dataset_id, None)
        try:
            with warnings.catch_warnings():
                for msg in _QUIET:
                    warnings.filterwarnings("ignore", message=msg, category=UserWarning)
                dataset = minari.create_dataset_from_buffers(
                    dataset_id,
                    buffer=[],
                    env=env,  # an instance: Minari stores env.spec and builds nothing
                    observation_space=env.observation_space,
                    action_space=env.action_space,
                    algorithm_name=algorithm,
                    description=description,
                    jpeg_encoding=False,
                )
            episode_meta = []
            for i in indices:  # one episode in memory at a time
                buffer, ep_meta = _episode(reader, i, observe)
                dataset.update_dataset_from_buffer([buffer])
                episode_meta.append(ep_meta)
            dataset.storage.update_episode_metadata(episode_meta, range(len(indices)))
            dataset.storage.update_metadata({"latentplay": info})
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)  # no half-written dataset under that id
            raise
    return path
