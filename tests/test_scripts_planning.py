"""scripts/plan.py and scripts/counterfactual.py run end to end on tiny budgets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from latentplay.world_models.checkpoint import save_checkpoint
from latentplay.world_models.glass import Glass

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    args = [sys.executable, str(ROOT / "scripts" / script), *overrides, "progress=false"]
    res = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def test_plan_script_runs_model_and_baselines_on_the_same_seeds(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "glass.pt", model=Glass(size="xs"), step=0, config={})
    out = tmp_path / "plan"
    res = _run(
        "plan.py",
        f"checkpoint={ckpt}",
        "env=reach",
        "episodes=2",
        "max_steps=4",
        "execute=2",
        "planner.samples=8",
        "planner.elites=2",
        "planner.iterations=1",
        "grounding.labels=[0]",
        "baselines=[random,oracle]",
        f"out={out}",
    )
    data = json.loads((out / "results.json").read_text())
    names = [r["controller"] for r in data["rows"]]
    assert names == ["glass-global (analytic labels)", "random", "oracle (true simulator)"]
    for row in data["rows"]:
        assert row["episodes"] == 2 and 0.0 <= row["success_rate"] <= 1.0
        assert [e["steps"] for e in row["per_episode"]] == [4, 4]
        reached = [e["reached"] for e in row["per_episode"]]  # the rate is the episodes' own
        assert row["reached_rate"] == sum(reached) / len(reached)
        assert row["controller"] in res.stdout
    # the same seeds: every controller starts each episode at the same distance from its goal
    starts = {tuple(e["start_distance_m"] for e in r["per_episode"]) for r in data["rows"]}
    assert len(starts) == 1
    assert data["success"] == "end effector within 2 cm"  # the task's criterion, named
    assert data["calibrations_off"] == []  # GLASS has no calibrations to turn off
    from latentplay.evaluation.planning import planning_section

    section = planning_section(out / "results.json", tmp_path / "report")
    assert "success: end effector within 2 cm. Oracle" in section.text


def test_counterfactual_script_with_the_simulator_is_exact_and_writes_a_report(
    tmp_path: Path,
) -> None:
    out = tmp_path / "cf"
    res = _run("counterfactual.py", "checkpoint=oracle", "queries=[move_out_of_path]", f"out={out}")
    data = json.loads((out / "results.json").read_text())
    assert data["queries"] == 5 and data["kinds"] == ["move_object"]
    assert data["overall"]["model"]["object_err_px"] == 0.0
    assert data["overall"]["factual"]["object_err_px"] > 0.0
    report = out / "report.html"
    assert f"report: {report}" in res.stdout
    html = report.read_text()
    assert "object_err_px.png" in html and "videos/move_out_of_path_s0.mp4" in html
    assert (out / "videos" / "move_out_of_path_s0.mp4").stat().st_size > 0
