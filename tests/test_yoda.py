"""YODA: flow from frames, the sparsifier's law, flow matching with known answers, the
protocol, checkpoints, and a toy sprite that must move the way it is poked."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.train_settings import quick_settings

from latentplay.rollouts.dataset import ClipDataset
from latentplay.rollouts.format import EpisodeReader
from latentplay.rollouts.toy import LIGHTS
from latentplay.world_models.checkpoint import load_model
from latentplay.world_models.protocol import Actions, WorldModel, repeat_state
from latentplay.world_models.train import train
from latentplay.world_models.yoda import Yoda
from latentplay.world_models.yoda.flow import FlowEstimator, video_flow
from latentplay.world_models.yoda.flow_matching import (
    flow_matching_loss,
    integrate,
    ot_path,
    velocity_from_data,
)
from latentplay.world_models.yoda.sparse import drop_conditions, rasterize, sample_points
from latentplay.world_models.yoda.train import YodaObjective, YodaSchedule


@pytest.fixture(scope="module")
def toy(toy_dataset) -> Path:
    return toy_dataset(episodes=64, steps=16, size=32, num_local=1)


def _model(**kw) -> Yoda:
    torch.manual_seed(0)
    return Yoda(size="xs", image_size=32, **kw)


_settings = quick_settings


# ---------------------------------------------------------------------------- flow
def test_opencv_flow_recovers_a_known_translation() -> None:
    rng = np.random.default_rng(0)
    base = (rng.random((40, 40)) * 255).astype(np.uint8)
    base = np.asarray(
        __import__("cv2").GaussianBlur(base, (5, 5), 1.5), dtype=np.uint8
    )  # smooth texture: flow is well posed
    img = np.repeat(base[..., None], 3, axis=2)
    moved = np.roll(img, shift=(1, 2), axis=(0, 1))  # content moves 2 px right, 1 px down
    for method in ("farneback", "dis"):
        flow = FlowEstimator(method)(img, moved)  # (2, H, W)
        inner = flow[:, 10:30, 10:30].reshape(2, -1)
        np.testing.assert_allclose(np.median(inner, axis=1), [2.0, 1.0], atol=0.25)
    frames = torch.from_numpy(np.stack([img, moved, moved])).permute(0, 3, 1, 2)[None]
    f = video_flow(frames)
    assert f.shape == (1, 2, 2, 40, 40) and f.dtype == torch.float32
    assert f[0, 1].abs().max() == 0.0  # identical frames: no flow (noise floor removed)


def test_flow_estimator_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="flow method='raft'"):
        FlowEstimator("raft")
    with pytest.raises(ValueError, match="expected two uint8 arrays"):
        FlowEstimator()(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)))


# ---------------------------------------------------------------------------- sparsifier
def test_points_are_drawn_in_proportion_to_flow_magnitude() -> None:
    flow = torch.zeros(1, 2, 4, 4)
    flow[0, 0, 0, 0] = 3.0  # magnitude 3 at (x=0, y=0)
    flow[0, 1, 2, 1] = -1.0  # magnitude 1 at (x=1, y=2)
    gen = torch.Generator().manual_seed(0)
    pts, vec = sample_points(flow.expand(4000, -1, -1, -1), k=5, generator=gen)
    assert pts.shape == (4000, 5, 2) and vec.shape == (4000, 5, 2)
    at_first = (pts == torch.tensor([0, 0])).all(-1).float().mean()
    at_second = (pts == torch.tensor([1, 2])).all(-1).float().mean()
    assert abs(float(at_first) - 0.75) < 0.01 and abs(float(at_second) - 0.25) < 0.01
    assert float(at_first + at_second) == 1.0  # never a pixel without flow
    first = (pts == torch.tensor([0, 0])).all(-1)
    assert torch.equal(vec[first], torch.tensor([3.0, 0.0]).expand(int(first.sum()), 2))
    assert torch.equal(vec[~first], torch.tensor([0.0, -1.0]).expand(int((~first).sum()), 2))


def test_zero_flow_falls_back_to_uniform_points() -> None:
    flow = torch.zeros(2000, 2, 4, 4)
    flow[0, :, 1, 1] = float("nan")  # a broken pixel counts as no flow
    pts, vec = sample_points(flow, k=5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(vec, torch.zeros_like(vec))
    idx = (pts[..., 1] * 4 + pts[..., 0]).flatten()
    counts = torch.bincount(idx, minlength=16).float() / idx.numel()
    assert counts.min() > 1 / 16 - 0.01 and counts.max() < 1 / 16 + 0.01


def test_rasterize_puts_scaled_vectors_and_a_flag_at_the_points() -> None:
    pts = torch.tensor([[[1, 2], [3, 0]]])
    vec = torch.tensor([[[4.0, -2.0], [1.0, 1.0]]])
    m = rasterize(pts, vec, (4, 5), scale=2.0, present=torch.tensor([[True, False]]))
    assert m.shape == (1, 3, 4, 5)
    assert m[0, :, 2, 1].tolist() == [2.0, -1.0, 1.0]
    assert m.abs().sum() == 4.0  # the absent point left no trace


def test_condition_dropout_is_per_sample_and_replaces_with_noise() -> None:
    maps = torch.zeros(4000, 3, 8, 8)
    out, dropped = drop_conditions(maps, 0.5, torch.Generator().manual_seed(0))
    assert abs(float(dropped.float().mean()) - 0.5) < 0.03
    assert torch.equal(out[~dropped], maps[~dropped])
    assert abs(float(out[dropped].std()) - 1.0) < 0.05
    with pytest.raises(ValueError, match=r"p=1\.5"):
        drop_conditions(maps, 1.5)


# ---------------------------------------------------------------------------- flow matching
def test_flow_matching_loss_known_values() -> None:
    gen = torch.Generator().manual_seed(0)
    x1 = torch.randn(64, 3, 4, 4, generator=gen)
    x0 = torch.randn(64, 3, 4, 4, generator=gen)
    t = torch.rand(64, generator=gen)
    xt, u = ot_path(x0, x1, t, sigma_min=0.0)
    torch.testing.assert_close(xt, (1 - t[:, None, None, None]) * x0 + t[:, None, None, None] * x1)
    torch.testing.assert_close(u, x1 - x0)
    exact = lambda x, tt: x1 - x0  # noqa: E731  (the true velocity of these pairs)
    assert flow_matching_loss(exact, x1, x0=x0, t=t, sigma_min=0.0) == 0.0
    zero = lambda x, tt: torch.zeros_like(x)  # noqa: E731
    loss = flow_matching_loss(zero, x1, x0=x0, t=t, sigma_min=0.0)
    torch.testing.assert_close(loss, (x1 - x0).pow(2).mean())


def test_weighted_flow_matching_loss_weighs_each_element() -> None:
    """An error of 1 on one element of 16 and 0 elsewhere: unweighted 1/16; weighted by w on
    that element, w/16."""
    x1 = torch.zeros(1, 1, 4, 4)
    x0 = torch.zeros(1, 1, 4, 4)
    t = torch.full((1,), 0.5)
    err = torch.zeros(1, 1, 4, 4)
    err[0, 0, 1, 2] = 1.0
    off = lambda x, tt: (x1 - x0) + err  # noqa: E731  (wrong by 1 on one element)
    assert float(flow_matching_loss(off, x1, x0=x0, t=t, sigma_min=0.0)) == pytest.approx(1 / 16)
    weight = torch.ones(1, 1, 4, 4)
    weight[0, 0, 1, 2] = 5.0
    loss = flow_matching_loss(off, x1, x0=x0, t=t, sigma_min=0.0, weight=weight)
    assert float(loss) == pytest.approx(5 / 16)


def _captured_objective_call(
    monkeypatch: pytest.MonkeyPatch, schedule: YodaSchedule, clip: torch.Tensor
) -> dict:
    """Run the objective once on ``clip`` and capture the control points' presence and the
    loss weights it passes on."""
    import latentplay.world_models.yoda.train as yt

    model, seen = _model(), {}
    real_map = model.control_map

    def control_map(points, vectors, present=None):
        seen["present"] = present
        return real_map(points, vectors, present)

    def loss(*args, weight=None, **kw):
        seen["weight"] = weight
        return flow_matching_loss(*args, weight=weight, **kw)  # the real one, imported above

    monkeypatch.setattr(model, "control_map", control_map)
    monkeypatch.setattr(yt, "flow_matching_loss", loss)
    torch.manual_seed(0)
    YodaObjective(schedule)(model, clip, 0)
    return seen


def test_objective_weighs_changing_pixels_and_varies_the_point_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 6x6 square moves 2 px between every pair of frames of a 32x32 clip: the pixels that
    change (dilated by one) weigh ``moving_weight`` times the others, weights average 1 per
    sample; with ``min_points=1`` the number of present control points varies in [1, k]."""
    clip = torch.zeros(64, 3, 3, 32, 32)
    for i in range(3):
        clip[:, i, :, 10:16, 4 + 2 * i : 10 + 2 * i] = 1.0
    seen = _captured_objective_call(
        monkeypatch,
        YodaSchedule(clip_length=3, input_noise=0.0, moving_weight=4.0, min_points=1),
        clip,
    )
    w = seen["weight"]
    assert w.shape == (64, 1, 32, 32)
    torch.testing.assert_close(w.mean(dim=(1, 2, 3)), torch.ones(64))
    # frames i -> i+1 change columns 4+2i, 5+2i, 10+2i, 11+2i of rows 10..15: dilated, the
    # pixel (row 12, column 5) changes at both transitions, (row 2, column 2) at neither
    torch.testing.assert_close(w[:, 0, 12, 5], 4.0 * w[:, 0, 2, 2])
    counts = seen["present"].sum(dim=1)
    assert counts.min() == 1 and counts.max() == 5 and len(counts.unique()) == 5
    plain = _captured_objective_call(
        monkeypatch, YodaSchedule(clip_length=3, input_noise=0.0, moving_weight=1.0), clip
    )
    assert plain["weight"] is None and plain["present"] is None
    with pytest.raises(ValueError, match="min_points=0"):
        YodaSchedule(min_points=0)
    with pytest.raises(ValueError, match="moving_weight=0"):
        YodaSchedule(moving_weight=0.0)


def test_ode_solvers_converge_at_their_order() -> None:
    """dx/dt = -(1 + t) x has x(1) = x(0) exp(-3/2). Doubling the steps must halve Euler's
    error (first order) and quarter Heun's (second order)."""

    def v(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return -x * (1 + t[:, None])

    x0 = torch.tensor([[1.0, -2.0]], dtype=torch.float64)
    exact = x0 * math.exp(-1.5)
    for solver, order in (("euler", 2.0), ("heun", 4.0)):
        err = [float((integrate(v, x0, n, solver) - exact).abs().max()) for n in (8, 16, 32)]
        assert err[2] < err[1] < err[0]
        for coarse, fine in itertools.pairwise(err):
            assert order * 0.85 < coarse / fine < order * 1.2, (solver, err)
    with pytest.raises(ValueError, match="solver='rk9'"):
        integrate(v, x0, 4, "rk9")


def test_data_prediction_gives_the_path_velocity_and_lands_on_its_prediction() -> None:
    """Predicting the data x1 is a reparameterization: at the true x1 it gives the path's
    velocity, and the last Euler step lands on the prediction exactly."""
    gen = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(8, 3, generator=gen), torch.randn(8, 3, generator=gen)
    t = torch.rand(8, generator=gen) * 0.9
    xt, u = ot_path(x0, x1, t, sigma_min=1e-4)
    torch.testing.assert_close(velocity_from_data(x1, xt, t, sigma_min=1e-4), u)
    target = torch.full((4, 3), 0.7)
    out = integrate(lambda x, tt: velocity_from_data(target, x, tt), torch.randn(4, 3), 10)
    torch.testing.assert_close(out, target)


# ---------------------------------------------------------------------------- protocol
def test_protocol_shapes_actions_and_branching() -> None:
    m = _model(sample_steps=2).eval()
    assert isinstance(m, WorldModel)
    spec = m.action_spec
    assert (spec.continuous, spec.sparse_points, spec.discrete) == (20, 5, 0)
    x = (torch.rand(2, 4, 3, 32, 32) * 255).byte()
    with torch.no_grad():
        acts = m.infer_actions(x)
        assert acts.continuous.shape == (2, 3, 20) and acts.discrete is None
        torch.testing.assert_close(m.infer_actions(x).continuous, acts.continuous)  # fixed seed
        pts, vec = m.actions_to_controls(acts.continuous)
        torch.testing.assert_close(m.controls_to_actions(pts, vec), acts.continuous)
        assert m.rollout(x[:, :1], acts).shape == (2, 3, 3, 32, 32)
        assert m.teacher_forced(x).shape == (2, 3, 3, 32, 32)
        assert m.simulate(x[:, :2], 3).shape == (2, 3, 3, 32, 32)
        state = m.encode(x[:1])
        many = m.step(repeat_state(state, 6), Actions(continuous=torch.zeros(6, 20)))
        assert m.decode(many).shape == (6, 3, 32, 32)
        assert state.frames.shape[1] == 4  # branching left the state as it was
        long = m.encode(torch.rand(1, 12, 3, 32, 32))
        assert long.frames.shape[1] == m.memory
    with pytest.raises(ValueError, match=r"expected \(\.\.\., 20\)"):
        m.step(state, Actions(continuous=torch.zeros(1, 8)))
    with pytest.raises(ValueError, match="NaN or inf"):
        m.step(state, Actions(continuous=torch.full((1, 20), float("nan"))))


def test_poke_checks_its_input() -> None:
    m = _model(sample_steps=1).eval()
    x = torch.rand(1, 2, 3, 32, 32)
    out = m.poke(x, torch.tensor([[[10.0, 12.0]]]), torch.tensor([[[2.0, 0.0]]]), steps=2, then=1)
    assert out.shape == (1, 3, 3, 32, 32) and 0 <= out.min() and out.max() <= 1
    with pytest.raises(ValueError, match="1 to 5"):
        m.poke(x, torch.zeros(1, 6, 2), torch.zeros(1, 6, 2))
    with pytest.raises(ValueError, match="expected both"):
        m.poke(x, torch.zeros(1, 2, 2), torch.zeros(1, 3, 2))
    with pytest.raises(ValueError, match="NaN or inf"):
        m.poke(x, torch.zeros(1, 1, 2), torch.full((1, 1, 2), float("inf")))


def test_set_sampler_changes_the_ode_and_checks_it() -> None:
    m = _model(sample_steps=5)
    calls = []
    real = m.net.forward
    m.net.forward = lambda *a, **k: calls.append(1) or real(*a, **k)
    x = torch.rand(1, 2, 3, 32, 32)
    m.set_sampler(3)
    m.simulate(x, 1)
    assert (m.sample_steps, m.solver, len(calls)) == (3, "euler", 3)
    m.set_sampler(solver="heun")  # 3 Heun steps: 2 + 2 + 1 network evaluations
    calls.clear()
    m.simulate(x, 1)
    assert (m.sample_steps, m.solver, len(calls)) == (3, "heun", 5)
    assert m.model_args()["sample_steps"] == 5  # the trained setting stays in checkpoints
    with pytest.raises(ValueError, match="sample_steps=0"):
        m.set_sampler(0)
    with pytest.raises(ValueError, match="solver='rk9'"):
        m.set_sampler(solver="rk9")


# ---------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip_and_exact_resume(toy: Path, tmp_path: Path) -> None:
    data = ClipDataset(toy, clip_length=4, cache=True)
    objective = YodaObjective(YodaSchedule(clip_length=4))
    straight = _model()
    train(straight, objective, data, tmp_path / "a", _settings(max_steps=4))
    first = _model()
    train(first, objective, data, tmp_path / "b", _settings(max_steps=2))
    second = _model()
    train(second, objective, data, tmp_path / "b", _settings(max_steps=4), resume=True)
    for (k, v), v2 in zip(straight.state_dict().items(), second.state_dict().values(), strict=True):
        torch.testing.assert_close(v, v2, msg=k, rtol=0, atol=0)
    loaded, ckpt = load_model(tmp_path / "a" / "checkpoints" / "last.pt")
    assert ckpt["model_name"] == "yoda" and ckpt["model_args"]["image_size"] == 32
    for (k, v), v2 in zip(straight.state_dict().items(), loaded.state_dict().values(), strict=True):
        torch.testing.assert_close(v, v2, msg=k, rtol=0, atol=0)


# ---------------------------------------------------------------------------- learning a toy
POKES = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.0], [0.0, -2.0]])


def _sprite_centres(frames: np.ndarray) -> np.ndarray:
    """Centroids (x, y) of the red sprite in float frames ``(N, 3, H, W)`` (NaN if absent)."""
    red = torch.as_tensor(LIGHTS[0]).float().div(255)[None, :, None, None]
    near = (torch.as_tensor(frames) - red).abs().amax(dim=1) < 0.2  # (N, H, W)
    ys, xs = torch.meshgrid(
        torch.arange(frames.shape[-2]), torch.arange(frames.shape[-1]), indexing="ij"
    )
    n = near.sum(dim=(1, 2)).float()
    cx = (near * xs).sum(dim=(1, 2)) / n
    cy = (near * ys).sum(dim=(1, 2)) / n
    return torch.stack([cx, cy], dim=1).numpy()


def _poke_score(model: Yoda, root: Path) -> float:
    """Fraction of pokes (4 directions at the sprite's centre, on test frames) after which the
    sprite moved within 45 degrees of the poke, by at least half a pixel."""
    reader = EpisodeReader(root)
    model.eval()
    model.generator = torch.Generator().manual_seed(0)
    hits = []
    with torch.no_grad():
        for ep in reader.indices("test")[:6]:
            frames = torch.from_numpy(reader.frames(ep)).permute(0, 3, 1, 2).float() / 255
            centres = reader.ground_truth(ep)["center"]
            for t in (2, 7, 12):
                ctx = frames[t - 1 : t + 1][None].expand(4, -1, -1, -1, -1)
                pts = torch.as_tensor(centres[t], dtype=torch.float32).expand(4, 1, 2)
                out = model.poke(ctx, pts - 0.5, POKES[:, None])[:, 0]
                before = _sprite_centres(ctx[:, -1].numpy())
                moved = _sprite_centres(out.numpy()) - before
                cos = (moved * POKES.numpy()).sum(1) / (np.linalg.norm(moved, axis=1) * 2.0 + 1e-9)
                ok = (cos > 2**-0.5) & (np.linalg.norm(moved, axis=1) > 0.5)
                hits.extend(np.nan_to_num(ok, nan=0.0).astype(bool).tolist())
    model.generator = None
    return float(np.mean(hits))


def _train_toy(root: Path, out: Path, steps: int, drop_control: float) -> Yoda:
    model = _model(sample_steps=5)
    data = ClipDataset(root, clip_length=6, cache=True)
    schedule = YodaSchedule(clip_length=6, drop_control=drop_control)
    train(
        model,
        YodaObjective(schedule),
        data,
        out,
        _settings(batch_size=16, max_steps=steps, lr=1e-3),
    )
    return model


def test_xs_model_moves_a_toy_sprite_the_way_it_is_poked(toy: Path, tmp_path: Path) -> None:
    """Known answer: after training on videos of a sprite (frames only, flow from OpenCV), a
    poke at the sprite moves it in the poke's direction. The baseline is the same model trained
    with every control dropped: it learns the video's dynamics but not what a poke means (an
    untrained one would not move the sprite at all: its zero-initialized head predicts no
    change), and must fail the bar."""
    blind = _poke_score(_train_toy(toy, tmp_path / "blind", 300, drop_control=1.0), toy)
    assert blind < 0.4, f"a poke-blind model followed {blind:.2f} of the pokes"
    score = _poke_score(_train_toy(toy, tmp_path / "toy_run", 500, drop_control=0.2), toy)
    assert score >= 0.6, f"pokes followed {score:.2f}"


def test_frame_time_benchmark_counts_network_evaluations() -> None:
    from latentplay.bench.models import bench_yoda

    rows = bench_yoda(
        settings=(("xs", "euler", 2, False), ("xs", "heun", 3, False), ("xs", "euler", 2, True)),
        repeats=1,
        image_size=32,
        batch=2,
        precision="fp32",
    )
    assert [r["evaluations"] for r in rows] == [2, 5, 2]
    assert "latent" in rows[2]["name"] and "pixels" in rows[0]["name"]
    for r in rows:
        assert r["s_per_frame"] > 0 and r["train_samples_per_s"] > 0
        assert r["paper_sampler_s"] == pytest.approx(r["s_per_frame"] / r["evaluations"] * 400)
    assert {r["train_precision"] for r in rows} == {"fp32"}  # as asked
    assert rows[0]["x_pixel_train"] == 1.0  # the pixel model over itself
    assert rows[2]["x_pixel_train"] == pytest.approx(
        rows[2]["train_samples_per_s"] / rows[0]["train_samples_per_s"]
    )
    # the compute ceiling: a step's network FLOPs; the latent grid is a quarter of the pixels'
    # token grid (stem patch 1 on 8x8 latents against patch 2 on 32x32 pixels at this size)
    assert rows[0]["x_pixel_flops"] == 1.0  # the pixel model over itself
    assert rows[0]["train_gflop_per_sample"] > rows[2]["train_gflop_per_sample"] > 0
    assert 3.0 < rows[2]["x_pixel_flops"] < 5.0  # about the token ratio, 4
    # training rows in bf16 autocast, as trainer.precision=bf16 trains
    (row,) = bench_yoda(
        settings=(("xs", "euler", 1, False),), repeats=1, image_size=32, batch=2, precision="bf16"
    )
    assert row["train_precision"] == "bf16" and row["train_samples_per_s"] > 0
