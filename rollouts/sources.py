"""Frames from outside the simulator: video files, folders of frames, Minari episodes.

An *item* is one source unit: a video file (mp4, webm, avi, mov, mkv by ffmpeg; gif by
Pillow), a folder of PNG/JPEG frames (in natural name order: ``f2.png`` before ``f10.png``),
or one episode of a Minari dataset with pixel observations. Reading an item streams its frames
through a :class:`FrameTransform`, so a long high-resolution video never sits in memory at
full size. A bad item raises :class:`SourceError` with the reason; the importer skips and lists
it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

VIDEO_SUFFIXES = (".mp4", ".webm", ".avi", ".mov", ".mkv", ".m4v", ".gif")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
CROPS = ("center", "pad", "stretch")


class SourceError(Exception):
    """One item cannot be imported (the message says why); the others can."""


@dataclass(frozen=True)
class FrameTransform:
    """Frames of any size -> ``size`` x ``size`` RGB uint8. ``crop``: ``center`` (the central
    square), ``pad`` (black borders to a square) or ``stretch`` (resize as is); then area
    interpolation when shrinking, bilinear when growing. A frame already ``size`` x ``size``
    passes untouched (byte for byte)."""

    size: int
    crop: str = "center"

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size < 8:
            raise ValueError(f"size={self.size!r}; expected an integer side of at least 8 pixels")
        if self.crop not in CROPS:
            raise ValueError(f"crop={self.crop!r}; expected one of {list(CROPS)}")

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        import cv2

        h, w = frame.shape[:2]
        if (h, w) == (self.size, self.size):
            return frame
        if self.crop == "center":
            side = min(h, w)
            y, x = (h - side) // 2, (w - side) // 2
            frame = frame[y : y + side, x : x + side]
        elif self.crop == "pad":
            side = max(h, w)
            y, x = (side - h) // 2, (side - w) // 2
            frame = np.pad(frame, ((y, side - h - y), (x, side - w - x), (0, 0)))
        shrink = frame.shape[0] * frame.shape[1] > self.size**2
        mode = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        return cv2.resize(np.ascontiguousarray(frame), (self.size, self.size), interpolation=mode)

    def describe(self) -> dict[str, Any]:
        how = {
            "center": "the central square of each frame",
            "pad": "each frame padded with black to a square",
            "stretch": "each frame as it is (aspect ratio not kept)",
        }[self.crop]
        return {
            "size": self.size,
            "crop": self.crop,
            "description": f"{how}, resized to {self.size}x{self.size} (OpenCV: area "
            "interpolation when shrinking, bilinear when growing; untouched when already "
            "that size)",
        }


@dataclass(frozen=True)
class Item:
    """One source unit; ``name`` identifies it in splits, resume checks and error lists."""

    name: str  # path relative to the source folder, or "episode_<id>" of a Minari dataset
    kind: str  # video | gif | frames | minari
    path: Path | None = None
    episode: int | None = None  # Minari episode id

    def fingerprint(self) -> str:
        """What must not change between a run and its resume (name, and size of a file)."""
        if self.path is not None and self.path.is_file():
            return f"{self.name}:{self.path.stat().st_size}"
        if self.path is not None and self.path.is_dir():
            return f"{self.name}:{len(_images(self.path))}"
        return self.name


@dataclass
class Clip:
    """An item's frames after the transform, with what the source really has beside them."""

    frames: np.ndarray  # (T, size, size, 3) uint8
    fps: float | None
    source_size: tuple[int, int]  # (width, height) before the transform
    actions: np.ndarray | None = None  # (T - 1, A): Minari only
    rewards: np.ndarray | None = None  # (T - 1,)


def _natural(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _images(folder: Path) -> list[Path]:
    return sorted(
        (
            p
            for p in folder.iterdir()
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        ),
        key=lambda p: _natural(p.name),
    )


def _video_item(name: str, path: Path) -> Item:
    return Item(name, "gif" if path.suffix.lower() == ".gif" else "video", path)


def list_items(source: str | Path) -> list[Item]:
    """Every video file and every folder of frames under ``source`` (searched recursively; a
    single video file is a source too), in name order. Error when there is none."""
    root = Path(source)
    if not root.exists():
        raise FileNotFoundError(f"source={str(source)!r} does not exist")
    if root.is_file():
        if root.suffix.lower() not in VIDEO_SUFFIXES:
            raise ValueError(
                f"source={str(source)!r} is not a video; expected a folder, or a file ending in "
                f"one of {', '.join(VIDEO_SUFFIXES)}"
            )
        return [_video_item(root.name, root)]
    items, seen = [], set()
    for folder, dirs, files in os.walk(root, followlinks=True):  # symlinked folders too
        real = os.path.realpath(folder)
        if real in seen:  # a symlink loop, or a folder linked twice
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]  # hidden folders
        here = Path(folder)
        visible = [f for f in files if not f.startswith(".")]
        for f in visible:
            if Path(f).suffix.lower() in VIDEO_SUFFIXES:
                items.append(_video_item((here / f).relative_to(root).as_posix(), here / f))
        if any(Path(f).suffix.lower() in IMAGE_SUFFIXES for f in visible):
            items.append(Item(here.relative_to(root).as_posix(), "frames", here))
    items.sort(key=lambda it: _natural(it.name))
    if not items:
        raise ValueError(
            f"source={str(source)!r}: no videos ({', '.join(VIDEO_SUFFIXES)}) and no folders "
            f"of frames ({', '.join(IMAGE_SUFFIXES)}) in it"
        )
    return items


def read_item(item: Item, transform: FrameTransform, every: int = 1) -> Clip:
    """The item's frames (every ``every``-th one), transformed; SourceError when it cannot
    be read."""
    if item.kind == "frames":
        frames, fps, size = _read_folder(item.path, transform, every)
    elif item.kind == "gif":
        frames, fps, size = _read_gif(item.path, transform, every)
    elif item.kind == "video":
        frames, fps, size = _read_video(item.path, transform, every)
    else:
        raise ValueError(f"item {item.name!r}: {item.kind!r} items are read by MinariSource")
    if not frames:
        raise SourceError("no frames (a zero-length video)")
    return Clip(np.stack(frames), None if fps is None else fps / every, size)


def _read_folder(
    folder: Path, transform: FrameTransform, every: int
) -> tuple[list[np.ndarray], float | None, tuple[int, int]]:
    import cv2

    frames, size, first = [], None, None
    for path in _images(folder)[::every]:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise SourceError(f"{path.name} cannot be read as an image")
        shape = (bgr.shape[1], bgr.shape[0])
        if size is None:
            size, first = shape, path.name
        elif shape != size:
            raise SourceError(
                f"frames of different sizes: {first} is {size[0]}x{size[1]}, {path.name} is "
                f"{shape[0]}x{shape[1]}"
            )
        frames.append(transform(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    return frames, None, size or (0, 0)


def _read_gif(
    path: Path, transform: FrameTransform, every: int
) -> tuple[list[np.ndarray], float | None, tuple[int, int]]:
    from PIL import Image, ImageSequence

    _check_not_empty(path)
    try:
        with Image.open(path) as im:
            size = im.size
            frames, durations = [], []
            for i, frame in enumerate(ImageSequence.Iterator(im)):
                durations.append(frame.info.get("duration", 0))
                if i % every == 0:
                    frames.append(transform(np.asarray(frame.convert("RGB"))))
    except (OSError, SyntaxError, ValueError) as e:  # Pillow's errors for damaged files
        raise SourceError(f"cannot be read as a GIF ({e})") from e
    ms = float(np.median(durations)) if durations else 0.0
    return frames, (1000.0 / ms if ms > 0 else None), size


def _read_video(
    path: Path, transform: FrameTransform, every: int
) -> tuple[list[np.ndarray], float | None, tuple[int, int]]:
    import imageio_ffmpeg

    _check_not_empty(path)
    frames: list[np.ndarray] = []
    gen: Iterator[Any] = imageio_ffmpeg.read_frames(str(path))
    try:
        meta = next(gen)
        w, h = meta["size"]
        for i, raw in enumerate(gen):
            if i % every == 0:
                frames.append(transform(np.frombuffer(raw, np.uint8).reshape(h, w, 3)))
    except (OSError, RuntimeError, StopIteration) as e:
        raise SourceError(_ffmpeg_reason(str(e))) from e
    finally:
        gen.close()
    fps = meta.get("fps")
    return frames, (float(fps) if fps else None), (int(w), int(h))


def _check_not_empty(path: Path) -> None:
    if path.stat().st_size == 0:
        raise SourceError("empty file (0 bytes)")


def _ffmpeg_reason(message: str) -> str:
    """ffmpeg's failure, in one line a user can act on."""
    if "no decoder found" in message or "Decoder not found" in message:
        tag = re.search(r"Video: (?:none \((\w+) / 0x|(\w+))", message)
        codec = f" ({tag.group(1) or tag.group(2)})" if tag else ""
        return f"unsupported codec{codec}: this ffmpeg has no decoder for it"
    if "Invalid data found" in message or "moov atom not found" in message:
        return "not a readable video (ffmpeg: invalid data; damaged or not a video file)"
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    return f"ffmpeg cannot decode it ({lines[-1] if lines else 'no message'})"


class MinariSource:
    """The episodes of a Minari dataset whose observations are images ``(H, W, 3) uint8``, or
    a Dict holding them under ``pixels_key``; actions and rewards come along as they are."""

    def __init__(
        self, dataset_id: str, datasets_path: str | Path | None = None, pixels_key: str = "pixels"
    ) -> None:
        import minari

        from latentplay.rollouts.minari_export import minari_datasets_path

        self.dataset_id, self.pixels_key = dataset_id, pixels_key
        self.datasets_path = None if datasets_path is None else str(Path(datasets_path).resolve())
        with minari_datasets_path(datasets_path):
            try:
                self.dataset = minari.load_dataset(dataset_id)
            except (FileNotFoundError, ValueError) as e:
                where = datasets_path or "Minari's default datasets path"
                raise FileNotFoundError(
                    f"Minari dataset {dataset_id!r} not found in {where} ({e})"
                ) from e
        self._check_space()

    def _check_space(self) -> None:
        from gymnasium import spaces

        space = self.dataset.observation_space
        if isinstance(space, spaces.Dict):
            if self.pixels_key not in space.spaces:
                raise ValueError(
                    f"Minari dataset {self.dataset_id!r}: observations are a Dict with keys "
                    f"{sorted(space.spaces)}; pixels_key={self.pixels_key!r} is not one of them"
                )
            space = space.spaces[self.pixels_key]
        shape = getattr(space, "shape", None)
        if (
            not isinstance(space, spaces.Box)
            or len(shape) != 3
            or shape[-1] != 3
            or space.dtype != np.uint8
        ):
            raise ValueError(
                f"Minari dataset {self.dataset_id!r}: observations {space} are not RGB images; "
                "expected Box(0, 255, (H, W, 3), uint8), or a Dict holding one under pixels_key"
            )

    @property
    def action_space(self) -> dict[str, Any] | None:
        space = self.dataset.action_space
        if not hasattr(space, "low"):
            return None
        return {
            "shape": list(space.shape),
            "low": np.asarray(space.low).tolist(),
            "high": np.asarray(space.high).tolist(),
        }

    def items(self) -> list[Item]:
        ids = sorted(int(i) for i in self.dataset.episode_indices)
        if not ids:
            raise ValueError(f"Minari dataset {self.dataset_id!r} has no episodes")
        return [Item(f"episode_{i:06d}", "minari", episode=i) for i in ids]

    def read(self, item: Item, transform: FrameTransform, every: int = 1) -> Clip:
        (ep,) = self.dataset.iterate_episodes(episode_indices=[item.episode])
        obs = ep.observations
        pixels = np.asarray(obs[self.pixels_key] if isinstance(obs, dict) else obs)
        if len(pixels) == 0:
            raise SourceError("no frames")
        size = (int(pixels.shape[2]), int(pixels.shape[1]))
        keep = np.arange(0, len(pixels), every)
        frames = np.stack([transform(f) for f in pixels[keep]])
        actions, rewards = np.asarray(ep.actions), np.asarray(ep.rewards)
        if every > 1:  # the actions between kept frames, summed rewards
            actions = None  # several actions per kept step have no single label
            rewards = (
                np.add.reduceat(rewards[: keep[-1]], keep[:-1]) if len(keep) > 1 else rewards[:0]
            )
        return Clip(frames, None, size, actions, rewards)
