"""What every benchmark shares: the machine it ran on, its Markdown table and its JSON file.

Each figure is the median of several repeats; ratios are taken against anchors measured in the
same process, so machine speed cancels out. Results print as a table and go to JSON with the
machine, versions and environment they were measured under.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

from latentplay.utils.io import provenance, write_json_atomic


def machine() -> dict[str, Any]:
    import gymnasium
    import mujoco

    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "mujoco": mujoco.__version__,
        "gymnasium": gymnasium.__version__,
        "MUJOCO_GL": os.environ.get("MUJOCO_GL"),
        "LP_NUM_THREADS": os.environ.get("LP_NUM_THREADS"),
        **provenance(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> str:
    """Markdown table: columns are (key, header, format spec); a row without a key shows a
    dash there (a row that says why it was not measured)."""
    head = "| " + " | ".join(h for _, h, _ in columns) + " |"
    sep = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(columns))) + "|"

    def cell(r: dict[str, Any], k: str, f: str) -> str:
        if k not in r:
            return "-"
        return format(r[k], f) if f else str(r[k])

    body = ["| " + " | ".join(cell(r, k, f) for k, _, f in columns) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def save(path: str | Path, kind: str, rows: list[dict[str, Any]], command: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(
        path, {"benchmark": kind, "command": command, "machine": machine(), "rows": rows}
    )
    return path
