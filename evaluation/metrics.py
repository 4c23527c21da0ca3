"""Metrics, one pure function each: image quality, and how well learned actions match the truth.

Every function takes numpy arrays or torch tensors (any device; they are detached and copied to
the host) and computes in float64 with numpy/scipy. Nothing is downloaded and nothing is fit on
the samples it is scored on: the two metrics that fit something (:func:`linear_r2`,
:func:`delta_acc`) take separate train and test splits.

Conventions chosen here (known defects of the anchor codebases are avoided on purpose):

- :func:`psnr` and :func:`ssim` take ``data_range`` (and ``kernel_size``) as keyword-only
  arguments, so the range can never land in the kernel-size slot (a GLASS evaluation bug).
- :func:`psnr` of identical images is ``+inf`` (not capped); averages here cap it at
  :data:`PSNR_CAP`.
- :func:`linear_r2` reports R² as the uniform average of per-dimension R² (sklearn's default)
  and RMSE in the units of ``y``; keep all ``y`` in one unit (GLASS mixed normalized and pixel
  units in its shift RMSE).
- :func:`delta_acc` scores on a held-out split (PVG fit and scored on the same samples).

``METRIC_KEYS`` gives the stable, slash-namespaced key under which each metric is logged.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment, minimize

__all__ = [
    "METRIC_KEYS",
    "PSNR_CAP",
    "angle_match",
    "controllability_delta_psnr",
    "delta_acc",
    "delta_mse",
    "hungarian_accuracy",
    "linear_r2",
    "mask_iou",
    "nmi",
    "psnr",
    "ssim",
]

METRIC_KEYS: dict[str, str] = {
    "psnr": "eval/image/psnr",
    "ssim": "eval/image/ssim",
    "linear_r2": "eval/action/r2",
    "linear_rmse": "eval/action/rmse",
    "angle_match": "eval/action/angle_match",
    "nmi": "eval/action/nmi",
    "hungarian_accuracy": "eval/action/hungarian_acc",
    "delta_mse": "eval/action/delta_mse",
    "delta_acc": "eval/action/delta_acc",
    "controllability_delta_psnr": "eval/control/delta_psnr",
    "mask_iou": "eval/mask/iou",
}

PSNR_CAP = 60.0  # dB: what averages of PSNR cap it at (identical frames give +inf)

_SSIM_K1, _SSIM_K2 = 0.01, 0.03


# --------------------------------------------------------------------------- input helpers


def _host(x: npt.ArrayLike) -> np.ndarray:
    """Numpy view of an array or a (possibly grad-tracking, possibly GPU) torch tensor."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _float(x: npt.ArrayLike) -> np.ndarray:
    return _host(x).astype(np.float64, copy=False)


def _labels(x: npt.ArrayLike, name: str) -> np.ndarray:
    arr = _host(x).reshape(-1)
    if arr.size == 0:
        raise ValueError(f"{name} is empty; pass at least one label")
    return arr


def _same_shape(a: np.ndarray, b: np.ndarray, names: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{names} must have the same shape, got {a.shape} and {b.shape}")


def _check_images(pred: np.ndarray, target: np.ndarray, data_range: float) -> None:
    _same_shape(pred, target, "pred and target")
    if pred.ndim < 3:
        raise ValueError(f"images must be (..., C, H, W), got shape {pred.shape}")
    if not data_range > 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    peak = max(np.abs(pred).max(initial=0.0), np.abs(target).max(initial=0.0))
    if peak > 2 * data_range:
        raise ValueError(
            f"image values reach {peak:g} but data_range={data_range:g}: scale frames to "
            f"[0, data_range] (e.g. divide uint8 frames by 255) or pass data_range=255"
        )


def _as_2d(x: npt.ArrayLike, name: str) -> np.ndarray:
    arr = _float(x)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be (N,) or (N, D), got shape {arr.shape}")
    return arr


# --------------------------------------------------------------------------- image metrics


def psnr(pred: npt.ArrayLike, target: npt.ArrayLike, *, data_range: float = 1.0) -> np.ndarray:
    """Peak signal-to-noise ratio per sample, in dB: ``10 log10(data_range² / MSE)``.

    Args:
        pred, target: ``(..., C, H, W)`` float images in ``[0, data_range]``.
        data_range: the value range of the images (1.0 for ``[0, 1]``, 255 for uint8 scale).

    Returns:
        ``(...)`` float64; the MSE is taken over ``C, H, W`` of each sample. Identical images
        give ``+inf`` (no cap): clip, e.g. ``np.minimum(p, 100.0)``, before averaging.
    """
    p, t = _float(pred), _float(target)
    _check_images(p, t, data_range)
    mse = np.mean((p - t) ** 2, axis=(-3, -2, -1))
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(data_range**2 / mse)


def _gaussian_window(kernel_size: int, sigma: float) -> np.ndarray:
    r = np.arange(kernel_size, dtype=np.float64) - (kernel_size - 1) / 2
    g = np.exp(-(r**2) / (2 * sigma**2))
    return g / g.sum()


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' filtering of the last two axes: ``(..., H, W) -> (..., H-k+1, W-k+1)``."""
    k = g.size
    h, w = x.shape[-2] - k + 1, x.shape[-1] - k + 1
    rows = sum(g[i] * x[..., i : i + h, :] for i in range(k))
    return sum(g[i] * rows[..., :, i : i + w] for i in range(k))


def ssim(
    pred: npt.ArrayLike,
    target: npt.ArrayLike,
    *,
    data_range: float = 1.0,
    kernel_size: int = 11,
    sigma: float = 1.5,
) -> np.ndarray:
    """Structural similarity per sample (Wang et al. 2004) with a Gaussian window.

    Local means, variances and covariance use a normalized ``kernel_size``² Gaussian window of
    std ``sigma`` (weighted population statistics, no Bessel correction), ``K1=0.01``,
    ``K2=0.03``, ``C1=(K1·data_range)²``, ``C2=(K2·data_range)²``. The SSIM map is computed only
    where the window fits inside the image ("valid" pixels, no padding), then averaged over those
    pixels and over channels. All arguments after ``target`` are keyword-only.

    Args:
        pred, target: ``(..., C, H, W)`` float images in ``[0, data_range]``, ``H, W >=
            kernel_size``.

    Returns:
        ``(...)`` float64 in ``[-1, 1]``; identical images give 1.
    """
    p, t = _float(pred), _float(target)
    _check_images(p, t, data_range)
    if not (isinstance(kernel_size, int | np.integer) and kernel_size >= 1 and kernel_size % 2):
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size!r}")
    if min(p.shape[-2:]) < kernel_size:
        raise ValueError(
            f"images of size {p.shape[-2:]} are smaller than kernel_size={kernel_size}"
        )
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    g = _gaussian_window(kernel_size, sigma)
    c1, c2 = (_SSIM_K1 * data_range) ** 2, (_SSIM_K2 * data_range) ** 2
    lead = p.shape[:-3]
    p, t = p.reshape(-1, *p.shape[-3:]), t.reshape(-1, *t.shape[-3:])
    out = np.empty(p.shape[0])
    for s in range(0, p.shape[0], 64):  # chunks bound the memory of the five filtered maps
        x, y = p[s : s + 64], t[s : s + 64]
        mx, my = _filter_valid(x, g), _filter_valid(y, g)
        vx = _filter_valid(x * x, g) - mx**2
        vy = _filter_valid(y * y, g) - my**2
        cxy = _filter_valid(x * y, g) - mx * my
        num = (2 * mx * my + c1) * (2 * cxy + c2)
        den = (mx**2 + my**2 + c1) * (vx + vy + c2)
        out[s : s + 64] = np.mean(num / den, axis=(-3, -2, -1))
    return out.reshape(lead)


# --------------------------------------------------------------------------- action identification


def linear_r2(
    x_train: npt.ArrayLike,
    y_train: npt.ArrayLike,
    x_test: npt.ArrayLike,
    y_test: npt.ArrayLike,
) -> dict[str, float | np.ndarray]:
    """Linear probe: least squares ``y ≈ x @ coef.T + intercept`` fit on train, scored on test.

    Typical use: ``x`` = learned continuous actions, ``y`` = true actions or displacements the
    model never saw (or the reverse).

    Args:
        x_train: ``(N, Dx)`` or ``(N,)``; y_train: ``(N, Dy)`` or ``(N,)``.
        x_test: ``(M, Dx)`` or ``(M,)``; y_test: ``(M, Dy)`` or ``(M,)``.

    Returns:
        ``r2``: uniform average over output dims of ``1 - SSE_d / SST_d`` on the test split,
        with ``SST_d`` around the test mean (sklearn's ``r2_score`` default; a dim with zero test
        variance scores 1 if predicted exactly, else 0). It is below 0 when the probe is worse
        than predicting the test mean.
        ``r2_per_dim``: ``(Dy,)``. ``rmse``: root mean squared error over all test elements,
        in ``y``'s units. ``coef``: ``(Dy, Dx)``. ``intercept``: ``(Dy,)``.
    """
    xtr, ytr = _as_2d(x_train, "x_train"), _as_2d(y_train, "y_train")
    xte, yte = _as_2d(x_test, "x_test"), _as_2d(y_test, "y_test")
    if xtr.shape[0] != ytr.shape[0] or xte.shape[0] != yte.shape[0]:
        raise ValueError(
            f"x and y must have as many rows: train {xtr.shape} vs {ytr.shape}, "
            f"test {xte.shape} vs {yte.shape}"
        )
    if xtr.shape[1] != xte.shape[1] or ytr.shape[1] != yte.shape[1]:
        raise ValueError(f"train and test dims differ: x {xtr.shape} vs {xte.shape}")
    design = np.hstack([xtr, np.ones((xtr.shape[0], 1))])
    w, *_ = np.linalg.lstsq(design, ytr, rcond=None)
    coef, intercept = w[:-1].T, w[-1]
    err = yte - (xte @ coef.T + intercept)
    sse = np.sum(err**2, axis=0)
    sst = np.sum((yte - yte.mean(axis=0)) ** 2, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(sst > 0, 1.0 - sse / sst, np.where(sse == 0, 1.0, 0.0))
    return {
        "r2": float(r2.mean()),
        "r2_per_dim": r2,
        "rmse": float(np.sqrt(np.mean(err**2))),
        "coef": coef,
        "intercept": intercept,
    }


def angle_match(
    pred_dirs: npt.ArrayLike,
    true_dirs: npt.ArrayLike,
    *,
    threshold: float = 1 / np.sqrt(2),
    min_norm: float = 1e-6,
) -> tuple[float, int]:
    """Fraction of pairs whose directions agree: ``cos(pred, true) > threshold``.

    The default threshold ``1/√2`` means "within 45°". Pairs whose true vector has norm below
    ``min_norm`` (no real motion; set it to the noise floor in ``true_dirs``' units) are left
    out. A zero predicted vector has no direction and counts as a miss.

    Args:
        pred_dirs, true_dirs: ``(N, D)`` vectors (only their directions matter).

    Returns:
        ``(fraction, n_used)``; ``fraction`` is NaN when no pair is used.
    """
    p, t = _float(pred_dirs), _float(true_dirs)
    _same_shape(p, t, "pred_dirs and true_dirs")
    if p.ndim != 2:
        raise ValueError(f"direction arrays must be (N, D), got shape {p.shape}")
    keep = np.linalg.norm(t, axis=1) >= min_norm
    p, t = p[keep], t[keep]
    if len(t) == 0:
        return float("nan"), 0
    norms = np.linalg.norm(p, axis=1) * np.linalg.norm(t, axis=1)
    cos = np.full(len(t), -np.inf)
    np.divide(np.sum(p * t, axis=1), norms, out=cos, where=norms > 0)
    return float(np.mean(cos > threshold)), len(t)


def nmi(labels_a: npt.ArrayLike, labels_b: npt.ArrayLike) -> float:
    """Normalized mutual information ``I(A; B) / ((H(A) + H(B)) / 2)`` of two partitions.

    Arithmetic-mean normalization, as sklearn's ``normalized_mutual_info_score`` default;
    invariant to relabelling. Two single-cluster partitions give 1.0; if only one side is
    a single cluster the result is 0.0.

    Args:
        labels_a, labels_b: ``(N,)`` labels of any hashable dtype (other shapes are flattened).

    Returns:
        float in ``[0, 1]``.
    """
    a, b = _labels(labels_a, "labels_a"), _labels(labels_b, "labels_b")
    _same_shape(a, b, "labels_a and labels_b")
    ua, ia = np.unique(a, return_inverse=True)
    ub, ib = np.unique(b, return_inverse=True)
    if len(ua) == 1 and len(ub) == 1:
        return 1.0
    joint = np.bincount(ia * len(ub) + ib, minlength=len(ua) * len(ub)).reshape(len(ua), len(ub))
    pab = joint / a.size
    pa, pb = pab.sum(axis=1), pab.sum(axis=0)
    nz = pab > 0
    mi = np.sum(pab[nz] * np.log(pab[nz] / np.outer(pa, pb)[nz]))
    ha, hb = -np.sum(pa * np.log(pa)), -np.sum(pb * np.log(pb))
    return float(np.clip(mi / ((ha + hb) / 2), 0.0, 1.0))


def hungarian_accuracy(pred: npt.ArrayLike, true: npt.ArrayLike) -> tuple[float, dict]:
    """Accuracy under the best one-to-one matching of predicted to true classes.

    The matching maximizes the matched counts of the confusion matrix
    (``scipy.optimize.linear_sum_assignment``). With different numbers of classes, only
    ``min(#pred, #true)`` classes are matched; samples of unmatched predicted classes count
    as errors.

    Args:
        pred, true: ``(N,)`` labels of any hashable dtype (other shapes are flattened).

    Returns:
        ``(accuracy, mapping)`` with ``mapping = {pred_label: true_label}`` for matched classes.
    """
    p, t = _labels(pred, "pred"), _labels(true, "true")
    _same_shape(p, t, "pred and true")
    up, ip = np.unique(p, return_inverse=True)
    ut, it = np.unique(t, return_inverse=True)
    confusion = np.zeros((len(up), len(ut)), dtype=np.int64)
    np.add.at(confusion, (ip, it), 1)
    rows, cols = linear_sum_assignment(confusion, maximize=True)
    mapping = {up[r].item(): ut[c].item() for r, c in zip(rows, cols, strict=True)}
    return float(confusion[rows, cols].sum() / p.size), mapping


def delta_mse(
    actions: npt.ArrayLike,
    displacements: npt.ArrayLike,
    *,
    weighting: Literal["count", "action"] = "count",
) -> float:
    """PVG's Δ-MSE: spread of the true displacement within each learned discrete action.

    For each action ``k``: ``var_k = mean_i ||d_i - mean_k||²`` over its samples (squared
    Euclidean distance, summed over the ``D`` coordinates). Then:

    - ``weighting="count"`` (default): ``Σ_k n_k var_k / N``, i.e. the mean squared distance of
      every sample to its action's mean; frequent actions weigh more.
    - ``weighting="action"``: plain mean of ``var_k`` over the actions present. PVG's code does
      this but averages over coordinates instead of summing, i.e. its number is this one / ``D``.

    Args:
        actions: ``(N,)`` learned discrete actions (other shapes are flattened).
        displacements: ``(N, D)`` or ``(N,)`` true displacements, in one unit.

    Returns:
        float >= 0 in squared displacement units; 0 when each action has one displacement.
    """
    a = _labels(actions, "actions")
    d = _as_2d(displacements, "displacements")
    if d.shape[0] != a.size:
        raise ValueError(f"{a.size} actions but {d.shape[0]} displacements")
    _, idx, counts = np.unique(a, return_inverse=True, return_counts=True)
    means = np.zeros((len(counts), d.shape[1]))
    np.add.at(means, idx, d)
    means /= counts[:, None]
    sq = np.sum((d - means[idx]) ** 2, axis=1)
    if weighting == "count":
        return float(sq.mean())
    if weighting == "action":
        return float(np.mean(np.bincount(idx, weights=sq) / counts))
    raise ValueError(f"weighting must be 'count' or 'action', got {weighting!r}")


def _softmax_fit(x: np.ndarray, y: np.ndarray, k: int, l2: float, max_iter: int) -> np.ndarray:
    """Multinomial logistic regression by L-BFGS; returns ``(D + 1, k)`` weights (bias last)."""
    n, d = x.shape
    design = np.hstack([x, np.ones((n, 1))])
    onehot = np.eye(k)[y]

    def loss_grad(flat: np.ndarray) -> tuple[float, np.ndarray]:
        w = flat.reshape(d + 1, k)
        logits = design @ w
        logits -= logits.max(axis=1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        loss = -np.sum(onehot * logp) / n + 0.5 * l2 * np.sum(w[:-1] ** 2)
        grad = design.T @ (np.exp(logp) - onehot) / n
        grad[:-1] += l2 * w[:-1]
        return loss, grad.ravel()

    res = minimize(
        loss_grad, np.zeros((d + 1) * k), jac=True, method="L-BFGS-B", options={"maxiter": max_iter}
    )
    return res.x.reshape(d + 1, k)


def delta_acc(
    actions_train: npt.ArrayLike,
    disp_train: npt.ArrayLike,
    actions_test: npt.ArrayLike,
    disp_test: npt.ArrayLike,
    *,
    l2: float = 1e-3,
    max_iter: int = 500,
) -> float:
    """PVG's Δ-acc, held out: how well a linear classifier predicts the learned action from
    the true displacement.

    A multinomial logistic regression (softmax cross-entropy averaged over samples, plus
    ``l2/2 ||W||²`` on the weights, not the bias; L-BFGS) is fit on the train split, with
    displacements standardized by the train mean and std, and scored on the test split. PVG
    used a linear SVM fit and scored on the same samples; this does not. Test actions never
    seen in training count as errors.

    Args:
        actions_train: ``(N,)`` learned discrete actions; disp_train: ``(N, D)`` or ``(N,)``.
        actions_test: ``(M,)``; disp_test: ``(M, D)`` or ``(M,)``.

    Returns:
        test accuracy in ``[0, 1]``; chance is about the largest action frequency.
    """
    atr, ate = _labels(actions_train, "actions_train"), _labels(actions_test, "actions_test")
    xtr, xte = _as_2d(disp_train, "disp_train"), _as_2d(disp_test, "disp_test")
    if xtr.shape[0] != atr.size or xte.shape[0] != ate.size:
        raise ValueError(
            f"actions and displacements must have as many rows: train {atr.size} vs "
            f"{xtr.shape[0]}, test {ate.size} vs {xte.shape[0]}"
        )
    if xtr.shape[1] != xte.shape[1]:
        raise ValueError(f"train and test displacement dims differ: {xtr.shape} vs {xte.shape}")
    classes, y = np.unique(atr, return_inverse=True)
    if len(classes) == 1:
        return float(np.mean(ate == classes[0]))
    mu, sd = xtr.mean(axis=0), xtr.std(axis=0)
    sd[sd == 0] = 1.0
    w = _softmax_fit((xtr - mu) / sd, y, len(classes), l2, max_iter)
    logits = (xte - mu) / sd @ w[:-1] + w[-1]
    return float(np.mean(classes[np.argmax(logits, axis=1)] == ate))


def controllability_delta_psnr(psnr_inferred: npt.ArrayLike, psnr_random: npt.ArrayLike) -> float:
    """Genie's controllability ΔPSNR: ``mean(psnr_inferred) - mean(psnr_random)`` in dB.

    Args:
        psnr_inferred: ``(N,)`` PSNR of rollouts driven by actions inferred from the real video.
        psnr_random: ``(M,)`` PSNR of rollouts driven by random actions (usually ``M == N``).

    Returns:
        float dB; larger means the actions control the rollout more. Genie reports 1.3-2.1 dB.
    """
    a, b = _float(psnr_inferred).reshape(-1), _float(psnr_random).reshape(-1)
    if a.size == 0 or b.size == 0:
        raise ValueError("psnr_inferred and psnr_random must both be non-empty")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("PSNR values must be finite; cap infinite PSNR (identical frames) first")
    return float(a.mean() - b.mean())


def mask_iou(
    pred_masks: npt.ArrayLike, true_masks: npt.ArrayLike, *, threshold: float = 0.5
) -> np.ndarray:
    """Intersection over union per sample of a thresholded soft mask and a true binary mask.

    The prediction is foreground where ``pred > threshold`` (strictly, so an all-0.5 mask is
    empty). A sample where both masks are empty has IoU 1.0 (full agreement).

    Args:
        pred_masks: ``(N, ...)`` soft masks in ``[0, 1]``, e.g. ``(N, H, W)`` or ``(N, 1, H, W)``.
        true_masks: same shape, boolean (or 0/1 numbers).

    Returns:
        ``(N,)`` float64 in ``[0, 1]``; all axes after the first are reduced.
    """
    p, t = _float(pred_masks), _host(true_masks)
    _same_shape(p, t, "pred_masks and true_masks")
    if p.ndim < 2:
        raise ValueError(f"masks must be (N, ...) with at least one pixel axis, got {p.shape}")
    if t.dtype != bool:
        if not np.isin(t, (0, 1)).all():
            raise ValueError("true_masks must be boolean or contain only 0 and 1")
        t = t.astype(bool)
    pb = p > threshold
    axes = tuple(range(1, p.ndim))
    inter = np.sum(pb & t, axis=axes)
    union = np.sum(pb | t, axis=axes)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)
