"""Frame conversions, in one place.

Two layouts meet in this package: ``(..., H, W, 3) uint8`` arrays (env renders, datasets,
videos, the object detector) and ``(..., 3, H, W)`` tensors (models), uint8 in [0, 255] or
float in [0, 1]. Float -> uint8 always clips to [0, 1] and rounds to the nearest level, so a
frame that went uint8 -> float -> uint8 comes back unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _is_tensor(x: Any) -> bool:
    return hasattr(x, "detach")  # a torch.Tensor, without importing torch here


def to_float_frames(frames: Any) -> Any:
    """uint8 [0, 255] or float [0, 1] frames (tensor) -> float32 in [0, 1], same layout."""
    import torch

    if frames.dtype == torch.uint8:
        return frames.float().div_(255.0)
    if not frames.is_floating_point():
        raise TypeError(f"frames of dtype {frames.dtype}; expected uint8 or float in [0, 1]")
    return frames.float()


def to_uint8(frames: Any) -> Any:
    """Float frames in [0, 1] (values outside are clipped) -> uint8, rounded; uint8 frames
    pass through. Arrays stay arrays, tensors stay tensors (device and layout unchanged)."""
    if _is_tensor(frames):
        import torch

        if frames.dtype == torch.uint8:
            return frames
        if not frames.is_floating_point():
            raise TypeError(f"frames of dtype {frames.dtype}; expected uint8 or float in [0, 1]")
        return (frames.detach().clamp(0, 1) * 255).round().to(torch.uint8)
    x = np.asarray(frames)
    if x.dtype == np.uint8:
        return x
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"frames of dtype {x.dtype}; expected uint8 or float in [0, 1]")
    return np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def to_numpy_frames(frames: Any) -> np.ndarray:
    """Model frames ``(..., 3, H, W)`` (tensor, uint8 or float in [0, 1], any device) ->
    ``(..., H, W, 3) uint8`` array on the host, for videos, detectors and metrics."""
    if frames.ndim < 3 or frames.shape[-3] != 3:
        raise ValueError(f"frames of shape {tuple(frames.shape)}; expected (..., 3, H, W)")
    return to_uint8(frames).movedim(-3, -1).cpu().numpy()


def to_tensor_frames(frames: np.ndarray, device: Any = None) -> Any:
    """``(..., H, W, 3)`` array (env renders, dataset frames) -> ``(..., 3, H, W)`` tensor of
    the same dtype, on ``device`` (a view of the array when it stays on the CPU)."""
    import torch

    x = np.asarray(frames)
    if x.ndim < 3 or x.shape[-1] != 3:
        raise ValueError(f"frames of shape {x.shape}; expected (..., H, W, 3)")
    t = torch.from_numpy(x).movedim(-1, -3)
    return t if device is None else t.to(device)
