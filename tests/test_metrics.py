"""Known-answer tests for latentplay.evaluation.metrics, one group per metric."""

from __future__ import annotations

import math

import numpy as np
import pytest

from latentplay.evaluation import metrics as M


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


# --------------------------------------------------------------------------- psnr


def test_psnr_constant_offset_is_20_db() -> None:
    target = np.full((2, 3, 8, 8), 0.5)
    np.testing.assert_allclose(M.psnr(target + 0.1, target), [20.0, 20.0])


def test_psnr_known_mse_and_data_range() -> None:
    target = np.zeros((1, 3, 4, 4))
    pred = target.copy()
    pred[..., 0, :] = 0.2  # MSE = 0.04 / 4 = 0.01 -> 20 dB
    np.testing.assert_allclose(M.psnr(pred, target), [20.0])
    np.testing.assert_allclose(M.psnr(pred * 255, target * 255, data_range=255.0), [20.0])


def test_psnr_identical_is_inf_and_keeps_leading_shape(rng: np.random.Generator) -> None:
    x = rng.random((2, 5, 3, 6, 6))
    out = M.psnr(x, x)
    assert out.shape == (2, 5) and np.isinf(out).all() and (out > 0).all()


def test_psnr_rejects_wrong_range_and_positional_range() -> None:
    x = np.full((1, 3, 4, 4), 200.0)
    with pytest.raises(ValueError, match="data_range"):
        M.psnr(x, x)
    with pytest.raises(TypeError):
        M.psnr(x, x, 255.0)  # type: ignore[misc]


def test_psnr_accepts_torch_tensors() -> None:
    torch = pytest.importorskip("torch")
    target = torch.full((1, 3, 4, 4), 0.5, requires_grad=True)
    np.testing.assert_allclose(M.psnr(target + 0.1, target), [20.0], rtol=1e-5)


# --------------------------------------------------------------------------- ssim


def test_ssim_identical_is_one(rng: np.random.Generator) -> None:
    x = rng.random((3, 3, 16, 16))
    np.testing.assert_allclose(M.ssim(x, x), np.ones(3))


def test_ssim_constant_images_reduce_to_luminance_term() -> None:
    a, b = 0.3, 0.7
    c1 = (0.01 * 1.0) ** 2
    expected = (2 * a * b + c1) / (a**2 + b**2 + c1)
    out = M.ssim(np.full((1, 3, 16, 16), a), np.full((1, 3, 16, 16), b))
    np.testing.assert_allclose(out, [expected], rtol=1e-9)


def test_ssim_single_window_matches_hand_computation(rng: np.random.Generator) -> None:
    x, y = rng.random((1, 1, 7, 7)), rng.random((1, 1, 7, 7))
    r = np.arange(7) - 3.0
    g = np.exp(-(r**2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    mx, my = (w * x[0, 0]).sum(), (w * y[0, 0]).sum()
    vx, vy = (w * (x[0, 0] - mx) ** 2).sum(), (w * (y[0, 0] - my) ** 2).sum()
    cxy = (w * (x[0, 0] - mx) * (y[0, 0] - my)).sum()
    c1, c2 = 0.01**2, 0.03**2
    expected = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    np.testing.assert_allclose(M.ssim(x, y, kernel_size=7), [expected], rtol=1e-9)


def test_ssim_valid_map_matches_brute_force(rng: np.random.Generator) -> None:
    x, y = rng.random((1, 2, 9, 10)), rng.random((1, 2, 9, 10))
    k, c1, c2 = 5, 0.01**2, 0.03**2
    r = np.arange(k) - 2.0
    g = np.exp(-(r**2) / 2)
    w = np.outer(g, g) / np.outer(g, g).sum()
    vals = []
    for c in range(2):
        for i in range(9 - k + 1):
            for j in range(10 - k + 1):
                px, py = x[0, c, i : i + k, j : j + k], y[0, c, i : i + k, j : j + k]
                mx, my = (w * px).sum(), (w * py).sum()
                vx, vy = (w * px**2).sum() - mx**2, (w * py**2).sum() - my**2
                cxy = (w * px * py).sum() - mx * my
                vals.append(
                    ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
                )
    np.testing.assert_allclose(M.ssim(x, y, kernel_size=k, sigma=1.0), [np.mean(vals)], rtol=1e-9)


def test_ssim_kernel_one_is_pixelwise_luminance(rng: np.random.Generator) -> None:
    x, y = rng.random((2, 3, 5, 5)), rng.random((2, 3, 5, 5))
    c1 = 0.01**2
    expected = ((2 * x * y + c1) / (x**2 + y**2 + c1)).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(M.ssim(x, y, kernel_size=1), expected, rtol=1e-9)


def test_ssim_symmetric_and_decreases_with_noise(rng: np.random.Generator) -> None:
    x = rng.random((1, 3, 32, 32))
    noisy = [np.clip(x + s * rng.standard_normal(x.shape), 0, 1) for s in (0.02, 0.1, 0.3)]
    np.testing.assert_allclose(M.ssim(x, noisy[1]), M.ssim(noisy[1], x), rtol=1e-12)
    scores = [M.ssim(n, x)[0] for n in noisy]
    assert scores[0] > scores[1] > scores[2]


def test_ssim_keyword_only_and_validated() -> None:
    x = np.zeros((1, 3, 16, 16))
    with pytest.raises(TypeError):
        M.ssim(x, x, 1.0)  # type: ignore[misc]  # the GLASS slot bug cannot happen
    with pytest.raises(ValueError, match="odd"):
        M.ssim(x, x, kernel_size=4)
    with pytest.raises(ValueError, match="smaller"):
        M.ssim(x, x, kernel_size=17)


# --------------------------------------------------------------------------- linear_r2


def test_linear_r2_recovers_linear_map(rng: np.random.Generator) -> None:
    a, b = np.array([[1.0, -2.0, 0.5], [0.0, 3.0, 1.0]]), np.array([0.3, -1.0])
    x = rng.standard_normal((400, 3))
    y = x @ a.T + b + 1e-3 * rng.standard_normal((400, 2))
    out = M.linear_r2(x[:200], y[:200], x[200:], y[200:])
    assert out["r2"] > 0.9999
    np.testing.assert_allclose(out["coef"], a, atol=1e-3)
    np.testing.assert_allclose(out["intercept"], b, atol=1e-3)
    assert out["rmse"] == pytest.approx(1e-3, rel=0.2)


def test_linear_r2_known_offset_on_test() -> None:
    x = np.arange(10.0)
    out = M.linear_r2(x, 2 * x + 1, x, 2 * x + 1.5)  # every test prediction off by 0.5
    sst = np.sum((x - x.mean()) ** 2) * 4
    assert out["rmse"] == pytest.approx(0.5)
    assert out["r2"] == pytest.approx(1 - 10 * 0.25 / sst)
    assert out["coef"].shape == (1, 1)


def test_linear_r2_independent_is_near_zero(rng: np.random.Generator) -> None:
    x, y = rng.standard_normal((600, 3)), rng.standard_normal((600, 2))
    out = M.linear_r2(x[:300], y[:300], x[300:], y[300:])
    assert out["r2"] < 0.03 and out["r2_per_dim"].shape == (2,)


# --------------------------------------------------------------------------- angle_match


def _unit(deg: float) -> list[float]:
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def test_angle_match_known_angles() -> None:
    true = np.array([[1.0, 0.0]] * 4)
    assert M.angle_match(true * 3, true) == (1.0, 4)
    assert M.angle_match(-true, true) == (0.0, 4)
    assert M.angle_match(np.array([_unit(30)] * 4) * 0.1, true) == (1.0, 4)
    assert M.angle_match(np.array([_unit(60)] * 4), true) == (0.0, 4)
    pred = np.array([_unit(10), _unit(-40), _unit(50), _unit(180)])
    assert M.angle_match(pred, true) == (0.5, 4)


def test_angle_match_skips_small_true_and_misses_zero_pred() -> None:
    true = np.array([[1.0, 0.0], [0.0, 1e-9], [0.0, 2.0]])
    pred = np.array([[1.0, 0.1], [0.0, 1.0], [0.0, 0.0]])
    assert M.angle_match(pred, true, min_norm=1e-3) == (0.5, 2)
    frac, n = M.angle_match(pred[1:2], true[1:2], min_norm=1e-3)
    assert math.isnan(frac) and n == 0


# --------------------------------------------------------------------------- nmi


def test_nmi_relabelled_partition_is_one() -> None:
    a = np.array([0, 0, 1, 1, 2, 2, 2])
    assert M.nmi(a, np.array([5, 5, 9, 9, 7, 7, 7])) == pytest.approx(1.0)
    assert M.nmi(a, np.array(list("xxyyzzz"))) == pytest.approx(1.0)


def test_nmi_exactly_independent_is_zero() -> None:
    a, b = np.repeat(np.arange(3), 4), np.tile(np.arange(4), 3)
    assert M.nmi(a, b) == pytest.approx(0.0, abs=1e-12)


def test_nmi_hand_computed() -> None:
    # joint p: (0,0)=1/2, (1,0)=1/4, (1,1)=1/4; marginals a=(1/2,1/2), b=(3/4,1/4)
    mi = 0.5 * math.log(4 / 3) + 0.25 * math.log(2 / 3) + 0.25 * math.log(2)
    ha, hb = math.log(2), -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    expected = mi / ((ha + hb) / 2)
    assert expected == pytest.approx(0.343712, abs=1e-6)
    assert M.nmi([0, 0, 1, 1], [0, 0, 0, 1]) == pytest.approx(expected, rel=1e-12)
    assert M.nmi([0, 0, 0, 1], [0, 0, 1, 1]) == pytest.approx(expected, rel=1e-12)


def test_nmi_single_clusters() -> None:
    assert M.nmi([1, 1, 1], [4, 4, 4]) == 1.0
    assert M.nmi([1, 1, 1, 1], [0, 1, 0, 1]) == 0.0


# --------------------------------------------------------------------------- hungarian_accuracy


def test_hungarian_permuted_labels() -> None:
    true = np.array([0, 0, 1, 1, 2, 2])
    acc, mapping = M.hungarian_accuracy((true + 1) % 3, true)
    assert acc == 1.0 and mapping == {1: 0, 2: 1, 0: 2}


def test_hungarian_known_confusion() -> None:
    # confusion pred x true: [[1, 2], [3, 0]] -> best matching 0->1, 1->0: (2 + 3) / 6
    acc, mapping = M.hungarian_accuracy([0, 0, 0, 1, 1, 1], [0, 1, 1, 0, 0, 0])
    assert acc == pytest.approx(5 / 6) and mapping == {0: 1, 1: 0}


def test_hungarian_more_predicted_than_true_classes() -> None:
    acc, mapping = M.hungarian_accuracy([0, 0, 1, 1, 2, 2], ["a", "a", "b", "b", "b", "b"])
    assert acc == pytest.approx(4 / 6) and len(mapping) == 2 and mapping[0] == "a"


# --------------------------------------------------------------------------- delta_mse


def test_delta_mse_exact_displacement_per_action_is_zero() -> None:
    actions = np.array([0, 1, 0, 2, 1])
    table = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    assert M.delta_mse(actions, table[actions]) == 0.0


def test_delta_mse_two_clusters_known_value() -> None:
    actions = np.array([0, 0, 1, 1, 1])
    disp = np.array([[0.0, 0.0], [2.0, 0.0], [1.0, 1.0], [1.0, 1.0], [1.0, 4.0]])
    # action 0: mean (1, 0), sq. distances 1, 1 -> 1; action 1: mean (1, 2), 1, 1, 4 -> 2
    assert M.delta_mse(actions, disp) == pytest.approx((2 * 1 + 3 * 2) / 5)
    assert M.delta_mse(actions, disp, weighting="action") == pytest.approx(1.5)
    with pytest.raises(ValueError, match="weighting"):
        M.delta_mse(actions, disp, weighting="bogus")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- delta_acc


def test_delta_acc_separable_clusters_held_out(rng: np.random.Generator) -> None:
    centers = np.array([[3.0, 0.0], [-3.0, 0.0], [0.0, 3.0], [0.0, -3.0]])
    labels = rng.integers(0, 4, 400)
    disp = centers[labels] + 0.3 * rng.standard_normal((400, 2))
    acc = M.delta_acc(labels[:200] + 10, disp[:200], labels[200:] + 10, disp[200:])
    assert acc >= 0.99


def test_delta_acc_random_labels_is_chance(rng: np.random.Generator) -> None:
    disp = rng.standard_normal((2400, 2))
    labels = rng.integers(0, 4, 2400)
    acc = M.delta_acc(labels[:400], disp[:400], labels[400:], disp[400:])
    assert abs(acc - 0.25) < 0.05


def test_delta_acc_unseen_and_single_class() -> None:
    disp = np.array([[1.0, 0.0], [1.1, 0.0], [-1.0, 0.0], [-1.1, 0.0]])
    assert M.delta_acc([0, 0, 1, 1], disp, [0, 2], disp[[0, 2]]) == 0.5
    assert M.delta_acc([3, 3], disp[:2], [3, 4], disp[2:]) == 0.5


# --------------------------------------------------------------------------- controllability


def test_controllability_delta_psnr() -> None:
    assert M.controllability_delta_psnr([30.0, 32.0], [29.0, 29.0]) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="finite"):
        M.controllability_delta_psnr([np.inf], [20.0])


# --------------------------------------------------------------------------- mask_iou


def test_mask_iou_identical_disjoint_and_half_overlap() -> None:
    true = np.zeros((3, 8, 8), dtype=bool)
    true[:, :, 2:6] = True
    pred = np.zeros((3, 8, 8))
    pred[0] = true[0] * 0.9
    pred[1, :, 6:] = 1.0
    pred[2, :, 0:4] = 0.8  # columns 0-3 vs 2-5: 2 shared of 6 -> 1/3
    np.testing.assert_allclose(M.mask_iou(pred, true), [1.0, 0.0, 1 / 3])


def test_mask_iou_empty_union_threshold_and_channel_axis() -> None:
    pred = np.full((2, 1, 4, 4), 0.5)  # exactly at threshold: empty
    true = np.zeros((2, 1, 4, 4), dtype=np.uint8)
    true[1, 0, 0, 0] = 1
    np.testing.assert_allclose(M.mask_iou(pred, true), [1.0, 0.0])
    with pytest.raises(ValueError, match="0 and 1"):
        M.mask_iou(pred, true * 0.5)


def test_metric_keys_are_slash_namespaced() -> None:
    assert all(k.startswith("eval/") and k.count("/") == 2 for k in M.METRIC_KEYS.values())
