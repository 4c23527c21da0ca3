"""Plans scored by an ensemble of models (agents/planners/costs.py MeanCost, agents/mpc.py
ModelController(members=...), evaluation/planning.py run_planning(ensemble=...)): models whose
mistakes differ cancel them out, every candidate is scored by every model, and bad set-ups are
refused before any episode."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from latentplay.agents.mpc import ModelController
from latentplay.agents.planners import CEM
from latentplay.agents.planners.costs import MeanCost, PushCost
from latentplay.agents.state_grounding import EnvActionView, StateGrounding
from latentplay.evaluation.planning import planning_section, run_planning
from latentplay.world_models.keypoints import Keypoints
from latentplay.world_models.protocol import Actions, ActionSpec

SPEC = ActionSpec(continuous=2, continuous_bound=1.0)
START, GOAL = torch.tensor([0.0, 0.0]), torch.tensor([0.25, -0.15])


def drifting(bias: float):
    """The squared distance to GOAL after a 3-step plan in a model of a point that moves
    ``0.1 * a`` per step, plus ``bias`` on x per step (a model's mistake)."""

    def cost(actions: Actions) -> torch.Tensor:
        a = actions.continuous.clamp(-1, 1)
        end = START + 0.1 * a.sum(dim=1) + torch.tensor([3 * bias, 0.0])
        return (end - GOAL).pow(2).sum(dim=-1)

    return cost


def true_end(actions: Actions) -> torch.Tensor:
    return START + 0.1 * actions.continuous[0].clamp(-1, 1).sum(dim=0)


def test_an_ensemble_whose_mistakes_differ_plans_as_the_true_model() -> None:
    """Two models, one believing the point drifts right and one left: either alone plans a
    miss in the true world (no drift); their mean cost is the true one's plus a constant, so
    the ensemble's plan reaches the goal."""
    plans = {}
    for name, cost in (
        ("right", drifting(0.02)),
        ("left", drifting(-0.02)),
        ("both", MeanCost([drifting(0.02), drifting(-0.02)])),
    ):
        planner = CEM(SPEC, horizon=3, samples=200, elites=20, iterations=8, seed=0)
        plans[name] = (true_end(planner.plan(cost).actions) - GOAL).norm().item()
    assert plans["both"] < 0.01, plans
    assert plans["right"] > 0.04 and plans["left"] > 0.04, plans  # 3 steps x 0.02
    # every candidate is scored by the mean, exactly
    a = Actions(continuous=torch.randn(7, 3, 2))
    mean = MeanCost([drifting(0.02), drifting(-0.02)])(a)
    assert torch.allclose(mean, (drifting(0.02)(a) + drifting(-0.02)(a)) / 2)
    with pytest.raises(ValueError, match="no costs"):
        MeanCost([])


class Capture:
    """A planner that records the cost it is asked to minimise and plans zeros."""

    def __init__(self, spec: ActionSpec) -> None:
        self.spec, self.costs = spec, []

    def reset(self) -> None:
        pass

    def plan(self, cost, executed: int = 1) -> SimpleNamespace:
        self.costs.append(cost)
        return SimpleNamespace(actions=Actions(continuous=torch.zeros(1, 5, self.spec.continuous)))


def keypoint_view(seed: int) -> EnvActionView:
    torch.manual_seed(seed)
    kp = Keypoints(image_size=32, num_keypoints=4, action_dim=2, hidden=32).eval()
    features = kp.state_features(kp.encode(torch.rand(1, 2, 3, 32, 32))).shape[-1]
    return EnvActionView(kp, StateGrounding(3, features, kp.action_spec, hidden=16))


def test_the_controller_scores_every_candidate_by_every_member() -> None:
    views = [keypoint_view(0), keypoint_view(1)]
    planner = Capture(views[0].action_spec)
    ctl = ModelController(
        views[0], planner, views[0].grounding, members=[views[1]], cost="push", context=2
    )
    rng = np.random.default_rng(0)
    goal = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    ctl.reset(SimpleNamespace(render_goal=lambda: goal))
    frames = [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(2)]
    env_actions = ctl.act(frames, None)
    assert env_actions.shape == (1, 3)
    cost = planner.costs[-1]
    assert isinstance(cost, MeanCost) and len(cost.costs) == 2
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)[None].float() / 255
    g = torch.from_numpy(goal).permute(2, 0, 1).float() / 255
    a = Actions(continuous=torch.rand(6, 5, 3) * 2 - 1)
    each = [PushCost(v, x, g, parts=p)(a) for v, p in zip(views, ctl.parts, strict=True)]
    assert torch.allclose(cost(a), (each[0] + each[1]) / 2, atol=1e-5)
    # each model's own parts, read once
    assert all(p is not None for p in ctl.parts) and len(ctl.parts) == 2


def test_members_must_plan_the_same_env_actions() -> None:
    view = keypoint_view(0)
    other = SimpleNamespace(name="other", action_spec=ActionSpec(continuous=2))
    with pytest.raises(ValueError, match="ensemble member other plans"):
        ModelController(view, Capture(view.action_spec), view.grounding, members=[other])
    kp = view.model
    with pytest.raises(ValueError, match=r"grounding\.kind=rollout"):
        ModelController(kp, Capture(kp.action_spec), object(), members=[kp])


def test_bad_ensembles_are_refused_by_name_before_any_episode(tmp_path: Path) -> None:
    cases = (
        (dict(ensemble=["keypoints_pushmulti"]), r"ensemble=\['keypoints_pushmulti'\] with "),
        (
            dict(
                ensemble=["keypoints_pushmulti"],
                ensemble_groundings=["a.pt", "b.pt"],
                grounding_kind="rollout",
                grounding_file="keypoints_mixed",
            ),
            "expected one per ensemble model",
        ),
        (
            dict(ensemble=["keypoints_pushmulti"], grounding_kind="rollout", grounding_file="x"),
            "go together",
        ),
        (
            dict(
                ensemble=["keypoints_pushmulti"],
                ensemble_groundings=["keypoints_mixed"],
                grounding_kind="rollout",
                grounding_file="keypoints_mixed",
                view="full",
                cost="push",
            ),
            "fit a grounding for it",  # a member with another model's grounding
        ),
        (
            dict(
                ensemble=["no_such_model"],
                grounding_kind="rollout",
                view="full",
                cost="push",
                labels=[20],
            ),
            "no_such_model",
        ),
    )
    for kwargs, match in cases:
        with pytest.raises((ValueError, FileNotFoundError), match=match):
            run_planning("keypoints_mixed", "latentplay/Push-v0", CEM, out=tmp_path / "p", **kwargs)
    assert not (tmp_path / "p").exists()


def test_an_ensemble_of_shipped_models_plans_and_records_itself(tmp_path: Path) -> None:
    results, path = run_planning(
        "keypoints_mixed",
        "latentplay/Push-v0",
        partial(CEM, horizon=2, samples=8, elites=2, iterations=1, seed=0),
        env_kwargs={"width": 64, "height": 64},
        grounding_kind="rollout",
        grounding_file="keypoints_mixed",
        ensemble=["keypoints_pushmulti"],
        ensemble_groundings=["keypoints_pushmulti"],
        view="full",
        cost="push",
        context=2,
        repeat=2,
        execute=2,
        episodes=1,
        max_steps=4,
        imagination="eager",
        baselines=[],
        out=tmp_path / "plan",
        progress=False,
    )
    saved = json.loads(path.read_text())
    assert saved["ensemble"] == ["keypoints_pushmulti"]
    assert saved["ensemble_groundings"] == ["keypoints_pushmulti"]
    assert len(saved["ensemble_trained"]) == 1
    (row,) = results["rows"]
    assert row["controller"] == "keypoints + 1 more (9800 labels, env actions)"
    assert row["episodes"] == 1 and len(row["per_episode"]) == 1
    text = planning_section(path, tmp_path / "report").text
    assert "Model: keypoints_mixed, shipped model" in text
    assert "the mean cost of it and 1 more: keypoints_pushmulti, shipped model" in text


class Constant(Capture):
    """A planner that plans the same env action every time."""

    def plan(self, cost, executed: int = 1) -> SimpleNamespace:
        self.costs.append(cost)
        return SimpleNamespace(actions=Actions(continuous=torch.full((1, 5, 3), 0.5)))


def test_an_ensemble_settles_on_its_members_mean_reading() -> None:
    """settle_px against the models' mean reading of the object's distance to its goal:
    just above it, the controller leaves the object (stillness, the last command taken back
    after a push); just below, it executes its plan."""
    views = [keypoint_view(0), keypoint_view(1)]
    rng = np.random.default_rng(0)
    goal = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    frames = [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(2)]
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)[None].float() / 255
    g = torch.from_numpy(goal).permute(2, 0, 1).float() / 255
    reads = [float(PushCost(v, x, g).to_goal_px) for v in views]
    mean = float(np.mean(reads))
    assert abs(reads[0] - reads[1]) > 0.1  # the two models read apart: the mean decides
    ctl = ModelController(
        views[0],
        Constant(views[0].action_spec),
        views[0].grounding,
        members=[views[1]],
        cost="push",
        context=2,
        repeat=2,
        settle_px=mean + 0.05,
    )
    ctl.reset(SimpleNamespace(render_goal=lambda: goal))
    assert not ctl.act(frames, None).any()  # within: nothing to take back yet
    ctl.settle_px = mean - 0.05
    pushed = ctl.act(frames, None)
    np.testing.assert_allclose(pushed, np.full((2, 3), 0.5))
    ctl.settle_px = mean + 0.05
    np.testing.assert_allclose(ctl.act(frames, None), [[-0.5, -0.5, 0.0]] * 2)
    assert not ctl.act(frames, None).any()
