"""The state-conditioned grounding (agents/state_grounding.py): a known state-dependent map
between env commands and learned actions recovered through the model's own rollouts, the view
that plans env actions, and the errors."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from latentplay.agents.planners import CEM
from latentplay.agents.state_grounding import (
    EnvActionView,
    StateGrounding,
    fit_state_grounding,
    load_state_grounding,
    save_state_grounding,
    state_grounding_from_data,
    weights_digest,
)
from latentplay.world_models.checkpoint import save_checkpoint
from latentplay.world_models.glass import Glass
from latentplay.world_models.keypoints import Keypoints
from latentplay.world_models.protocol import Actions, ActionSpec, cat_states, index_state


@dataclass
class Point:
    pos: torch.Tensor  # (B, 2)
    vel: torch.Tensor  # (B, 2)


class PointModel(nn.Module):
    """A learned model of a point that moves ``gain * u`` under its learned action ``u``."""

    name = "point"
    action_spec = ActionSpec(continuous=2, continuous_bound=3.0)

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(0.1))

    def encode(self, frames: torch.Tensor) -> Point:
        raise NotImplementedError

    def step(self, state: Point, actions: Actions) -> Point:
        d = self.gain * actions.continuous
        return Point(state.pos + d, d)

    def embed(self, state: Point) -> torch.Tensor:
        return state.pos

    def state_features(self, state: Point) -> torch.Tensor:
        return torch.cat([state.pos, state.vel], dim=-1)


def rotation(pos: torch.Tensor) -> torch.Tensor:
    """The true command -> motion map: a rotation by 90 degrees times x (B, 2, 2)."""
    th = 0.5 * math.pi * pos[:, 0]
    c, s = torch.cos(th), torch.sin(th)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


def episodes(n: int, steps: int, seed: int) -> tuple[Point, torch.Tensor, torch.Tensor]:
    """States (episode-major), their embeddings and commands of a point whose motion under
    command ``a`` is ``0.1 * rotation(pos) @ a``: the learned action it takes is
    ``rotation(pos) @ a``, which no fixed map of ``a`` alone gives."""
    g = torch.Generator().manual_seed(seed)
    pos = (torch.rand(n, 2, generator=g) - 0.5) * 0.8
    vel = torch.zeros(n, 2)
    cmds = torch.rand(n, steps - 1, 2, generator=g) * 2 - 1
    ps, vs = [pos], [vel]
    for t in range(steps - 1):
        vel = 0.1 * (rotation(pos) @ cmds[:, t, :, None])[..., 0]
        pos = pos + vel
        ps.append(pos)
        vs.append(vel)
    p, v = torch.stack(ps, 1), torch.stack(vs, 1)  # (n, T, 2)
    return Point(p.flatten(0, 1), v.flatten(0, 1)), p, cmds


def test_the_state_grounding_recovers_a_state_dependent_map_that_a_fixed_one_cannot() -> None:
    model = PointModel()
    states, embeds, cmds = episodes(64, 16, seed=0)
    g = fit_state_grounding(model, states, embeds, cmds, horizon=4, steps=800, seed=0)
    assert g.labels == 64 * 15
    # the model stays as it was, trainable
    assert model.gain.item() == pytest.approx(0.1) and model.gain.requires_grad
    # held-out episodes: the learned action the map gives vs the true one, R(pos) a
    test, _, tcmds = episodes(16, 16, seed=1)
    pos, vel = (x.view(16, 16, 2)[:, :-1].flatten(0, 1) for x in (test.pos, test.vel))
    s = Point(pos, vel)
    a = tcmds.flatten(0, 1)
    truth = (rotation(s.pos) @ a[..., None])[..., 0]
    with torch.no_grad():
        mapped = g(a, model.state_features(s))
    err = (mapped - truth).norm(dim=-1).mean().item()
    # the best fixed linear map of the command alone (least squares on the same labels)
    train_s = Point(states.pos.view(64, 16, 2)[:, :-1].flatten(0, 1), None)
    u = (rotation(train_s.pos) @ cmds.flatten(0, 1)[..., None])[..., 0]
    x = torch.cat([cmds.flatten(0, 1), torch.ones(len(u), 1)], 1)
    w = torch.linalg.lstsq(x, u).solution
    fixed = (torch.cat([a, torch.ones(len(a), 1)], 1) @ w - truth).norm(dim=-1).mean().item()
    assert err < 0.05, err
    assert err < 0.25 * fixed, (err, fixed)
    # an unfitted map gives zero actions: it misses by the actions' whole size
    assert truth.norm(dim=-1).mean().item() > 5 * err


def test_a_planner_over_env_actions_reaches_a_known_goal_through_the_grounding() -> None:
    model = PointModel()
    states, embeds, cmds = episodes(64, 16, seed=0)
    g = fit_state_grounding(model, states, embeds, cmds, horizon=4, steps=800, seed=0)
    view = EnvActionView(model, g)
    assert view.action_spec == ActionSpec(continuous=2, continuous_bound=1.0)
    start = Point(torch.tensor([[0.3, 0.0]]), torch.zeros(1, 2))
    goal = torch.tensor([0.3, 0.3])  # straight up in the world: the command must turn against R

    def cost(actions: Actions) -> torch.Tensor:
        n = actions.continuous.shape[0]
        s = Point(start.pos.expand(n, 2), start.vel.expand(n, 2))
        for t in range(actions.continuous.shape[1]):
            s = view.step(s, actions.at(t))
        return (s.pos - goal).norm(dim=-1)

    planner = CEM(view.action_spec, horizon=3, samples=200, elites=20, iterations=6, seed=0)
    plan = planner.plan(cost)
    # carried out in the true world (motion 0.1 R(pos) a), the plan gets to the goal
    pos = start.pos.clone()
    for t in range(3):
        a = g.to_env(plan.actions.at(t))
        pos = pos + 0.1 * (rotation(pos) @ a[..., None])[..., 0]
    assert (pos[0] - goal).norm().item() < 0.03
    # the same commands read as if motion followed them unrotated miss it
    naive = start.pos + 0.1 * plan.actions.continuous[0].clamp(-1, 1).sum(0)
    assert (naive[0] - goal).norm().item() > 0.05


def test_states_are_indexed_and_concatenated_field_by_field() -> None:
    a = Point(torch.zeros(2, 2), torch.ones(2, 2))
    b = Point(torch.full((3, 2), 2.0), torch.full((3, 2), 3.0))
    both = cat_states([a, b])
    assert both.pos.shape == (5, 2)
    picked = index_state(both, torch.tensor([1, 4]))
    assert picked.pos[:, 0].tolist() == [0.0, 2.0] and picked.vel[:, 0].tolist() == [1.0, 3.0]


def test_the_grounding_fits_on_a_dataset_through_a_keypoint_model(push_dataset: Path) -> None:
    torch.manual_seed(0)
    model = Keypoints(image_size=32, num_keypoints=4, action_dim=2, hidden=32)
    before = [p.detach().clone() for p in model.parameters()]
    g = state_grounding_from_data(model, push_dataset, labels=20, horizon=3, steps=3)
    assert g.labels == 2 * 11  # two 12-step episodes: 11 commands between 12 states each
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))
    assert all(p.requires_grad for p in model.parameters())
    view = EnvActionView(model, g)
    frames = torch.rand(1, 2, 3, 32, 32)
    state = view.step(view.encode(frames), Actions(continuous=torch.tensor([[2.0, 0.0, -3.0]])))
    assert view.state_positions_px(state).shape == (1, 4, 2)
    with pytest.raises(ValueError, match="env actions"):
        view.step(state, Actions(continuous=torch.zeros(1, 2)))
    # the fit's seed decides its initial weights and batches: the same seed, the same map
    again = state_grounding_from_data(model, push_dataset, labels=20, horizon=3, steps=3)
    other = state_grounding_from_data(model, push_dataset, labels=20, horizon=3, steps=3, seed=1)
    a = torch.rand(5, g.env_dim) * 2 - 1
    f = torch.randn(5, g.net[0].in_features - g.env_dim)
    with torch.no_grad():
        assert torch.equal(again(a, f), g(a, f)) and not torch.allclose(other(a, f), g(a, f))


def test_bad_set_ups_are_refused_by_name(push_dataset: Path, tmp_path: Path) -> None:
    class NoFeatures(nn.Module):
        name = "plain"
        action_spec = ActionSpec(continuous=2)

        def embed(self, state: torch.Tensor) -> torch.Tensor:
            return state

    states, embeds, cmds = episodes(4, 6, seed=0)
    with pytest.raises(ValueError, match=r"grounding\.kind=linear"):
        fit_state_grounding(NoFeatures(), states, embeds, cmds)
    with pytest.raises(ValueError, match="horizon=9"):
        fit_state_grounding(PointModel(), states, embeds, cmds, horizon=9)
    with pytest.raises(ValueError, match=r"expected \(4, 5, env_dim\)"):
        fit_state_grounding(PointModel(), states, embeds, cmds[:, :4])
    with pytest.raises(ValueError, match=r"steps=0; expected at least 1 Adam step"):
        fit_state_grounding(PointModel(), states, embeds, cmds, horizon=2, steps=0)
    model = Keypoints(image_size=32, num_keypoints=4, action_dim=2, hidden=32)
    with pytest.raises(ValueError, match="labels=0"):
        state_grounding_from_data(model, push_dataset, labels=0)
    from latentplay.evaluation.planning import run_planning

    with pytest.raises(ValueError, match=r"grounding\.kind='fancy'; expected one of \('linear'"):
        run_planning("x.pt", "latentplay/Push-v0", CEM, grounding_kind="fancy")
    with pytest.raises(ValueError, match=r"grounding\.file='g\.pt' with grounding\.kind=linear"):
        run_planning("x.pt", "latentplay/Push-v0", CEM, grounding_file="g.pt")
    with pytest.raises(ValueError, match=r"grounding\.steps=0; expected at least 1"):
        run_planning("x.pt", "latentplay/Push-v0", CEM, grounding_kind="rollout", grounding_steps=0)
    # a saved grounding of another model is refused before any episode
    with pytest.raises(ValueError, match="fit a grounding for it"):
        run_planning(
            "keypoints_pushmulti",
            "latentplay/Push-v0",
            CEM,
            grounding_kind="rollout",
            grounding_file="keypoints_mixed",
            view="full",
            cost="push",
            out=tmp_path / "plan",
        )
    # a calibration the model does not have is refused before any episode, naming its own
    with pytest.raises(ValueError, match=r"calibrations_off=\['rest'\]: Keypoints calibrates"):
        run_planning(
            "keypoints_pushmulti",
            "latentplay/Push-v0",
            CEM,
            calibrations_off=["rest"],
            out=tmp_path / "plan",
        )
    assert not (tmp_path / "plan").exists()
    # a model without keypoints is refused before any episode, naming the kind that serves it
    ckpt = save_checkpoint(tmp_path / "glass.pt", model=Glass(size="xs"), step=0, config={})
    with pytest.raises(ValueError, match=r"grounding\.kind=linear"):
        run_planning(str(ckpt), "latentplay/Reach-v0", CEM, grounding_kind="rollout", labels=[0])


def test_a_saved_grounding_loads_back_exactly_and_only_for_its_model(tmp_path: Path) -> None:
    model = PointModel()
    states, embeds, cmds = episodes(16, 8, seed=0)
    g = fit_state_grounding(model, states, embeds, cmds, horizon=3, steps=50, seed=0)
    path = save_state_grounding(g, model, tmp_path / "run" / "grounding.pt")
    back = load_state_grounding(path, model)
    a, f = torch.rand(5, 2) * 2 - 1, torch.randn(5, 4)
    with torch.no_grad():
        assert torch.equal(back(a, f), g(a, f))
    assert back.labels == g.labels == 16 * 7 and back.net[0].out_features == g.net[0].out_features
    # fit through one model's dynamics, it is refused for another's, naming both
    other = PointModel()
    with torch.no_grad():
        other.gain.fill_(0.2)
    with pytest.raises(ValueError, match="fit a grounding for it"):
        load_state_grounding(path, other)
    with pytest.raises(FileNotFoundError, match="no shipped model of that name"):
        load_state_grounding(tmp_path / "missing.pt", model)
    # a keypoint model's calibrations (rest_px, apart_px) are settings, not weights: its
    # grounding stays valid when they are set; a changed weight is refused
    kp = Keypoints(image_size=32, num_keypoints=4, action_dim=2)
    g = StateGrounding(2, 16, kp.action_spec, hidden=8)
    path = save_state_grounding(g, kp, tmp_path / "kp.pt")
    kp.rest_px.fill_(0.5)
    kp.apart_px[1, 2] = kp.apart_px[2, 1] = 6.0
    assert "apart_px" in kp.state_dict() and "rest_px" in kp.state_dict()
    load_state_grounding(path, kp)
    # a grounding named by the digest with calibrations (as saved before they were left out)
    legacy = torch.load(path, weights_only=True)
    legacy["model"] = weights_digest(kp, calibrations=True)
    assert legacy["model"] != weights_digest(kp)
    torch.save(legacy, tmp_path / "legacy.pt")
    load_state_grounding(tmp_path / "legacy.pt", kp)
    with torch.no_grad():
        kp.dynamics.gate_logit.add_(0.1)
    with pytest.raises(ValueError, match="fit a grounding for it"):
        load_state_grounding(path, kp)
    junk = tmp_path / "junk.pt"
    torch.save({"weights": 1}, junk)
    with pytest.raises(ValueError, match="not a state grounding"):
        load_state_grounding(junk, model)
    junk.write_text("not torch")
    with pytest.raises(ValueError, match="not a readable state grounding"):
        load_state_grounding(junk, model)


class _Stop(Exception):
    pass


def test_plans_imagine_without_the_calibrations_they_turn_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A planning run turns the named calibrations off before the model imagines anything
    (compiling, grounding fits, replans): what the model holds when imagination starts is
    recorded, and the run stopped there."""
    import latentplay.agents.views as views
    import latentplay.evaluation.planning as planning

    kp = Keypoints(image_size=32, num_keypoints=4, action_dim=2)
    kp.set_rest(0.5)
    apart = torch.zeros(4, 4)
    apart[1, 2] = apart[2, 1] = 6.0
    kp.set_apart(apart)
    ckpt = save_checkpoint(tmp_path / "kp.pt", model=kp, step=0, config={})
    seen: list[tuple[float, float]] = []

    def record(model: Keypoints, imagination: str, device: object) -> bool:
        seen.append((float(model.rest_px), float(model.apart_px.max())))
        raise _Stop

    monkeypatch.setattr(views, "use_imagination", record)  # what load_for_planning calls
    for off, want in (
        ((), (0.5, 6.0)),
        (("rest_px",), (0.0, 6.0)),
        (("rest_px", "apart_px"), (0.0, 0.0)),
    ):
        with pytest.raises(_Stop):
            planning.run_planning(
                str(ckpt), "latentplay/Push-v0", CEM, calibrations_off=off, out=tmp_path / "p"
            )
        assert seen[-1] == want, off
    # the default: plans imagine without the dead zone, and keep solid parts apart; the
    # script's config and its schema say the same
    with pytest.raises(_Stop):
        planning.run_planning(str(ckpt), "latentplay/Push-v0", CEM, out=tmp_path / "p")
    assert seen[-1] == (0.0, 6.0)
    from omegaconf import OmegaConf

    from latentplay.cli.schemas import PlanConfig

    root = Path(__file__).resolve().parents[1]
    configured = OmegaConf.load(root / "configs" / "plan.yaml")["calibrations_off"]
    assert list(configured) == PlanConfig().calibrations_off == list(planning.PLAN_WITHOUT)
