"""Side-by-side videos, plots and the HTML report (latentplay.evaluation.report)."""

from __future__ import annotations

import math
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from latentplay.evaluation.report import (
    BANNER,
    ReportSection,
    format_value,
    horizon_plot,
    metric_bars,
    side_by_side_frames,
    side_by_side_video,
    write_report,
)

T, H, W, SCALE = 4, 8, 8, 4


def _clips() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Truth is a mid-grey clip; "model" matches it except a white right half; "copy" is frame 0."""
    rng = np.random.default_rng(0)
    true = np.full((T, H, W, 3), 100, np.uint8)
    true[:, :, : W // 2] += rng.integers(0, 50, (T, H, W // 2, 3), dtype=np.uint8)
    model = true.copy()
    model[:, :, W // 2 :] = 255  # differs by 155 -> |diff| x2 clips at 255
    copy = np.repeat(true[:1], T, axis=0)
    return true, {"model": model, "copy": copy}


def _diff_column(frames: np.ndarray, n_pred: int) -> np.ndarray:
    """The |difference| column's picture area of composed frames ``(T, h, w, 3)``."""
    cw = W * SCALE
    return frames[:, BANNER : BANNER + H * SCALE, (1 + n_pred) * cw : (2 + n_pred) * cw]


def test_side_by_side_frames_layout_and_difference():
    true, preds = _clips()
    frames = side_by_side_frames(true, preds, scale=SCALE)
    assert frames.shape == (T, 2 * BANNER + H * SCALE, (2 + len(preds)) * W * SCALE, 3)
    assert frames.dtype == np.uint8
    # Truth and predictions are upscaled copies of the inputs.
    body = frames[:, BANNER : BANNER + H * SCALE]
    np.testing.assert_array_equal(body[:, ::SCALE, : W * SCALE : SCALE], true)
    np.testing.assert_array_equal(
        body[:, ::SCALE, W * SCALE : 2 * W * SCALE : SCALE], preds["model"]
    )
    # The difference column is of the *first* prediction: black where equal, white where not.
    diff = _diff_column(frames, len(preds))
    half = W * SCALE // 2
    assert diff[:, :, :half].max() == 0
    assert diff[:, :, half:].min() == 255
    # Labels are drawn: the banners are not plain background, and the counter changes per frame.
    assert frames[0, :BANNER].max() == 255
    assert not np.array_equal(frames[0, -BANNER:], frames[1, -BANNER:])


def test_difference_is_amplified_and_clipped():
    true = np.full((1, 2, 2, 3), 100, np.uint8)
    pred = true.copy()
    pred[0, 0, 0] = [110, 100, 100]  # |diff| 10 -> 20
    pred[0, 1, 1] = [100, 100, 0]  # |diff| 100 -> 200
    frames = side_by_side_frames(true, {"m": pred}, scale=1)
    diff = frames[0, BANNER : BANNER + 2, 4:6]
    assert diff[0, 0].tolist() == [20, 20, 20]
    assert diff[1, 1].tolist() == [200, 200, 200]
    assert diff[0, 1].tolist() == [0, 0, 0]


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_side_by_side_video_reads_back(tmp_path: Path, suffix: str):
    true, preds = _clips()
    path = side_by_side_video(true, preds, tmp_path / f"cmp{suffix}", fps=5, scale=SCALE)
    assert path == tmp_path / f"cmp{suffix}" and path.stat().st_size > 0
    video = iio.imread(path)
    assert video.shape == (T, 2 * BANNER + H * SCALE, (2 + len(preds)) * W * SCALE, 3)
    # Lossy encoding: compare away from the edge between the black and white halves.
    diff = _diff_column(video, len(preds)).astype(int)
    half = W * SCALE // 2
    assert diff[:, 2:-2, 2 : half - 4].max() < 40
    assert diff[:, 2:-2, half + 4 : -2].min() > 215
    assert not list(tmp_path.glob(".*tmp"))  # the atomic write left nothing behind


def test_side_by_side_errors_name_the_key_and_shapes(tmp_path: Path):
    true, preds = _clips()
    with pytest.raises(ValueError, match=r"'copy'.*\(3, 8, 8, 3\).*\(4, 8, 8, 3\)"):
        side_by_side_video(true, {"model": preds["model"], "copy": true[:3]}, tmp_path / "a.mp4")
    with pytest.raises(ValueError, match="uint8"):
        side_by_side_frames(true, {"model": preds["model"].astype(np.float32)})
    with pytest.raises(ValueError, match="at least one"):
        side_by_side_frames(true, {})
    with pytest.raises(ValueError, match=r"\.mp4 or \.gif"):
        side_by_side_video(true, preds, tmp_path / "a.avi")


def test_horizon_plot_and_bars_are_pngs(tmp_path: Path):
    curves = {
        "model": {"mean": [0.1, 0.2, 0.3, 0.5], "lo": [0.05, 0.1, 0.2, 0.3], "hi": [0.2] * 4},
        "copy": {"mean": [0.3, 0.4, math.nan, 0.6]},
    }
    png = horizon_plot(curves, tmp_path / "plots" / "mse.png", ylabel="MSE", title="error")
    img = iio.imread(png)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100 and img.shape[2] in (3, 4)
    assert img[..., :3].std() > 0  # something was drawn

    values = {"push": {"model": 0.8, "copy": 0.2}, "remove": {"model": 0.5, "copy": math.nan}}
    bars = metric_bars(values, tmp_path / "bars.png", ylabel="success", title="per kind")
    img = iio.imread(bars)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert not list(tmp_path.rglob(".*tmp"))


def test_plot_errors(tmp_path: Path):
    with pytest.raises(ValueError, match=r"'model'.*'mean'"):
        horizon_plot({"model": {"avg": [1.0]}}, tmp_path / "a.png", ylabel="y", title="t")
    with pytest.raises(ValueError, match=r"'model'.*lo=2"):
        horizon_plot(
            {"model": {"mean": [1.0, 2, 3], "lo": [0, 1], "hi": [2, 3, 4]}},
            tmp_path / "a.png",
            ylabel="y",
            title="t",
        )
    with pytest.raises(ValueError, match="only one"):
        horizon_plot({"m": {"mean": [1.0], "lo": [0.0]}}, tmp_path / "a.png", ylabel="y", title="t")
    with pytest.raises(ValueError, match=r"\.png"):
        metric_bars({"g": {"m": 1.0}}, tmp_path / "a.jpg", ylabel="y", title="t")
    assert not list(tmp_path.iterdir())


def test_format_value():
    assert format_value(math.nan) == "n/a"
    assert format_value(np.float32("nan")) == "n/a"
    assert format_value(0.123456) == "0.123"
    assert format_value(12.3456) == "12.3"
    assert format_value(0.0012345) == "0.00123"
    assert format_value(np.float64(1234.5)) == "1234"
    assert format_value(1.5e-7) == "1.50e-07"
    assert format_value(0.0) == "0"
    assert format_value(7) == "7" and format_value(True) == "True" and format_value(None) == ""


def test_write_report(tmp_path: Path):
    true, preds = _clips()
    video = side_by_side_video(true, preds, tmp_path / "videos" / "query 0.mp4", scale=2)
    gif = side_by_side_video(true, preds, tmp_path / "videos" / "query0.gif", scale=1)
    png = horizon_plot(
        {"model": {"mean": [1.0, 2.0]}}, tmp_path / "mse.png", ylabel="MSE", title="t"
    )
    summary = [
        {"predictor": "model", "mse": 0.012345, "psnr": 27.123},
        {"predictor": "copy", "mse": float("nan"), "success": 3},
    ]
    sections = [
        ReportSection(
            "Errors <by horizon>",
            text="Model beats copy.\nSecond line.\n\nx < y & <script>",
            table=[{"kind": "push", "delta": -0.5}],
            images=[png],
            videos=[video, gif],
        ),
        ReportSection("Empty"),
    ]
    path = write_report(
        tmp_path,
        title="a < b & c",
        summary_rows=summary,
        sections=sections,
        provenance={"git_commit": "abc1234", "config": "<cfg>"},
    )
    assert path == tmp_path / "report.html"
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert "<title>a &lt; b &amp; c</title>" in page and "<h1>a &lt; b &amp; c</h1>" in page
    assert "a < b" not in page
    assert "abc1234" in page and "&lt;cfg&gt;" in page and "generated" in page
    # Summary columns are the union of keys, in first-seen order.
    header = page.index("<th>predictor</th>")
    cols = [page.index(f"<th>{c}</th>", header) for c in ("predictor", "mse", "psnr", "success")]
    assert cols == sorted(cols)
    for cell in ("model", "copy", "0.0123", "27.1", "n/a", "3", "push", "-0.500"):
        assert f">{cell}</td>" in page, cell
    assert '<td class="num">n/a</td>' in page and ">nan<" not in page.lower()
    # Section text is escaped; section titles too.
    assert "x &lt; y &amp; &lt;script&gt;" in page and "<script" not in page
    assert "Errors &lt;by horizon&gt;" in page
    # Media are linked relative to the report folder (URL-quoted), and exist.
    assert '<img src="mse.png"' in page
    assert '<video controls loop muted src="videos/query%200.mp4"' in page
    assert '<img class="pixels" src="videos/query0.gif"' in page
    assert str(tmp_path) not in page
    # Self-contained: no external URLs or scripts.
    assert "http://" not in page and "https://" not in page and "<link" not in page


def test_write_report_default_provenance(tmp_path: Path):
    path = write_report(tmp_path / "run", title="t", summary_rows=[], sections=[])
    page = path.read_text(encoding="utf-8")
    assert "git_commit" in page and "package_version" in page


def test_write_report_rejects_missing_and_outside_files(tmp_path: Path):
    out = tmp_path / "run"
    out.mkdir()
    missing = out / "plots" / "gone.png"
    with pytest.raises(FileNotFoundError, match=r"gone\.png"):
        write_report(
            out, title="t", summary_rows=[], sections=[ReportSection("s", images=[missing])]
        )
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes(b"\x89PNG")
    with pytest.raises(ValueError, match=r"elsewhere\.png.*outside"):
        write_report(
            out, title="t", summary_rows=[], sections=[ReportSection("s", images=[outside])]
        )
    sneaky = out / ".." / "elsewhere.png"
    with pytest.raises(ValueError, match="outside"):
        write_report(
            out, title="t", summary_rows=[], sections=[ReportSection("s", images=[sneaky])]
        )
    assert not (out / "report.html").exists()
