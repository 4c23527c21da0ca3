"""The world-model evaluation harness scores what it claims, on synthetic known answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from latentplay.evaluation.action_video import action_video
from latentplay.evaluation.world_model import (
    Transitions,
    action_metrics,
    mask_centroid_motion,
    summary_table,
    wrist_classes,
)
from latentplay.world_models.glass import Glass


def _transitions(rng: np.random.Generator, n: int, perfect: bool) -> Transitions:
    ee = rng.normal(0, 2, (n, 2))
    wrist = rng.choice([-0.15, 0.0, 0.15], n)
    ids = np.select([wrist > 0, wrist < 0], [2, 0], 1)  # a relabelling of the true classes
    shift = 0.5 * ee + (0 if perfect else rng.normal(0, 5, (n, 2)))
    return Transitions(
        shift, ids if perfect else rng.integers(3, size=n), ee, wrist, rng.random(n) < 0.3
    )


def test_wrist_classes() -> None:
    assert wrist_classes(np.array([0.2, -0.2, 0.01, -0.04])).tolist() == [0, 1, 2, 2]


def test_perfect_actions_score_perfectly() -> None:
    rng = np.random.default_rng(0)
    m = action_metrics(_transitions(rng, 400, True), _transitions(rng, 400, True))
    assert m["eval/action/r2"] == pytest.approx(1.0)
    assert m["eval/action/rmse_px_linear"] == pytest.approx(0.0, abs=1e-9)
    assert m["eval/action/angle_match"] == 1.0
    assert m["eval/local/nmi_wrist"] == pytest.approx(1.0)
    assert m["eval/local/hungarian_wrist"] == 1.0
    assert m["eval/local/delta_mse_wrist"] == pytest.approx(0.0)
    assert m["eval/local/delta_acc_wrist"] == 1.0


def test_unrelated_actions_score_at_chance() -> None:
    rng = np.random.default_rng(1)
    m = action_metrics(_transitions(rng, 600, False), _transitions(rng, 600, False))
    assert m["eval/action/r2"] < 0.3
    assert m["eval/local/nmi_wrist"] < 0.05
    assert m["eval/local/hungarian_wrist"] < 0.45
    table = summary_table(m)
    assert "global shift R²" in table and "| metric | value | target |" in table


def test_action_video_is_written(toy_dataset, tmp_path: Path) -> None:
    root = toy_dataset(episodes=12, steps=4, size=32)
    torch.manual_seed(0)
    path = action_video(
        Glass(size="xs", image_size=32, num_actions=2), root, tmp_path / "a.mp4", steps=3
    )
    import imageio.v3 as iio

    video = iio.imread(path)
    assert video.shape[0] == 4  # the real frame and 3 generated
    assert video.shape[2] >= 4 * 32 * 3  # 2 local actions + 4 directions, 4 per row, x3


def test_mask_centroid_motion_is_the_translation_of_a_rigid_mask() -> None:
    masks = np.zeros((3, 16, 16), bool)
    masks[0, 2:5, 3:7] = True
    masks[1, 4:7, 4:8] = True  # +1 px in x, +2 px in y
    masks[2, 1:4, 6:10] = True  # +2 px in x, -3 px in y
    np.testing.assert_allclose(mask_centroid_motion(masks), [[1.0, 2.0], [2.0, -3.0]])
    masks[2] = False  # out of view: no motion to report
    assert np.isnan(mask_centroid_motion(masks)[1]).all()


def test_image_metrics_score_the_copy_baselines_exactly(toy_dataset) -> None:
    """The copy baselines are computed by hand here: copying the previous true frame (one
    step) and holding the first frame (autoregressive horizon)."""
    from latentplay.evaluation import metrics as M
    from latentplay.evaluation.metrics import PSNR_CAP
    from latentplay.evaluation.world_model import image_metrics
    from latentplay.rollouts.format import EpisodeReader

    root = toy_dataset(episodes=6, steps=8, size=32)
    reader = EpisodeReader(root)
    eps = reader.indices("train")[:2]
    torch.manual_seed(0)
    res = image_metrics(Glass(size="xs", image_size=32).eval(), reader, eps, 4, torch.device("cpu"))
    clips = [reader.frames(e)[s : s + 5] / 255.0 for e in eps for s in (0, 5) if s + 5 <= 9]
    one_step = [np.minimum(M.psnr(c[:-1][None], c[1:][None]), PSNR_CAP) for c in clips]
    held = [np.minimum(M.psnr(np.repeat(c[:1], 4, 0)[None], c[1:][None]), PSNR_CAP) for c in clips]
    assert res["eval/image/clips"] == len(clips)
    assert res["eval/image/tf_copy_psnr"] == pytest.approx(np.concatenate(one_step).mean(), 1e-5)
    assert res["eval/image/copy4_psnr"] == pytest.approx(np.concatenate(held).mean(), 1e-5)
    assert res["eval/image/tf_psnr"] < PSNR_CAP  # an untrained model is not a copy
