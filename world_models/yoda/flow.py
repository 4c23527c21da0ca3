"""Dense optical flow from the video itself (OpenCV, classical: no labels, no downloads).

YODA's controls are sparse samples of the optical flow between consecutive frames. The original
takes it from RAFT (downloaded weights); here it is OpenCV's Farneback (default) or DIS, computed
on the fly from the frames a model trains on, never from the simulator. Farneback is the
default because its flow at the end effector follows the true end-effector motion more closely
(docs/BENCHMARKS.md).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from latentplay.utils.frames import to_numpy_frames

METHODS = ("farneback", "dis")

# pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, flags (tuned on 64x64 frames)
_FARNEBACK = (0.5, 3, 9, 3, 5, 1.1, 0)


def _gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)


class FlowEstimator:
    """``(prev, next) -> flow`` in pixels of the frames, (dx, dy) with +x right and +y down.

    Frames are uint8 ``(..., H, W, 3)`` arrays, or tensors ``(..., 3, H, W)`` uint8 or float in
    [0, 1]; the result is a float32 ``(..., 2, H, W)`` tensor (for tensors) or array.

    Vectors shorter than ``min_magnitude`` pixels are set to zero: Farneback reports ~0.1 px
    on identical frames, and a sparsifier drawing by magnitude should not pick such noise.
    """

    def __init__(self, method: str = "farneback", min_magnitude: float = 0.25) -> None:
        if method not in METHODS:
            raise ValueError(f"flow method={method!r}; expected one of {list(METHODS)}")
        self.method, self.min_magnitude = method, min_magnitude
        self._dis = (
            cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
            if method == "dis"
            else None
        )

    def pair(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        """One pair of uint8 ``(H, W, 3)`` frames -> ``(H, W, 2)`` float32 flow."""
        a, b = _gray(prev), _gray(nxt)
        if self._dis is not None:
            flow = self._dis.calc(a, b, None)
        else:
            flow = cv2.calcOpticalFlowFarneback(a, b, None, *_FARNEBACK)
        flow[np.hypot(flow[..., 0], flow[..., 1]) < self.min_magnitude] = 0.0
        return flow

    def __call__(self, prev, nxt):
        if isinstance(prev, torch.Tensor):
            device = prev.device
            a, b = (to_numpy_frames(x) for x in (prev, nxt))
            out = torch.from_numpy(self._batch(a, b)).movedim(-1, -3)
            return out.contiguous().to(device)
        a, b = np.asarray(prev), np.asarray(nxt)
        if a.dtype != np.uint8 or a.shape != b.shape or a.shape[-1] != 3:
            raise ValueError(
                f"frames {a.dtype}{a.shape} and {b.dtype}{b.shape}; expected two uint8 arrays "
                "of the same shape (..., H, W, 3)"
            )
        return np.moveaxis(self._batch(a, b), -1, -3)

    def _batch(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        lead = a.shape[:-3]
        fa, fb = a.reshape(-1, *a.shape[-3:]), b.reshape(-1, *b.shape[-3:])
        out = np.stack([self.pair(x, y) for x, y in zip(fa, fb, strict=True)])
        return out.reshape(*lead, *out.shape[1:])


def video_flow(frames, method: str = "farneback"):
    """Flow between consecutive frames of ``(..., T, ...)`` videos: ``(..., T-1, 2, H, W)``.
    ``frames`` as for :class:`FlowEstimator` with the time axis before the frame axes."""
    est = FlowEstimator(method)
    if isinstance(frames, torch.Tensor):
        return est(frames[..., :-1, :, :, :], frames[..., 1:, :, :, :])
    frames = np.asarray(frames)
    return est(frames[..., :-1, :, :, :], frames[..., 1:, :, :, :])
