"""The benchmark command runs and writes what it prints (figures live in docs/BENCHMARKS.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from latentplay.bench.common import table

ROOT = Path(__file__).resolve().parents[1]


def test_table_formats_rows() -> None:
    rows = [{"name": "a", "v": 1234.5}, {"name": "b", "v": 2.0}]
    out = table(rows, [("name", "env", ""), ("v", "steps/s", ".0f")])
    assert out.splitlines() == ["| env | steps/s |", "|---|---:|", "| a | 1234 |", "| b | 2 |"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind, extra", [("envs", ["--steps", "200"]), ("collect", ["--episodes", "20"])]
)
def test_benchmark_command_writes_json(tmp_path: Path, kind: str, extra: list[str]) -> None:
    out = tmp_path / f"{kind}.json"
    args = [sys.executable, str(ROOT / "scripts" / "benchmark.py"), kind, "--repeats", "1"]
    res = subprocess.run([*args, *extra, "--out", str(out)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    data = json.loads(out.read_text())
    assert data["benchmark"] == kind and data["rows"]
    assert all(r["name"] in res.stdout for r in data["rows"])
    assert data["machine"]["git_commit"]


def test_import_benchmark_times_three_stages_against_decoding() -> None:
    from latentplay.bench.importing import bench_import

    rows = bench_import(videos=2, frames=6, source_size=48, size=32, repeats=1)
    assert [r["name"].split(" ")[0] for r in rows] == ["ffmpeg", "decode", "scripts/import.py:"]
    assert rows[0]["x_decode"] == 1.0
    assert all(r["frames_per_s"] > 0 and r["videos"] == "2 x 6 frames" for r in rows)
