"""Outputs for people: side-by-side videos, error-vs-horizon plots and one ``report.html`` per run.

Everything here only *presents* numbers computed elsewhere (counterfactual query suites,
planning runs). Files are written atomically; plots use matplotlib's Agg canvas directly, so
importing this module never changes the caller's matplotlib backend.

- :func:`side_by_side_video` -- ground truth | each prediction | amplified |difference|.
- :func:`horizon_plot` -- a metric against horizon step 1..H, one line (and band) per predictor.
- :func:`metric_bars` -- grouped bars, e.g. per intervention kind or planning success rates.
- :func:`write_report` -- a self-contained HTML page (inline CSS, no scripts or external assets)
  linking the files above by paths relative to the report's folder.
"""

from __future__ import annotations

import datetime as _dt
import html
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from latentplay.rollouts.video import upscale, write_video
from latentplay.utils.io import atomic_path
from latentplay.utils.io import provenance as _default_provenance

BANNER = 16  # pixels of label strip above the frames (and of the frame-counter strip below)
_BANNER_BG = (32, 32, 32)
_TEXT = (255, 255, 255)
_DPI = 120
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp")
VIDEO_SUFFIXES = (".mp4", ".webm")

# --------------------------------------------------------------------------------------------
# Videos
# --------------------------------------------------------------------------------------------


def _check_frames(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"{name}: shape {x.shape}; expected (T, H, W, 3) frames")
    if x.dtype != np.uint8:
        raise ValueError(f"{name}: dtype {x.dtype}; expected uint8 frames (0..255)")
    return x


def _put_label(strip: np.ndarray, text: str, x0: int, width: int) -> None:
    """Draw ``text`` left-aligned into ``strip[:, x0:x0+width]`` (in place), shrunk to fit."""
    import cv2

    font, margin = cv2.FONT_HERSHEY_PLAIN, 2
    room = width - 2 * margin
    if room <= 0 or not text:
        return
    size = 1.0
    while size > 0.5 and cv2.getTextSize(text, font, size, 1)[0][0] > room:
        size -= 0.1
    while len(text) > 1 and cv2.getTextSize(text, font, size, 1)[0][0] > room:
        text = text[:-1]  # still too wide at the smallest size: cut it
    (_, h), _ = cv2.getTextSize(text, font, size, 1)
    y = (strip.shape[0] + h) // 2
    # Draw on a view of the column so long text can never spill into the neighbour.
    cell = np.ascontiguousarray(strip[:, x0 : x0 + width])
    cv2.putText(cell, text, (margin, y), font, size, _TEXT, 1, cv2.LINE_AA)
    strip[:, x0 : x0 + width] = cell


def difference_frames(true: np.ndarray, pred: np.ndarray, amplify: float = 2.0) -> np.ndarray:
    """Grey ``(T, H, W, 3) uint8``: max-over-channels ``|pred - true|`` times ``amplify``, clipped.

    Black where the prediction equals the truth, bright where they differ.
    """
    diff = np.abs(pred.astype(np.int16) - true.astype(np.int16)).max(axis=-1)
    grey = np.clip(diff.astype(np.float32) * amplify, 0, 255).round().astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def side_by_side_frames(
    true: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    *,
    scale: int = 4,
    t0: int = 1,
    amplify: float = 2.0,
) -> np.ndarray:
    """Compose the labelled grid that :func:`side_by_side_video` writes.

    ``true`` and each prediction are ``(T, H, W, 3) uint8``. Returns
    ``(T, BANNER + H*scale + BANNER, (2 + len(predictions)) * W*scale, 3) uint8``: columns are
    truth, each prediction (dict order), then the amplified |difference| of the *first*
    prediction vs truth; a label strip above the columns and a strip below with ``t=<t0 + i>``.
    """
    true = _check_frames(true, "true")
    if not predictions:
        raise ValueError("predictions is empty; expected at least one {name: (T, H, W, 3)} entry")
    if scale < 1:
        raise ValueError(f"scale={scale}; expected an integer >= 1")
    preds = {}
    for key, value in predictions.items():
        value = _check_frames(value, f"predictions[{key!r}]")
        if value.shape != true.shape:
            raise ValueError(
                f"predictions[{key!r}] has shape {value.shape} but true has shape {true.shape}; "
                "expected the same (T, H, W, 3)"
            )
        preds[str(key)] = value
    first = next(iter(preds))
    columns = [("truth", true), *preds.items()]
    columns.append((f"|{first}-truth|x{amplify:g}", difference_frames(true, preds[first], amplify)))

    t, h, w, _ = true.shape
    cw = w * scale
    body = np.concatenate([upscale(frames, scale) for _, frames in columns], axis=2)
    top = np.empty((BANNER, body.shape[2], 3), np.uint8)
    top[:] = _BANNER_BG
    for k, (label, _) in enumerate(columns):
        _put_label(top, label, k * cw, cw)
    out = np.empty((t, BANNER + h * scale + BANNER, body.shape[2], 3), np.uint8)
    out[:, :BANNER] = top
    out[:, BANNER : BANNER + h * scale] = body
    for i in range(t):
        bottom = out[i, BANNER + h * scale :]
        bottom[:] = _BANNER_BG
        _put_label(bottom, f"t={t0 + i}", 0, bottom.shape[1])
    return out


def side_by_side_video(
    true: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    path: str | Path,
    fps: float = 5,
    scale: int = 4,
    *,
    t0: int = 1,
    amplify: float = 2.0,
) -> Path:
    """Write ground truth | each prediction | |difference| as a ``.mp4`` or ``.gif``, atomically.

    ``true`` and each value of ``predictions`` (e.g. ``{"model": ..., "copy": ...}``) are
    ``(T, H, W, 3) uint8``. One video frame per time step, ``(2 + len(predictions)) * W*scale``
    pixels wide (see :func:`side_by_side_frames`); the last column is ``|first prediction -
    truth|`` times ``amplify``. Frames are labelled ``t=t0``, ``t=t0+1``, ... Returns ``path``.
    """
    frames = side_by_side_frames(true, predictions, scale=scale, t0=t0, amplify=amplify)
    return write_video(frames, path, fps=fps, scale=1)


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------


def _new_figure(figsize: tuple[float, float]) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig


def _save_png(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"{path}: expected a .png file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=_DPI)
    return path


def _series(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name}: shape {arr.shape}; expected a non-empty 1-D list of values")
    return arr


def horizon_plot(
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    path: str | Path,
    *,
    ylabel: str,
    title: str,
) -> Path:
    """PNG of a metric against horizon step ``1..H``, one line per predictor.

    ``curves[predictor]["mean"]`` holds ``H`` per-step values; optional ``"lo"`` and ``"hi"``
    (both or neither, same length) are shaded as a band. NaN values leave gaps. Returns ``path``.
    """
    if not curves:
        raise ValueError("curves is empty; expected {predictor: {'mean': [...], ...}}")
    from matplotlib.ticker import MaxNLocator

    fig = _new_figure((6.0, 4.0))
    ax = fig.add_subplot()
    for predictor, series in curves.items():
        if "mean" not in series:
            raise ValueError(
                f"curves[{predictor!r}] has keys {sorted(series)}; expected a 'mean' series "
                "(and optionally 'lo' and 'hi')"
            )
        mean = _series(series["mean"], f"curves[{predictor!r}]['mean']")
        steps = np.arange(1, len(mean) + 1)
        (line,) = ax.plot(
            steps, mean, marker="o" if len(mean) <= 30 else None, ms=3, label=str(predictor)
        )
        has = [k in series for k in ("lo", "hi")]
        if any(has) and not all(has):
            raise ValueError(
                f"curves[{predictor!r}] has only one of 'lo'/'hi'; expected both or neither"
            )
        if all(has):
            lo = _series(series["lo"], f"curves[{predictor!r}]['lo']")
            hi = _series(series["hi"], f"curves[{predictor!r}]['hi']")
            if not len(lo) == len(hi) == len(mean):
                raise ValueError(
                    f"curves[{predictor!r}]: lengths mean={len(mean)}, lo={len(lo)}, "
                    f"hi={len(hi)}; expected all equal"
                )
            ax.fill_between(steps, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("horizon step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save_png(fig, path)


def metric_bars(
    values: Mapping[str, Mapping[str, float]],
    path: str | Path,
    *,
    ylabel: str,
    title: str,
) -> Path:
    """PNG of grouped bars: ``values[group][predictor] -> value``.

    Groups (e.g. intervention kinds, tasks) along x; one bar per predictor inside each group, in
    first-seen order, labelled with its value. Missing or NaN values draw no bar. Returns ``path``.
    """
    if not values:
        raise ValueError("values is empty; expected {group: {predictor: value}}")
    groups = [str(g) for g in values]
    predictors: list[str] = []
    for row in values.values():
        predictors += [p for p in row if p not in predictors]
    if not predictors:
        raise ValueError("values has no predictors; expected {group: {predictor: value}}")
    fig = _new_figure((max(5.0, 2.2 + 0.5 * len(groups) * len(predictors)), 4.0))
    ax = fig.add_subplot()
    x = np.arange(len(groups))
    width = 0.8 / len(predictors)
    for k, predictor in enumerate(predictors):
        heights = np.array(
            [float(row.get(predictor, math.nan)) for row in values.values()], dtype=np.float64
        )
        bars = ax.bar(x + (k - (len(predictors) - 1) / 2) * width, heights, width, label=predictor)
        labels = ["" if not math.isfinite(v) else format_value(float(v)) for v in heights]
        ax.bar_label(bars, labels=labels, fontsize=7, padding=1)
    ax.set_xticks(x, groups, rotation=30 if sum(map(len, groups)) > 40 else 0, ha="center")
    ax.set_ylabel(ylabel)
    ax.set_title(title, loc="left")  # a narrow plot (few bars) must not clip it
    ax.grid(axis="y", alpha=0.3)
    ax.margins(y=0.12)  # room for the value labels
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _save_png(fig, path)


# --------------------------------------------------------------------------------------------
# Tables for the terminal
# --------------------------------------------------------------------------------------------


def metrics_table(results: dict[str, Any], rows: list[tuple[str, str, str]]) -> str:
    """Markdown table of ``rows`` = (key, label, target) present in ``results``."""
    lines = ["| metric | value | target |", "|---|---:|---|"]
    for key, label, target in rows:
        if key in results:
            v = results[key]
            value = f"{v:.3f}" if isinstance(v, float) else str(v)
            lines.append(f"| {label} | {value} | {target} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# HTML report
# --------------------------------------------------------------------------------------------


def included_name(folder: Path) -> str:
    """A folder name under a report's ``included/`` that two runs' folders of the same name
    (``runs/a/poke``, ``runs/b/poke``) do not share: its parent's name and its own."""
    folder = Path(folder).resolve()
    return f"{folder.parent.name}-{folder.name}"


def copy_media(files: Sequence[str | Path], dest: str | Path) -> list[Path]:
    """Copy ``files`` (another run's videos or plots) into the folder ``dest``, so a report
    can link them (it links only files inside its own folder); returns the copies' paths."""
    import shutil

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    copied = []
    for f in files:
        shutil.copyfile(f, dest / Path(f).name)
        copied.append(dest / Path(f).name)
    return copied


@dataclass
class ReportSection:
    """One section of :func:`write_report`: text (plain, escaped), an optional table and media.

    ``images`` (``.png``, ``.jpg``, ``.gif``, ...) and ``videos`` (``.mp4``/``.webm`` as a
    ``<video>``; ``.gif`` as an ``<img>``) must be existing files inside the report folder;
    relative paths are read from the working directory, like any path (so pass e.g.
    ``out_dir / "errors.png"``, as returned by :func:`horizon_plot`).
    """

    title: str
    text: str = ""
    table: list[dict] | None = None
    images: list[Path] = field(default_factory=list)
    videos: list[Path] = field(default_factory=list)


def format_value(value: Any) -> str:
    """A table cell: floats to 3 significant digits, NaN as ``n/a``, ``None`` as empty."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None:
        return ""
    if isinstance(value, bool | int | str):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if value == 0:
            return "0"
        mag = math.floor(math.log10(abs(value)))
        if -3 <= mag <= 4:
            return f"{value:.{max(0, 2 - mag)}f}"
        return f"{value:.2e}"
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _table_html(rows: Sequence[Mapping[str, Any]]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for c in columns:
            v = row.get(c)
            cls = ' class="num"' if _is_number(v) else ""
            cells.append(f"<td{cls}>{html.escape(format_value(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        '<div class="scroll"><table>\n<thead><tr>'
        + head
        + "</tr></thead>\n<tbody>\n"
        + "\n".join(body)
        + "\n</tbody></table></div>"
    )


def _relative(file: str | Path, out_dir: Path) -> str:
    """``file`` as a URL relative to ``out_dir``; it must exist inside ``out_dir``."""
    path = Path(file)
    rel = None
    for a, b in (
        (os.path.abspath(path), os.path.abspath(out_dir)),
        (path.resolve(), out_dir.resolve()),
    ):
        try:
            rel = Path(a).relative_to(b)
            break
        except ValueError:
            continue
    if rel is None:
        raise ValueError(
            f"{file}: outside the report folder {out_dir}; expected a file inside it "
            "(the page links its files by relative paths)"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{file}: no such file to link from {out_dir / 'report.html'}")
    return quote(rel.as_posix())


def _media_html(section: ReportSection, out_dir: Path) -> str:
    parts = []
    for image in section.images:
        if Path(image).suffix.lower() not in IMAGE_SUFFIXES:
            raise ValueError(f"{image}: not an image; expected one of {IMAGE_SUFFIXES}")
        src = html.escape(_relative(image, out_dir))
        alt = html.escape(Path(image).name)
        parts.append(
            f'<figure><img src="{src}" alt="{alt}"><figcaption>{alt}</figcaption></figure>'
        )
    for video in section.videos:
        suffix = Path(video).suffix.lower()
        if suffix != ".gif" and suffix not in VIDEO_SUFFIXES:
            raise ValueError(f"{video}: not a video; expected one of {(*VIDEO_SUFFIXES, '.gif')}")
        src = html.escape(_relative(video, out_dir))
        name = html.escape(Path(video).name)
        if suffix == ".gif":
            tag = f'<img class="pixels" src="{src}" alt="{name}">'
        else:
            tag = f'<video controls loop muted src="{src}"></video>'
        parts.append(f"<figure>{tag}<figcaption>{name}</figcaption></figure>")
    return '<div class="media">' + "\n".join(parts) + "</div>" if parts else ""


def _text_html(text: str) -> str:
    paragraphs = [p.strip() for p in text.replace("\r\n", "\n").split("\n\n")]
    return "\n".join(
        "<p>" + html.escape(p).replace("\n", "<br>\n") + "</p>" for p in paragraphs if p
    )


_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
       max-width: 1200px; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
.provenance { color: #666; font-size: 0.9em; }
.provenance span { margin-right: 1.2em; }
.scroll { overflow-x: auto; margin: 0.8em 0; }
table { border-collapse: collapse; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fafafa; }
nav ol { padding-left: 1.5em; }
.media { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
figure { margin: 0; }
figure img, figure video { max-width: 100%; }
video, img.pixels { image-rendering: pixelated; }
figcaption { color: #666; font-size: 0.85em; }
"""


def write_report(
    out_dir: str | Path,
    *,
    title: str,
    summary_rows: Sequence[Mapping[str, Any]],
    sections: Sequence[ReportSection],
    provenance: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``out_dir/report.html`` atomically and return its path.

    A self-contained page (inline CSS; no scripts, fonts or other external assets): ``title``;
    a provenance line (generation time, then ``provenance`` -- by default the package version
    and git commit); the summary table (columns = union of the rows' keys in first-seen order;
    floats to 3 significant digits; NaN as ``n/a``); then each section. Section images and
    videos are linked by paths relative to ``out_dir``: each must be an existing file inside it
    (``ValueError`` for a file outside, ``FileNotFoundError`` for a missing one, naming it).
    """
    out_dir = Path(out_dir)
    prov: dict[str, Any] = {
        "generated": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    }
    prov.update(_default_provenance() if provenance is None else provenance)
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{esc(title)}</h1>",
        '<p class="provenance">'
        + "".join(f"<span>{esc(str(k))}: {esc(format_value(v))}</span>" for k, v in prov.items())
        + "</p>",
    ]
    if len(sections) > 1:
        parts.append(
            "<nav><ol>"
            + "".join(
                f'<li><a href="#s{i}">{esc(s.title)}</a></li>' for i, s in enumerate(sections, 1)
            )
            + "</ol></nav>"
        )
    if summary_rows:
        parts += ["<h2>Summary</h2>", _table_html(summary_rows)]
    for i, section in enumerate(sections, 1):
        parts.append(f'<section id="s{i}">')
        parts.append(f"<h2>{esc(section.title)}</h2>")
        if section.text:
            parts.append(_text_html(section.text))
        if section.table:
            parts.append(_table_html(section.table))
        media = _media_html(section, out_dir)
        if media:
            parts.append(media)
        parts.append("</section>")
    parts += ["</body>", "</html>", ""]
    page = "\n".join(parts)

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.html"
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path
