"""Object positions read from RGB frames by colour, calibrated on the env itself (no weights).

Scores counterfactual predictions ("where is object 1 after 8 steps") and serves as a planning
cost: frames real or predicted by a world model (blurry) in, one ``(u, v)`` pixel position and a
visibility per object slot out, in the convention of the env's ``object_pixel``: ``(column, row)``,
continuous, pixel ``(j, i)`` covering ``[j, j+1) x [i, i+1)`` (its centre is ``(j+0.5, i+0.5)``).

How (:meth:`ObjectDetector.from_env` learns every number from renders of the env):

1. **Colour model.** Each slot's colour is the mean RGB over its segmented pixels, each object
   placed alone over a grid of table positions. Pixels are compared in rg-chromaticity
   ``(R, G) / (R + G + B)``, which ignores shading (lit top vs darker sides). A blurred pixel
   mixing a fraction ``a`` of an object with the table lies on the chromaticity segment from the
   table to the object, so a pixel's weight for slot ``k`` is ``a`` (recovered from its position
   along that segment, linear in the mixture) times a soft gate on its distance to the segment.
   Weights start at ``a >= 0.3`` (greys of the arm sit at ``a ~ 0.25`` on the blue segment) and
   the distance gate ramps from the slot's own spread to half the distance of the nearest other
   colour seen in the calibration renders (paddle, arm, walls, the other objects).
2. **Position** is the weighted centroid over pixel centres, minus a calibrated offset read from
   a table over image rows: near the south wall the wall hides the object's front face and the
   raw centroid sits up to ~0.9 px high. **Visibility** is the weight sum over the expected sum
   at that row (1 for an unoccluded object on a real frame; lower when the arm covers it or the
   frame is blurred). Positions are NaN where visibility is under ``min_visibility``.
3. **Speed.** The weight is a function of the colour alone, tabulated once on a 128^3 RGB grid
   (8 MB of uint8): detection is one table look-up per pixel and integer sums.

Chromaticity, not RGB: in plain RGB the orange paddle passes for red and yellow objects; an
isotropic chromaticity distance loses yellow on blurred (predicted) frames. Where an arm hides
part of an object the centroid moves to the visible part, which is most of the error.
:meth:`ObjectDetector.validate` measures the error and detection rate on any frames with ground
truth, or an env (its figures: docs/BENCHMARKS.md).

The wrist paddle, the only part of the arm low enough to touch an object, is found by colour too
(:func:`paddle_pixels`); :func:`visual_contact` reads contact from frames with it.

Frames for :meth:`ObjectDetector.locate`: ``(..., H, W, 3)`` uint8, or float in ``[0, 1]``
(values slightly outside are clipped, as predictions overshoot); :meth:`ObjectDetector.locate_chw`
takes ``(..., 3, H, W)`` torch tensors or arrays (model outputs), copied to the host. Results are
numpy arrays. ``locate(frames)[0]`` is the ``(..., K, 2)`` positions.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple, TypedDict

import numpy as np
import numpy.typing as npt

from latentplay.envs.arm import ARENA_HALF, LABEL_ARM, MAX_OBJECTS
from latentplay.utils.frames import to_uint8

__all__ = [
    "MOVED_M",
    "PADDLE_REACH_M",
    "Detections",
    "DetectorReport",
    "ObjectDetector",
    "paddle_pixels",
    "visual_contact",
]

MOVED_M = 0.01  # an object "moved" when it ended more than 1 cm from where it started
PADDLE_REACH_M = 0.030  # paddle pixel centre to object centre (box half-size 2.2 cm + ~1 px)

ALPHA_START = 0.3  # object fraction where a pixel starts to count ...
ALPHA_FULL = 0.6  # ... and from where it counts with weight equal to the fraction
MIN_TOLERANCE = 0.02  # rg-chromaticity distance always accepted in full (predicted colours drift)
MAX_CUTOFF = 0.1  # rg-chromaticity distance never accepted
LUT_BITS = 7  # colour table resolution per channel: 128^3 entries
_PLACE_LIMIT = ARENA_HALF - 0.022 - 1e-6  # ArmEnv.move_object's bound on |x|, |y| (m)
_CHUNK = 512  # frames per look-up batch (bounds the temporary arrays to ~25 MB)


class Detections(NamedTuple):
    """Per frame and object slot; ``...`` is the frames' leading shape, K the slot count."""

    uv: np.ndarray  # (..., K, 2) float64 pixel (u, v) = (column, row); NaN where not found
    visibility: np.ndarray  # (..., K) float64 weight found / expected for an unoccluded object
    found: np.ndarray  # (..., K) bool: visibility >= the detector's min_visibility


def _host(x: Any) -> np.ndarray:
    """Numpy view of an array or a (possibly grad-tracking, possibly GPU) torch tensor."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _ramp(x: np.ndarray, start: Any, end: Any) -> np.ndarray:
    """0 at ``start``, 1 at ``end``, linear between (either direction), clipped."""
    return np.clip((x - start) / (end - start), 0.0, 1.0)


class _Segments(NamedTuple):
    """Chromaticity geometry of the table -> object segments, shapes (K, ...)."""

    table_z: np.ndarray  # (2,) table chromaticity
    direction: np.ndarray  # (K, 2) object chromaticity - table chromaticity
    length: np.ndarray  # (K,)
    brightness_ratio: np.ndarray  # (K,) object R+G+B over table R+G+B


def _segments(table_rgb: np.ndarray, colors: np.ndarray) -> _Segments:
    table_z = table_rgb[:2] / table_rgb.sum()
    direction = colors[:, :2] / colors.sum(-1, keepdims=True) - table_z
    return _Segments(
        table_z=table_z,
        direction=direction,
        length=np.linalg.norm(direction, axis=-1),
        brightness_ratio=colors.sum(-1) / table_rgb.sum(),
    )


def _unmix(rgb: np.ndarray, seg: _Segments) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Object fraction and distance to each slot's segment, per colour.

    Args:
        rgb: ``(M, 3)`` float colours on the 0..255 scale.

    Returns:
        ``alpha (M, K)``: the fraction of slot k's colour in a mix with the table (1 on the
        object, 0 on the table); ``dist (M, K)``: rg-chromaticity distance to the table -> object
        segment; ``brightness (M,)``: R + G + B.
    """
    brightness = rgb.sum(-1)
    z = rgb[:, :2] / np.maximum(brightness, 1.0)[:, None] - seg.table_z  # (M, 2)
    d, length = seg.direction, seg.length
    t = (z @ d.T) / length**2  # (M, K) position along the segment, 1 at the object
    perp = (z[:, :1] * d[:, 1] - z[:, 1:] * d[:, 0]) / length
    along = (t - np.clip(t, 0.0, 1.0)) * length  # beyond either end
    dist = np.hypot(perp, along)
    # chromaticity of a mix a*obj + (1-a)*table sits at t = a*S_obj / (a*S_obj + (1-a)*S_table)
    tc = np.maximum(t, 0.0)
    r = seg.brightness_ratio
    alpha = tc / np.maximum(tc + (1.0 - tc) * r, 1e-6)
    return np.clip(alpha, 0.0, 1.0), dist, brightness


class ObjectDetector:
    """Colour-keyed object positions from RGB frames; build it with :meth:`from_env`.

    Args (all per object slot k, K = ``len(colors)``; :meth:`from_env` measures them):
        colors: ``(K, 3)`` mean RGB (0..255) of each slot's pixels.
        table_color: ``(3,)`` RGB of the background around objects (the table).
        tolerance: ``(K,)`` rg-chromaticity distance to the table -> object segment accepted
            in full.
        cutoff: ``(K,)`` distance from which a pixel does not count (> tolerance).
        min_brightness: ``(K,)`` R + G + B of the slot's darkest face; pixels darker than a
            fifth of it do not count, from two fifths in full (near-black chromaticity is noise).
        calib_v: ``(K, R)`` raw centroid rows (px, increasing) of the calibration table.
        calib_offset: ``(K, R, 2)`` raw centroid minus true pixel position at those rows.
        calib_mass: ``(K, R)`` weight sum (in pixels) of an unoccluded object at those rows.
        height, width: frame size the calibration holds for (px).
        min_visibility: visibility under which a slot is reported not found (NaN position).
    """

    def __init__(
        self,
        *,
        colors: npt.ArrayLike,
        table_color: npt.ArrayLike,
        tolerance: npt.ArrayLike,
        cutoff: npt.ArrayLike,
        min_brightness: npt.ArrayLike,
        calib_v: npt.ArrayLike,
        calib_offset: npt.ArrayLike,
        calib_mass: npt.ArrayLike,
        height: int,
        width: int,
        min_visibility: float = 0.15,
    ) -> None:
        self.colors = np.asarray(colors, np.float64)
        k = len(self.colors)
        self.table_color = np.asarray(table_color, np.float64)
        self.tolerance = np.asarray(tolerance, np.float64)
        self.cutoff = np.asarray(cutoff, np.float64)
        self.min_brightness = np.asarray(min_brightness, np.float64)
        expected = {
            "colors": (self.colors, (k, 3)),
            "table_color": (self.table_color, (3,)),
            "tolerance": (self.tolerance, (k,)),
            "cutoff": (self.cutoff, (k,)),
            "min_brightness": (self.min_brightness, (k,)),
        }
        for name, (arr, shape) in expected.items():
            if arr.shape != shape:
                raise ValueError(f"{name} has shape {arr.shape}; expected {shape}")
        if not np.all(self.cutoff > self.tolerance):
            raise ValueError(f"cutoff {self.cutoff} must exceed tolerance {self.tolerance}")
        if not 0.0 < min_visibility < 1.0:
            raise ValueError(f"min_visibility={min_visibility!r}; expected a number in (0, 1)")
        self.height, self.width = int(height), int(width)
        self.min_visibility = float(min_visibility)
        self._segments = _segments(self.table_color, self.colors)
        self._lut = self._build_lut()  # (128^3, K) uint8 weights, 255 = 1
        self._set_calibration(calib_v, calib_offset, calib_mass)

    def _set_calibration(
        self, calib_v: npt.ArrayLike, calib_offset: npt.ArrayLike, calib_mass: npt.ArrayLike
    ) -> None:
        v = np.asarray(calib_v, np.float64)
        offset = np.asarray(calib_offset, np.float64)
        mass = np.asarray(calib_mass, np.float64)
        k = self.n_slots
        if v.ndim != 2 or v.shape[0] != k or v.shape[1] < 2:
            raise ValueError(f"calib_v has shape {v.shape}; expected ({k}, R >= 2)")
        if offset.shape != (*v.shape, 2) or mass.shape != v.shape:
            raise ValueError(
                f"calib_offset {offset.shape} and calib_mass {mass.shape}; expected "
                f"{(*v.shape, 2)} and {v.shape} for calib_v {v.shape}"
            )
        if np.any(np.diff(v, axis=1) <= 0) or not np.all(mass > 0):
            raise ValueError("calib_v must increase strictly per slot and calib_mass be positive")
        self.calib_v, self.calib_offset, self.calib_mass = v, offset, mass

    @property
    def n_slots(self) -> int:
        return len(self.colors)

    # ------------------------------------------------------------------ colour weights
    def color_weights(self, rgb: npt.ArrayLike) -> np.ndarray:
        """Exact (untabulated) weight of each colour for each slot.

        Args:
            rgb: ``(M, 3)`` colours on the 0..255 scale (float).

        Returns:
            ``(M, K)`` float64 in ``[0, 1]``: the object fraction, once it reaches
            ``ALPHA_FULL``, gated by the distance to the slot's segment and by brightness.
        """
        rgb = np.asarray(rgb, np.float64)
        alpha, dist, brightness = _unmix(rgb, self._segments)
        dark = self.min_brightness / 5
        return (
            alpha
            * _ramp(alpha, ALPHA_START, ALPHA_FULL)
            * _ramp(dist, self.cutoff, self.tolerance)
            * _ramp(brightness[:, None], dark, 2 * dark)
        )

    def _build_lut(self) -> np.ndarray:
        n = 1 << LUT_BITS
        step = 256 // n
        levels = np.arange(n, dtype=np.float64) * step + (step - 1) / 2  # bin centres
        gb = np.stack(np.meshgrid(levels, levels, indexing="ij"), -1).reshape(-1, 2)  # (n^2, 2)
        lut = np.empty((n, n * n, self.n_slots), np.uint8)
        for i, r in enumerate(levels):
            rgb = np.concatenate([np.full((len(gb), 1), r), gb], axis=1)
            lut[i] = np.rint(self.color_weights(rgb) * 255)
        return lut.reshape(n**3, self.n_slots)

    # ------------------------------------------------------------------ input
    def _expected_form(self) -> str:
        return (
            f"(..., {self.height}, {self.width}, 3) uint8 or float in [0, 1] (channels last; "
            f"locate_chw takes (..., 3, {self.height}, {self.width}))"
        )

    def _as_uint8(self, frames: Any) -> np.ndarray:
        """Validated ``(..., H, W, 3) uint8`` version of the frames."""
        x = _host(frames)
        if x.ndim < 3 or x.shape[-3:] != (self.height, self.width, 3):
            raise ValueError(
                f"frames have shape {x.shape} and dtype {x.dtype}; expected {self._expected_form()}"
            )
        if x.dtype == np.uint8:
            return x
        if not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"frames have dtype {x.dtype}; expected {self._expected_form()}")
        if x.size and not np.isfinite(x).all():
            raise ValueError("frames contain NaN or inf; expected finite floats in [0, 1]")
        lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
        if lo < -0.5 or hi > 1.5:
            raise ValueError(
                f"float frames range over [{lo:g}, {hi:g}]; expected [0, 1] (divide 0..255 "
                f"values by 255, or pass uint8)"
            )
        return to_uint8(x)

    def _lookup(self, frames: np.ndarray) -> np.ndarray:
        """``(N, H, W, 3) uint8 -> (N, H, W, K) uint8`` weights (255 = 1)."""
        shift = 8 - LUT_BITS
        q = frames >> shift
        idx = q[..., 0].astype(np.int32) << (2 * LUT_BITS)
        idx |= q[..., 1].astype(np.int32) << LUT_BITS
        idx |= q[..., 2]
        return self._lut[idx]

    # ------------------------------------------------------------------ detection
    def weight_maps(self, frames: Any) -> np.ndarray:
        """Per-slot weight maps (what the centroid averages over), for inspection or costs.

        Args:
            frames: ``(..., H, W, 3)`` uint8 or float in [0, 1].

        Returns:
            ``(..., K, H, W)`` float32 in ``[0, 1]``.
        """
        x = self._as_uint8(frames)
        w = self._lookup(x.reshape(-1, *x.shape[-3:]))  # (N, H, W, K)
        maps = np.moveaxis(w, -1, 1).astype(np.float32) / np.float32(255)  # (N, K, H, W)
        return maps.reshape(*x.shape[:-3], *maps.shape[1:])

    def _raw(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Uncorrected weighted centroids ``(N, K, 2)`` (NaN for zero weight) and weight sums
        ``(N, K)`` in pixels, of ``(N, H, W, 3) uint8`` frames."""
        n, k = len(frames), self.n_slots
        raw = np.empty((n, k, 2), np.float64)
        mass = np.empty((n, k), np.float64)
        u = np.arange(self.width, dtype=np.float64) + 0.5
        v = np.arange(self.height, dtype=np.float64) + 0.5
        for s in range(0, n, _CHUNK):
            w = self._lookup(frames[s : s + _CHUNK])  # (n, H, W, K) uint8
            cols = w.sum(axis=1, dtype=np.int32)  # (n, W, K)
            rows = w.sum(axis=2, dtype=np.int32)  # (n, H, K)
            m = cols.sum(axis=1)  # (n, K)
            with np.errstate(invalid="ignore", divide="ignore"):
                raw[s : s + _CHUNK, :, 0] = np.einsum("nwk,w->nk", cols, u) / m
                raw[s : s + _CHUNK, :, 1] = np.einsum("nhk,h->nk", rows, v) / m
            mass[s : s + _CHUNK] = m / 255.0
        return raw, mass

    def locate(self, frames: Any) -> Detections:
        """Pixel position and visibility of every object slot in every frame.

        Args:
            frames: ``(..., H, W, 3)`` uint8, or float in ``[0, 1]`` (clipped to it), H and W
                as calibrated. Numpy arrays or CPU/GPU torch tensors (copied to the host).

        Returns:
            :class:`Detections` with ``uv (..., K, 2)`` (NaN where not found),
            ``visibility (..., K)`` and ``found (..., K)``.
        """
        x = self._as_uint8(frames)
        lead, k = x.shape[:-3], self.n_slots
        raw, mass = self._raw(x.reshape(-1, *x.shape[-3:]))
        uv = np.empty_like(raw)
        visibility = np.empty_like(mass)
        for j in range(k):
            table = self.calib_v[j]
            row = np.nan_to_num(raw[:, j, 1], nan=table[0])  # where the table is read
            uv[:, j, 0] = raw[:, j, 0] - np.interp(row, table, self.calib_offset[j, :, 0])
            uv[:, j, 1] = raw[:, j, 1] - np.interp(row, table, self.calib_offset[j, :, 1])
            visibility[:, j] = mass[:, j] / np.interp(row, table, self.calib_mass[j])
        found = visibility >= self.min_visibility
        uv[~found] = np.nan
        return Detections(
            uv=uv.reshape(*lead, k, 2),
            visibility=visibility.reshape(*lead, k),
            found=found.reshape(*lead, k),
        )

    def locate_chw(self, frames: Any) -> Detections:
        """:meth:`locate` for channels-first frames: ``(..., 3, H, W)`` float in [0, 1] or uint8.

        Torch tensors (any device, grad or not) are copied to the host; results are numpy.
        """
        x = _host(frames)
        if x.ndim < 3 or x.shape[-3] != 3:
            raise ValueError(
                f"frames have shape {x.shape}; expected (..., 3, {self.height}, {self.width}) "
                f"float in [0, 1] or uint8 (channels first; locate takes channels last)"
            )
        return self.locate(np.moveaxis(x, -3, -1))

    # ------------------------------------------------------------------ validation
    def validate(
        self,
        source: Any,
        object_pixel: npt.ArrayLike | None = None,
        object_active: npt.ArrayLike | None = None,
        *,
        episodes: int = 3,
        steps: int = 40,
        seed: int = 0,
        blur_sigma: float = 0.0,
    ) -> DetectorReport:
        """Error against ground truth on real frames: median and p90 px, detection rates.

        ``source`` is either frames ``(..., H, W, 3)`` with ``object_pixel (..., K, 2)`` and
        ``object_active (..., K)`` (as in the env's info), or an env alone: then
        ``episodes x steps`` fresh frames of it, reset with ``seed + episode`` (its current
        episode is lost), the arm heading for an active object (a new one every 10 steps) plus
        Gaussian noise, so it passes over and moves objects. ``blur_sigma > 0`` blurs every
        frame with an OpenCV Gaussian of that many pixels first (a stand-in for predictions).
        Print ``report["summary"]``.
        """
        if hasattr(getattr(source, "unwrapped", source), "render_rgb"):
            if object_pixel is not None or object_active is not None:
                raise ValueError(
                    "validate(env) takes no object_pixel / object_active: the env supplies them"
                )
            frames, gt, active = _env_frames(source, episodes, steps, seed)
        elif object_pixel is None or object_active is None:
            raise ValueError(
                f"validate got {type(source).__name__} frames without object_pixel and "
                f"object_active; expected validate(env) or validate(frames (..., H, W, 3), "
                f"object_pixel (..., K, 2), object_active (..., K))"
            )
        else:
            frames = source
            gt = np.asarray(object_pixel, np.float64)
            active = np.asarray(object_active, bool)
        what = "real frames"
        if blur_sigma > 0:
            import cv2

            x = self._as_uint8(frames)
            flat = [cv2.GaussianBlur(f, (0, 0), blur_sigma) for f in x.reshape(-1, *x.shape[-3:])]
            frames = np.stack(flat).reshape(x.shape) if flat else x
            what = f"real frames blurred (Gaussian sigma {blur_sigma:g} px)"
        return _report(self.locate(frames), gt, active, what)

    # ------------------------------------------------------------------ calibration
    @classmethod
    def from_env(
        cls,
        env: Any,
        *,
        grid: tuple[int, int] = (3, 13),
        min_visibility: float = 0.15,
    ) -> ObjectDetector:
        """Calibrate on renders of ``env`` (a latentplay arm env, or a wrapper of one).

        Each object slot is placed alone at a ``grid = (nx, ny)`` of table positions (yaw varied)
        with the other slots removed; its segmented pixels give its colour, the pixels of the
        other labels give the colours to tell it from, and the detector's own raw output on
        these renders gives the position offset and the expected weight per image row (renders
        where the arm comes within 3 px of the object are left out of those). The env's state
        (objects, RNG and all) is restored afterwards.
        """
        base = getattr(env, "unwrapped", env)
        nx, ny = grid
        if nx < 1 or ny < 2:
            raise ValueError(f"grid={grid!r}; expected (nx >= 1, ny >= 2) positions")
        saved = base.get_state()
        try:
            frames, labels, truth, slots = _calibration_renders(base, nx, ny)
        finally:
            base.set_state(saved)
        return cls._fit(frames, labels, truth, slots, ny, min_visibility)

    @classmethod
    def _fit(
        cls,
        frames: np.ndarray,
        labels: np.ndarray,
        truth: np.ndarray,
        slots: np.ndarray,
        ny: int,
        min_visibility: float,
    ) -> ObjectDetector:
        """Fit from calibration renders: ``frames (M, H, W, 3) uint8``, ``labels (M, H, W)``,
        ``truth (M, 2)`` pixel position of the placed slot, ``slots (M,)``; renders come in
        ``ny`` groups of equal world y per slot, in order."""
        from scipy.ndimage import binary_dilation

        h, w = frames.shape[1:3]
        rgb = frames.astype(np.float64)
        objects = labels >= 2
        around = np.stack([binary_dilation(o, iterations=2) for o in objects]) & (labels == 0)
        table = np.median(rgb[around], axis=0)
        k_slots = MAX_OBJECTS
        colors = np.stack([rgb[labels == 2 + k].mean(0) for k in range(k_slots)])
        seg = _segments(table, colors)
        tolerance, cutoff, min_bright = np.zeros(k_slots), np.zeros(k_slots), np.zeros(k_slots)
        for k in range(k_slots):
            own = rgb[labels == 2 + k]
            _, dist, bright = _unmix(own, seg)
            tolerance[k] = max(np.percentile(dist[:, k], 99), MIN_TOLERANCE)
            min_bright[k] = np.percentile(bright, 1)
            other = _unique_colours(frames[(labels != 2 + k) & ~around])  # table mixes aside
            a_o, d_o, _ = _unmix(other, seg)
            risky = d_o[a_o[:, k] > ALPHA_START, k]
            nearest = risky.min() if risky.size else math.inf
            cutoff[k] = min(max(0.5 * nearest, tolerance[k] + 0.01), MAX_CUTOFF)
            if 0.5 * nearest < tolerance[k] + 0.01:
                warnings.warn(
                    f"object slot {k} colour {colors[k].round()} is within {nearest:.3f} "
                    f"(rg-chromaticity) of another colour in the scene; detections of it may "
                    f"pick that colour up",
                    stacklevel=3,
                )
        det = cls(
            colors=colors,
            table_color=table,
            tolerance=tolerance,
            cutoff=cutoff,
            min_brightness=min_bright,
            calib_v=np.tile([0.0, 1.0], (k_slots, 1)),  # no correction until measured below
            calib_offset=np.zeros((k_slots, 2, 2)),
            calib_mass=np.ones((k_slots, 2)),
            height=h,
            width=w,
            min_visibility=min_visibility,
        )
        raw, mass = det._raw(frames)
        tables = []
        for k in range(k_slots):
            sel = np.flatnonzero(slots == k)
            rows = []
            for group in np.array_split(sel, ny):  # one group per world y
                clear = [
                    i
                    for i in group
                    if mass[i, k] > 0
                    and not binary_dilation(labels[i] == 2 + k, iterations=3)[
                        labels[i] == LABEL_ARM
                    ].any()
                ]
                if clear:
                    pos = raw[clear, k]
                    rows.append(
                        [pos[:, 1].mean(), *(pos - truth[clear]).mean(0), mass[clear, k].mean()]
                    )
            if len(rows) < 2:
                raise RuntimeError(
                    f"object slot {k}: the arm covers the object in all but {len(rows)} of {ny} "
                    f"calibration rows; reset the env with another seed and retry"
                )
            tables.append(np.array(sorted(rows)))
        r = max(len(t) for t in tables)
        calib = [_resample(t, r) for t in tables]  # (r, 4) each: raw v, offset u, v, mass
        det._set_calibration(
            np.stack([c[:, 0] for c in calib]),
            np.stack([c[:, 1:3] for c in calib]),
            np.stack([c[:, 3] for c in calib]),
        )
        return det


def _resample(table: np.ndarray, r: int) -> np.ndarray:
    """``(R, C)`` table with increasing first column -> ``(r, C)`` describing the same
    piecewise-linear curves: points are added at the middle of the widest gaps."""
    while len(table) < r:
        i = int(np.argmax(np.diff(table[:, 0])))
        table = np.insert(table, i + 1, (table[i] + table[i + 1]) / 2, axis=0)
    return table


def _unique_colours(pixels: np.ndarray) -> np.ndarray:
    """``(M, 3) uint8 -> (U, 3) float64`` distinct colours."""
    packed = np.unique(pixels.astype(np.int32) @ np.array([1 << 16, 1 << 8, 1], np.int32))
    return np.stack([packed >> 16, (packed >> 8) & 255, packed & 255], -1).astype(np.float64)


def _calibration_renders(
    env: Any, nx: int, ny: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Render each slot alone over an ``nx x ny`` grid; returns frames ``(M, H, W, 3)``,
    labels ``(M, H, W)``, the slot's true pixel ``(M, 2)`` and the slot ``(M,)``, grouped by
    slot, then world y (``ny`` groups of ``nx``)."""
    for i in list(env.active_objects):
        env.remove_object(i)
    xs = np.linspace(-_PLACE_LIMIT, _PLACE_LIMIT, nx)
    ys = np.linspace(-_PLACE_LIMIT, _PLACE_LIMIT, ny)
    frames, labels, truth, slots = [], [], [], []
    for k in range(MAX_OBJECTS):
        env.add_object([0.0, 0.0], slot=k)
        for j, y in enumerate(ys):
            for i, x in enumerate(xs):
                env.move_object(k, [x, y], yaw=0.37 * (i + nx * j))
                frames.append(env.render_rgb())
                labels.append(env.render_segmentation())
                truth.append(env.ground_truth()["object_pixel"][k])
                slots.append(k)
        env.remove_object(k)
    return np.stack(frames), np.stack(labels), np.stack(truth), np.array(slots)


# ---------------------------------------------------------------------- validation


class DetectorReport(TypedDict):
    """Detector error against ground truth (a plain dict: JSON-ready). Pixel errors are
    Euclidean, over found objects; rates are NaN where nothing was there to count."""

    median_px: float
    p90_px: float
    detection_rate: float  # found / active (frame, slot) pairs
    false_detection_rate: float  # found / inactive pairs (NaN when every slot is active)
    n_objects: int  # active (frame, slot) pairs scored
    slot_median_px: list[float]  # (K,)
    slot_p90_px: list[float]  # (K,)
    slot_detection_rate: list[float]  # (K,)
    summary: str  # "detector validated on real frames: median error 0.19 px, ..."


def _stat(fn: Any, x: np.ndarray) -> float:
    return float(fn(x)) if x.size else math.nan


def _p90(x: np.ndarray) -> float:
    return float(np.percentile(x, 90))


def _report(det: Detections, gt: np.ndarray, active: np.ndarray, what: str) -> DetectorReport:
    if gt.shape != det.uv.shape or active.shape != det.found.shape:
        raise ValueError(
            f"object_pixel {gt.shape} and object_active {active.shape} do not match the "
            f"detections {det.uv.shape} / {det.found.shape}; expected (..., K, 2) and (..., K) "
            f"for frames (..., H, W, 3)"
        )
    k = det.found.shape[-1]
    err = np.hypot(*np.moveaxis(det.uv - gt, -1, 0)).reshape(-1, k)
    found, active = det.found.reshape(-1, k), active.reshape(-1, k)
    ok = found & active
    median, p90 = _stat(np.median, err[ok]), _stat(_p90, err[ok])
    rate = _stat(np.mean, found[active])
    n = int(active.sum())
    return DetectorReport(
        median_px=median,
        p90_px=p90,
        detection_rate=rate,
        false_detection_rate=_stat(np.mean, found[~active]),
        n_objects=n,
        slot_median_px=[_stat(np.median, err[ok[:, j], j]) for j in range(k)],
        slot_p90_px=[_stat(_p90, err[ok[:, j], j]) for j in range(k)],
        slot_detection_rate=[_stat(np.mean, found[active[:, j], j]) for j in range(k)],
        summary=(
            f"detector validated on {what}: median error {median:.2f} px, p90 {p90:.2f} px, "
            f"detection rate {100 * rate:.1f}% ({n} objects)"
        ),
    )


def _env_frames(
    env: Any, episodes: int, steps: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames ``(N, H, W, 3)``, ``object_pixel (N, K, 2)`` and ``object_active (N, K)`` of
    ``episodes`` pushing episodes (reset with ``seed + episode``)."""
    base = getattr(env, "unwrapped", env)
    rng = np.random.default_rng(seed)
    frames, pixels, active = [], [], []
    for e in range(episodes):
        _, info = base.reset(seed=seed + e)
        target = None
        for t in range(steps):
            if t % 10 == 0 and info["object_active"].any():
                target = int(rng.choice(np.flatnonzero(info["object_active"])))
            push = np.zeros(3)
            if target is not None:
                push[:2] = (info["object_pos"][target, :2] - info["ee_pos"][:2]) / 0.02
            *_, info = base.step(np.clip(push + rng.normal(0.0, 0.5, 3), -1.0, 1.0))
            frames.append(base.render_rgb())
            pixels.append(info["object_pixel"])
            active.append(info["object_active"])
    return np.stack(frames), np.stack(pixels), np.stack(active)


# ---------------------------------------------------------------------- the wrist paddle
def paddle_pixels(frames: np.ndarray) -> np.ndarray:
    """Pixels of the orange wrist paddle (the only part of the arm low enough to touch an
    object; the links pass above them). ``(N, h, w, 3) uint8 -> (N, h, w) bool``."""
    f = frames.astype(np.int16)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    return (r > 170) & (g > 70) & (g < 190) & (b < 90) & (r - g > 50)


def visual_contact(
    frames: np.ndarray, object_px: np.ndarray, to_metres: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """Contact read from frames: a paddle pixel within ``PADDLE_REACH_M`` of an object's
    detected centre (table metres; ``to_metres`` maps (..., 2) pixels onto the table).
    frames ``(N, h, w, 3)``, object_px ``(N, n, 2)`` (NaN: not found) -> ``(N, n)`` bool."""
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
