"""The keypoint world model: the contract, losses with known answers, dynamics that move
nothing on its own, exact resume across the phase switch, and learning a toy scene."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers.train_settings import quick_settings, straight_and_resumed
from torch import nn

from latentplay.evaluation import metrics as M
from latentplay.rollouts.dataset import ClipDataset
from latentplay.rollouts.format import EpisodeReader
from latentplay.rollouts.video import draw_keypoints
from latentplay.utils.frames import to_tensor_frames
from latentplay.world_models.checkpoint import load_model
from latentplay.world_models.keypoints import Keypoints
from latentplay.world_models.keypoints.dynamics import InteractionDynamics
from latentplay.world_models.keypoints.model import KeypointState, last_displacements
from latentplay.world_models.keypoints.perception import (
    CHANGED,
    coverage_loss,
    pixel_grid,
    separation_loss,
    to_pixels,
)
from latentplay.world_models.keypoints.train import (
    KeypointLossWeights,
    KeypointObjective,
    KeypointSchedule,
    calibrate_apart,
    calibrate_rest,
    held_out_clips,
    keypoints_training,
    recalibrate_apart,
    recalibrate_rest,
    spread_tracks,
    still_drift_px,
    track_cache,
)
from latentplay.world_models.protocol import (
    Actions,
    RandomActions,
    StateEmbedding,
    TeacherForcing,
    WorldModel,
)
from latentplay.world_models.train import train


@pytest.fixture
def toy(push_toy: Path) -> Path:
    return push_toy


def _model(**kw) -> Keypoints:
    torch.manual_seed(0)
    return Keypoints(image_size=32, num_keypoints=4, action_dim=2, **kw)


# ---------------------------------------------------------------------------- the contract
def test_contract_shapes_and_capabilities() -> None:
    m = _model().eval()
    assert isinstance(m, WorldModel)
    assert isinstance(m, StateEmbedding) and isinstance(m, RandomActions)
    x = torch.randint(0, 256, (2, 5, 3, 32, 32), dtype=torch.uint8)
    acts = m.infer_actions(x)
    assert acts.continuous.shape == (2, 4, 2) and acts.discrete is None
    frames = m.rollout(x[:, :2], acts)
    assert frames.shape == (2, 4, 3, 32, 32)
    assert float(frames.detach().min()) >= 0 and float(frames.detach().max()) <= 1
    assert isinstance(m, TeacherForcing) and m.teacher_forced(x).shape == (2, 4, 3, 32, 32)
    s = m.encode(x)
    assert s.pos.shape == (2, 4, 2) and m.embed(s).shape == (2, 8)
    torch.testing.assert_close(s.vel, s.pos - m.encode(x[:, :4]).pos)
    with torch.no_grad():
        a = Actions(continuous=torch.zeros(2, 2))
        torch.testing.assert_close(m.step(s, a).pos, m.step(s, a).pos)  # s was not changed
    with pytest.raises(ValueError, match=r"expected \(B, 2\)"):
        m.step(s, Actions(continuous=torch.zeros(2, 3)))
    r = m.random_actions(3, 5, torch.Generator().manual_seed(0))
    assert r.continuous.shape == (3, 5, 2)


def test_decoding_is_anchored_on_the_last_real_frame() -> None:
    """Known answers: keypoints where they were decode to the real last frame itself; where
    the rendering changed by CHANGED or more, the rendering alone is drawn, elsewhere the real
    frame shows through in proportion; unanchored, a frame is the rendering."""
    m = _model().eval()
    x = torch.randint(0, 256, (2, 3, 3, 32, 32), dtype=torch.uint8)
    real = x[:, -1].float() / 255
    with torch.no_grad():
        s = m.encode(x)
        torch.testing.assert_close(m.decode(s), real, atol=1e-6, rtol=0)
        moved = KeypointState(s.pos + 0.2, s.vel, s.presence, s.frame, s.anchor)
        rendering, out = m.render(moved.pos), m.decode(moved)
        change = (rendering - s.anchor).abs().sum(1)
        near = F.max_pool2d(change[:, None], 3, stride=1, padding=1)[:, 0]
        redrawn = near >= CHANGED
        assert redrawn.any() and not redrawn.all()
        torch.testing.assert_close(
            out.permute(0, 2, 3, 1)[redrawn], rendering.permute(0, 2, 3, 1)[redrawn]
        )
        # elsewhere the real frame shows through in proportion to how little changed there
        share = (1 - near / CHANGED).clamp(min=0)[:, None]
        torch.testing.assert_close(out, (rendering + share * (real - s.anchor)).clamp(0, 1))
        m.anchored = False
        plain = m.encode(x)
        assert plain.frame is None and plain.anchor is None
        torch.testing.assert_close(m.decode(plain), m.render(plain.pos))


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="image_size=33"):
        Keypoints(image_size=33)
    with pytest.raises(ValueError, match="num_keypoints=0"):
        Keypoints(num_keypoints=0)
    with pytest.raises(ValueError, match=r"background frames of shape \(4, 3, 16, 16\)"):
        _model().set_background(torch.zeros(4, 3, 16, 16))


def test_background_is_the_median_frame() -> None:
    m = _model()
    frames = torch.zeros(5, 3, 32, 32, dtype=torch.uint8)
    frames[:3] = 255  # three of five frames white
    frames[4, :, :4, :4] = 255  # an object in one frame only: not in the median
    m.set_background(frames)
    assert torch.all(m.background == 1.0)
    frames[:3] = 0
    m.set_background(frames)
    assert torch.all(m.background == 0.0)


# ---------------------------------------------------------------------------- losses
def test_coverage_is_zero_on_the_foreground_and_grows_with_distance() -> None:
    fg = torch.zeros(1, 1, 8, 8)
    fg[0, 0, 1, 2] = fg[0, 0, 6, 5] = 1.0  # two single-pixel objects
    grid = pixel_grid(8)
    on = torch.stack([grid[1 * 8 + 2], grid[6 * 8 + 5]])[None]
    assert float(coverage_loss(on, fg, temperature=1e-4)) == pytest.approx(0.0, abs=1e-6)
    # both keypoints on one object: the other object is uncovered, at a known distance
    piled = torch.stack([grid[1 * 8 + 2], grid[1 * 8 + 2]])[None]
    d2 = float((grid[6 * 8 + 5] - grid[1 * 8 + 2]).pow(2).sum())
    assert float(coverage_loss(piled, fg, temperature=1e-4)) == pytest.approx(d2 / 2, rel=1e-3)


def test_separation_falls_as_keypoints_spread() -> None:
    near = torch.tensor([[[0.0, 0.0], [0.01, 0.0]]])
    far = torch.tensor([[[0.0, 0.0], [0.5, 0.0]]])
    assert float(separation_loss(near, 0.05)) > 0.9 > 1e-6 > float(separation_loss(far, 0.05))


def test_pixels_of_the_grid_are_the_pixel_indices() -> None:
    px = to_pixels(pixel_grid(4), 4)
    assert px[:4, 0].tolist() == [0, 1, 2, 3] and px[::4, 1].tolist() == [0, 1, 2, 3]


# ---------------------------------------------------------------------------- dynamics
@pytest.mark.parametrize("after_motion", [False, True])
def test_nothing_moves_unless_driven_or_touched(after_motion: bool) -> None:
    """Known answer by construction: with the gates of keypoints 1-3 shut, no velocity and
    keypoint 0 (the agent) far from the others, only keypoint 0 moves, whatever the weights;
    once it is near keypoint 1 its push reaches keypoint 1, and still not the far ones."""
    torch.manual_seed(1)
    dyn = InteractionDynamics(num_keypoints=4, action_dim=2, hidden=16, after_motion=after_motion)
    with torch.no_grad():
        dyn.gate_logit.copy_(torch.tensor([20.0, -40.0, -40.0, -40.0]))
    pos = torch.tensor([[[-0.8, -0.8], [0.8, 0.8], [-0.8, 0.8], [0.8, -0.8]]])
    vel, action = torch.zeros(1, 4, 2), torch.randn(1, 2)
    every = torch.ones(1, 4)  # every contact decision open: the propagation alone is tested
    disp, _ = dyn(pos, vel, action, every)
    assert disp[0, 0].abs().sum() > 1e-3
    torch.testing.assert_close(disp[0, 1:], torch.zeros(3, 2), atol=1e-6, rtol=0)
    pos[0, 0] = pos[0, 1] - torch.tensor([0.05, 0.0])  # the agent beside keypoint 1
    disp, _ = dyn(pos, vel, action, every)
    assert disp[0, 1].abs().sum() > 1e-4
    torch.testing.assert_close(disp[0, 2:], torch.zeros(2, 2), atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------- training
@pytest.mark.parametrize("presence", [False, True])
def test_resume_across_the_phase_switch_is_exact(toy: Path, tmp_path: Path, presence: bool) -> None:
    schedule = KeypointSchedule(perception_steps=3, horizon_start=2, horizon_end=3)

    def build() -> tuple:
        torch.manual_seed(0)
        run = keypoints_training(
            str(toy),
            num_keypoints=4,
            action_dim=2,
            clip_length=4,
            schedule=schedule,
            presence=presence,
        )
        return run.model, run.objective, run.dataset

    a, b = straight_and_resumed(build, tmp_path, steps=6)
    for (k, v), v2 in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(v, v2, msg=k, rtol=0, atol=0)
    assert float(a.background.max()) > 0  # the reference frame travels with the checkpoint
    if presence:  # calibrated when the dynamics phase began, in both runs alike
        assert not torch.equal(a.presence_ref, torch.ones(4))


def test_track_cache_holds_the_keypoints_of_the_datasets_clips(toy: Path) -> None:
    """The dynamics phase's clips of keypoint tracks are what the encoder makes of the
    dataset's clips: same starts, length and frame skip, encoded in chunks."""
    from latentplay.rollouts.dataset import ClipDataset

    model = _model()
    model.set_background(torch.zeros(1, 3, 32, 32))
    data = ClipDataset(toy, split="val", clip_length=3, frame_skip=2)
    cache = track_cache(model, data, chunk=5)
    torch.manual_seed(3)
    got = cache.clips(cache.draw(6))
    torch.manual_seed(3)
    picks = torch.randint(len(data), (6,)).tolist()
    with torch.no_grad():
        want = model.keypoints(torch.stack([data[i] for i in picks]))
    assert got.shape == (6, 3, 4, 2)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_the_dynamics_phase_computes_in_fp32_under_bf16_autocast(toy: Path) -> None:
    """trainer.precision=bf16 speeds up perception; the dynamics phase (its track cache and
    its loss) is computed as in fp32, to the bit."""
    data = ClipDataset(toy, split="train", clip_length=4, cache=True)
    torch.manual_seed(0)
    model = Keypoints(image_size=data[0].shape[-1], num_keypoints=4, action_dim=2)
    model.set_background(torch.stack([data[i][0] for i in data.spread(16)]))
    clip = torch.stack([data[i] for i in range(4)])
    schedule = KeypointSchedule(perception_steps=1, horizon_start=2, horizon_end=2)

    def step(bf16: bool, at: int) -> tuple[torch.Tensor, KeypointObjective]:
        objective = KeypointObjective(schedule, dataset=data)
        torch.manual_seed(1)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss, _ = objective(copy.deepcopy(model), clip, at)
        return loss, objective

    fp32, bf16 = step(False, 0)[0], step(True, 0)[0]
    assert fp32.item() != bf16.item()  # perception computes in bf16
    (fp32, a), (bf16, b) = step(False, 1), step(True, 1)
    torch.testing.assert_close(bf16, fp32, rtol=0, atol=0)
    for ta, tb in zip(a._tracks.per_episode.values(), b._tracks.per_episode.values(), strict=True):
        assert tb.dtype == torch.float32
        torch.testing.assert_close(tb, ta, rtol=0, atol=0)


def test_keypoint_video_draws_a_dot_per_keypoint() -> None:
    frames = np.zeros((2, 8, 8, 3), np.uint8)
    out = draw_keypoints(frames, np.array([[[1.0, 1.0], [6.0, 6.0]]] * 2), scale=4)
    assert out.shape == (2, 32, 32, 3)
    assert out[0, 5, 5].any() and out[0, 25, 25].any() and not out[0, 16, 16].any()


def _probes(model: Keypoints, root: Path) -> tuple[float, float]:
    """R² of a linear map from keypoints to the true agent and object positions, and from the
    latent actions to the true actions (fit on val, scored on test)."""
    reader = EpisodeReader(root)
    parts: dict[str, list] = {}
    model.eval()
    with torch.no_grad():
        for split in ("val", "test"):
            rows: list[list[np.ndarray]] = [[], [], [], []]
            for ep in reader.indices(split):
                x = to_tensor_frames(reader.frames(ep))[None]
                gt = reader.ground_truth(ep)
                rows[0].append(model.keypoints_px(x)[0].flatten(1).numpy())
                rows[1].append(np.hstack([gt["agent"], gt["objects"].reshape(len(x[0]), -1)]))
                rows[2].append(model.infer_actions(x).continuous[0].numpy())
                rows[3].append(gt["action"])
            parts[split] = [np.concatenate(r) for r in rows]
    val, test = parts["val"], parts["test"]
    positions = M.linear_r2(val[0], val[1], test[0], test[1])["r2"]
    actions = M.linear_r2(val[2], val[3], test[2], test[3])["r2"]
    return positions, actions


def test_model_recovers_the_true_positions_and_actions_of_a_toy(toy: Path, tmp_path: Path) -> None:
    """Known answer: from frames alone, three keypoints map linearly onto the true positions
    of the agent and both objects (static ones included), and the latent actions onto the
    true actions; an untrained model does neither."""
    torch.manual_seed(0)
    schedule = KeypointSchedule(perception_steps=1000, horizon_end=6, horizon_ramp_steps=300)
    run = keypoints_training(
        str(toy), num_keypoints=3, action_dim=2, clip_length=7, schedule=schedule
    )
    r2_pos, r2_act = _probes(run.model, toy)
    assert r2_pos < 0.5 and r2_act < 0.5, "the bars below must fail for an untrained model"
    train(
        run.model,
        run.objective,
        run.dataset,
        tmp_path / "run",
        quick_settings(batch_size=16, max_steps=1600, lr=2e-3, log_every=100),
    )
    r2_pos, r2_act = _probes(run.model, toy)
    assert r2_pos >= 0.95, f"keypoints -> true positions R² {r2_pos:.3f}"
    assert r2_act >= 0.9, f"latent actions -> true actions R² {r2_act:.3f}"


def _textbook(d: InteractionDynamics, pos, vel, a, after_motion: bool) -> torch.Tensor:
    """The dynamics' displacements computed the textbook way: the message net on the
    concatenated pair input (with ``after_motion``, how much the pair's distance changes)."""
    b, k = pos.shape[:2]
    node = d.role.expand(b, -1, -1)
    own = d.gates()[None, :, None] * d.drive(torch.cat([a[:, None].expand(-1, k, -1), node], -1))
    own = own + d.carry(torch.cat([vel, node], -1)) - d.carry(torch.cat([0 * vel, node], -1))
    rel = pos[:, :, None] - pos[:, None]
    dist = rel.pow(2).sum(-1, keepdim=True).add(1e-8).sqrt()
    cut = torch.sigmoid((d.log_radius.exp() - dist) / d.log_softness.exp())
    cut = cut * (1 - torch.eye(k))[None, :, :, None]
    ends = [node[:, :, None].expand(-1, -1, k, -1), node[:, None].expand(-1, k, -1, -1)]
    extra = int(after_motion)
    still = d.message(
        torch.cat([rel, dist, torch.zeros(b, k, k, 4), *ends, 0 * dist[..., :extra]], -1)
    )
    disp = own
    for _ in range(d.rounds):
        motion = [disp[:, :, None].expand(-1, -1, k, -1), disp[:, None].expand(-1, k, -1, -1)]
        moved = rel + motion[0] - motion[1]
        closer = moved.pow(2).sum(-1, keepdim=True).add(1e-8).sqrt() - dist
        pair = torch.cat([rel, dist, *motion, *ends, closer[..., :extra]], -1)
        disp = own + (cut * (d.message(pair) - still)).sum(2)
    return disp


@pytest.mark.parametrize("after_motion", [False, True])
def test_split_message_layer_is_the_concatenated_layer(after_motion: bool) -> None:
    """The dynamics evaluate the message net's first layer in parts (per node, once per step;
    the still pairs' share once); known answer: the textbook form, the net on the
    concatenated pair input (``_textbook``), with the same outputs and the same gradients for
    the inputs and every parameter (training goes through it)."""
    torch.manual_seed(0)
    d = InteractionDynamics(num_keypoints=5, action_dim=3, hidden=16, after_motion=after_motion)
    pos, vel, a = torch.rand(4, 5, 2) * 2 - 1, torch.randn(4, 5, 2) * 0.01, torch.randn(4, 3)
    pos.requires_grad_(True)
    a.requires_grad_(True)
    ours, logit = d(pos, vel, a)
    assert logit is None
    want = _textbook(d, pos, vel, a, after_motion)
    torch.testing.assert_close(ours, want, rtol=1e-5, atol=1e-6)
    params = [pos, a, *d.parameters()]
    w = torch.randn_like(ours)
    grads = torch.autograd.grad((ours * w).sum(), params, allow_unused=True)
    wanted = torch.autograd.grad((want * w).sum(), params, allow_unused=True)
    for g, g_want, p in zip(grads, wanted, params, strict=True):
        zero = torch.zeros_like(p)  # unused (the message net's last bias cancels out)
        g, g_want = zero if g is None else g, zero if g_want is None else g_want
        torch.testing.assert_close(g, g_want, rtol=1e-4, atol=1e-6)


def test_contact_decisions_gate_each_keypoints_displacement() -> None:
    """A keypoint decided "still" does not move at all; one decided "moves" moves as it would
    without the gate; without given decisions the head's own (logit > 0) are used."""
    torch.manual_seed(0)
    d = InteractionDynamics(num_keypoints=5, action_dim=3, hidden=16, contact=True)
    pos, vel, a = torch.rand(4, 5, 2) * 2 - 1, torch.randn(4, 5, 2) * 0.01, torch.randn(4, 3)
    free, logit = d(pos, vel, a, moving=torch.ones(4, 5))
    assert logit.shape == (4, 5) and free.abs().min() > 0
    moving = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0]).expand(4, -1)
    gated, _ = d(pos, vel, a, moving=moving)
    assert torch.equal(gated[:, [1, 3, 4]], torch.zeros(4, 3, 2))
    torch.testing.assert_close(gated[:, [0, 2]], free[:, [0, 2]])
    own, _ = d(pos, vel, a)
    torch.testing.assert_close(own, free * (logit > 0)[..., None].float())


def _touch_tracks(n: int, steps: int, gen: torch.Generator) -> torch.Tensor:
    """Tracks ``(n, steps + 1, 2, 2)`` of a toy push: keypoint 0 moves by a random step each
    step; keypoint 1 moves with it while they are closer than 0.15, else stays exactly put."""
    pusher = torch.rand(n, 2, generator=gen) * 1.2 - 0.6
    obj = pusher + (torch.rand(n, 2, generator=gen) - 0.5) * 0.5
    out = [torch.stack([pusher, obj], 1)]
    for _ in range(steps):
        a = (torch.rand(n, 2, generator=gen) - 0.5) * 0.12
        pusher = pusher + a
        touching = ((pusher - obj).norm(dim=-1, keepdim=True) < 0.15).float()
        obj = obj + touching * a
        out.append(torch.stack([pusher, obj], 1))
    return torch.stack(out, 1)


@pytest.mark.slow
def test_contact_decisions_learn_who_moves_from_tracks_alone() -> None:
    """Known answer: trained on toy tracks (no frames), the decisions say "moves" for the
    driven keypoint, and for the other exactly when the driven one touches it; imagined
    untouched objects then do not move at all."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = Keypoints(num_keypoints=2, action_dim=2, hidden=64, contact=True)
    objective = KeypointObjective(KeypointSchedule(perception_steps=0, horizon_ramp_steps=0))
    params = [*model.inverse.parameters(), *model.dynamics.parameters()]
    opt = torch.optim.Adam(params, lr=1e-2)
    for _ in range(800):
        loss, _ = objective.dynamics(model, _touch_tracks(32, 3, gen), horizon=3)
        opt.zero_grad()
        loss.backward()
        opt.step()
    tracks = _touch_tracks(512, 1, gen)
    truth = (tracks[:, 1] - tracks[:, 0]).norm(dim=-1) * 32 > 0.5  # (N, 2)
    with torch.no_grad():
        actions = model.actions_between(tracks)[:, 0]
        state = KeypointState(tracks[:, 0], torch.zeros_like(tracks[:, 0]))
        nxt, logit = model.transition(state, actions)
    decided = logit > 0
    accuracy = (decided == truth).float().mean(0)
    assert accuracy.min() > 0.9, accuracy
    still = ~truth[:, 1] & ~decided[:, 1]
    assert still.sum() > 100 and torch.equal(nxt.pos[still, 1], tracks[still, 0, 1])


# ---------------------------------------------------------------------------- presence
def test_an_absent_keypoint_neither_pushes_nor_is_pushed_nor_drawn() -> None:
    """Known answers by construction: with keypoint 2 absent, where it stands changes no other
    keypoint's motion and not the rendered frame; present, standing next to the driven
    keypoint, it does both."""
    torch.manual_seed(0)
    m = _model(presence=True).eval()
    with torch.no_grad():
        m.dynamics.gate_logit.copy_(torch.tensor([20.0, -40.0, -40.0, -40.0]))
    pos = torch.tensor([[[-0.5, -0.5], [0.6, 0.6], [-0.45, -0.5], [0.6, -0.6]]])
    vel, a = torch.zeros(1, 4, 2), Actions(continuous=torch.randn(1, 2))
    here, gone = torch.ones(1, 4), torch.tensor([[1.0, 1.0, 0.0, 1.0]])
    far = pos.clone()
    far[0, 2] = torch.tensor([0.9, 0.0])
    with torch.no_grad():
        step = {
            (k, w): m.step(KeypointState(p, vel, pres), a)
            for k, p in (("near", pos), ("far", far))
            for w, pres in (("here", here), ("gone", gone))
        }
        frames = {(k, w): m.decode(s) for (k, w), s in step.items()}
    others = [0, 1, 3]
    torch.testing.assert_close(
        step["near", "gone"].pos[:, others], step["far", "gone"].pos[:, others]
    )
    torch.testing.assert_close(frames["near", "gone"], frames["far", "gone"])
    assert not torch.allclose(step["near", "here"].pos[:, 0], step["far", "here"].pos[:, 0])
    assert step["near", "here"].pos[0, 2].sub(pos[0, 2]).abs().sum() > 1e-4  # pushed
    torch.testing.assert_close(step["near", "gone"].presence, gone)  # carried along
    m.calibrate_presence(torch.ones(3, 4))  # presence 1 is each keypoint's level
    embedded = m.embed(step["near", "gone"]).view(4, 2)
    assert torch.equal(embedded[2], torch.zeros(2)) and embedded[[0, 1, 3]].abs().sum() > 0
    assert (frames["near", "here"] - frames["far", "here"]).abs().max() > 1e-3


def test_presence_is_read_against_each_keypoints_calibrated_level() -> None:
    m = _model(presence=True)
    seen = torch.tensor([[0.1, 0.8, 0.02, 0.5]] * 19 + [[0.12, 0.9, 0.03, 0.5]])
    m.calibrate_presence(seen, quantile=1.0)
    torch.testing.assert_close(m.presence_ref, torch.tensor([0.12, 0.9, 0.03, 0.5]))
    got = m.present(torch.tensor([[0.07, 0.4, 0.02, 0.3], [0.03, 0.3, 0.005, 0.1]]))
    assert got.tolist() == [[1.0, 1.0, 1.0, 1.0], [0.0, 1.0, 0.0, 0.0]]  # over 0.3 of the level
    assert m.present(None) is None
    with pytest.raises(ValueError, match="presence=False"):
        _model().calibrate_presence(seen)
    assert "presence_ref" not in _model().state_dict()  # older checkpoints load as they are


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Training on one intra-op thread, whatever the machine: float sums then add up in one
    order, and a short run lands where it did when its bars were set."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_presence_tells_a_missing_object_from_frames_alone(
    tmp_path: Path, one_thread: None
) -> None:
    """Known answer: on a toy whose second object is missing from about half the episodes,
    perception learns (no labels) a keypoint on that object that reads present exactly in the
    frames that show it; the other keypoints stay present. An untrained model fails.

    With as many keypoints as parts, 1,000 steps put one keypoint on each part for this seed
    and not for every seed (seeds 1 and 2 leave a part 6-10 px from any keypoint): that
    precondition is checked on its own, so that a failure says which of the two went wrong."""
    from latentplay.rollouts.toy import make_push_toy_dataset

    root = make_push_toy_dataset(tmp_path / "toy", episodes=64, absent=0.5)
    torch.manual_seed(0)
    run = keypoints_training(
        str(root),
        num_keypoints=3,
        action_dim=2,
        clip_length=7,
        presence=True,
        schedule=KeypointSchedule(perception_steps=10**6),
    )

    def scores() -> tuple[float, tuple[float, float, float]]:
        """(the largest of the parts' distances to their nearest keypoint, px; presence of
        the object-1 keypoint where it is shown, its absence where it is missing, the other
        keypoints' presence)."""
        reader = EpisodeReader(root)
        tracks = track_cache(run.model, run.dataset).per_episode
        run.model.calibrate_presence(torch.cat([t[..., 2] for t in tracks.values()]))
        rows = []
        with torch.no_grad():
            for ep in reader.indices("val") + reader.indices("test"):
                gt = reader.ground_truth(ep)
                pos, presence = run.model.perceive(to_tensor_frames(reader.frames(ep), "cpu")[None])
                px = to_pixels(pos[0], 32).numpy()
                rows.append((bool(gt["present"][0, 1]), run.model.present(presence[0]), px, gt))
        reader.close()

        def nearest(part: Callable[[dict], np.ndarray], shown: bool = False) -> np.ndarray:
            # each keypoint's mean distance to the part, over the episodes that show it
            rows_in = [(p, g) for h, _, p, g in rows if h or not shown]
            return np.mean(
                [np.linalg.norm(p - part(g)[:, None], axis=-1).mean(0) for p, g in rows_in], 0
            )

        d = nearest(lambda g: g["objects"][:, 1], shown=True)
        k = int(np.argmin(d))
        reach = max(
            float(d.min()),
            float(nearest(lambda g: g["agent"]).min()),
            float(nearest(lambda g: g["objects"][:, 0]).min()),
        )
        there = torch.cat([s[:, k] for h, s, _, _ in rows if h]).mean().item()
        missing = 1 - torch.cat([s[:, k] for h, s, _, _ in rows if not h]).mean().item()
        others = torch.cat([s[:, [j for j in range(3) if j != k]] for _, s, _, _ in rows])
        return reach, (there, missing, others.mean().item())

    assert min(scores()[1]) < 0.5, "the bars below must fail for an untrained model"
    train(
        run.model,
        run.objective,
        run.dataset,
        tmp_path / "run",
        quick_settings(batch_size=16, max_steps=1000, lr=2e-3, log_every=100),
    )
    reach, (there, missing, others) = scores()
    assert reach < 1.5, f"perception left a part without a keypoint ({reach:.1f} px away)"
    assert there >= 0.95 and missing >= 0.95, (there, missing)
    assert others >= 0.95, others


# ---------------------------------------------------------------------------- one-step term
def test_one_step_term_steps_from_every_true_state_with_its_true_velocity() -> None:
    """The one-step error is the mean of single steps from each frame of a clip, each started
    from the true positions and the true last displacement (none at the first frame), and it
    adds to the loss with its weight."""
    model = _model()
    gen = torch.Generator().manual_seed(1)
    pos = torch.cumsum(torch.randn(3, 5, 4, 2, generator=gen) * 0.05, dim=1)
    actions = torch.randn(3, 4, 2, generator=gen)
    moved = torch.ones(3, 4, 4)
    objective = KeypointObjective(weights=KeypointLossWeights(one_step=2.0))
    got = objective._one_step(model, pos, actions, moved, None)
    errors = []
    for t in range(4):
        vel = pos[:, t] - pos[:, t - 1] if t else torch.zeros_like(pos[:, 0])
        nxt, _ = model.transition(KeypointState(pos[:, t], vel), actions[:, t])
        errors.append(F.smooth_l1_loss(nxt.pos * 16, pos[:, t + 1] * 16, reduction="none"))
    torch.testing.assert_close(got, torch.stack(errors).mean())
    plain = KeypointObjective()
    torch.manual_seed(0)
    with_term, terms = objective.dynamics(model, pos, horizon=4)
    torch.manual_seed(0)
    without, plain_terms = plain.dynamics(model, pos, horizon=4)
    assert "one_step_px" not in plain_terms and terms["one_step_px"] > 0
    torch.testing.assert_close(with_term - without, torch.tensor(2.0 * terms["one_step_px"]))


# ---------------------------------------------------------------------------- rest
def test_calibrations_are_set_and_turned_off_by_name() -> None:
    """set_rest checks its value; calibration_off turns rest_px and apart_px off, after which
    a step is exactly the step of the same model never calibrated; a wrong name is named."""
    from latentplay.agents.views import without_calibrations

    m = _model()
    with torch.no_grad():
        m.dynamics.gate_logit.copy_(torch.tensor([2.0, -3.0, -4.0, -4.0]))
    plain = copy.deepcopy(m)
    m.set_rest(0.75)
    assert float(m.rest_px) == 0.75
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"rest_px=.*expected a finite number of pixels"):
            m.set_rest(bad)
    assert float(m.rest_px) == 0.75  # a refused value leaves it as it was
    apart = torch.zeros(4, 4)
    apart[1, 2] = apart[2, 1] = 6.0
    m.set_apart(apart)
    px = 2 / 32
    disp = torch.tensor([[[0.0, 0.0], [0.5, 0.0], [0.0, 0.0], [0.0, 0.0]]]) * px
    assert float(m.settle(disp).abs().sum()) == 0.0  # 0.5 px < rest: dropped
    before = torch.tensor([[[-0.5, 0.0], [0.0, 0.0], [0.3, 0.0], [0.9, 0.9]]])
    after = before.clone()
    after[0, 1, 0] = 0.25  # keypoint 1 runs into keypoint 2 (4.8 px apart -> 0.8 px)
    assert float(m.keep_apart(before, after).abs().sum()) > 0.1  # shoved apart
    # a state where both calibrations act: undriven keypoints 1 and 2 closer than 6 px
    state = KeypointState(before, torch.zeros_like(before))
    a = torch.randn(1, 2)
    with torch.no_grad():
        assert not torch.equal(m.advance(state, a).pos, plain.advance(state, a).pos)
    # planning turns the dead zone off and keeps the pairs apart (a name given twice, once)
    assert without_calibrations(m, ["rest_px", "rest_px"]) == ["rest_px"]
    assert float(m.rest_px) == 0.0 and torch.equal(m.apart_px, apart)
    torch.testing.assert_close(m.settle(disp), disp)
    m.calibration_off("apart_px")
    assert not m.apart_px.any()
    assert float(m.keep_apart(before, after).abs().sum()) == 0.0
    with torch.no_grad():
        torch.testing.assert_close(m.advance(state, a).pos, plain.advance(state, a).pos)
    with pytest.raises(
        ValueError, match=r"calibration 'rest'; expected one of \['rest_px', 'apart_px'\]"
    ):
        m.calibration_off("rest")
    with pytest.raises(ValueError, match=r"calibrations_off=\['rest'\]: Keypoints calibrates"):
        without_calibrations(m, ["rest"])
    # a model without calibrations has none to turn off
    assert without_calibrations(nn.Linear(2, 2), ["rest_px"]) == []


def test_rest_drops_short_imagined_steps_of_undriven_keypoints_only() -> None:
    """Known answers by construction: keypoint 0 is the one driven (its gate open); with
    ``rest_px`` = 1, an imagined step of an undriven keypoint shorter than 1 px is dropped,
    a longer one kept, and the driven keypoint's short step kept."""
    m = _model()
    with torch.no_grad():
        m.dynamics.gate_logit.copy_(torch.tensor([2.0, -3.0, -4.0, 1.5]))
    assert m.dynamics.driven().tolist() == [True, False, False, True]
    px = 2 / 32  # one pixel in [-1, 1] units at 32x32
    disp = torch.tensor([[[0.5, 0.0], [0.6, 0.0], [0.0, 1.2], [0.3, 0.3]]]) * px
    torch.testing.assert_close(m.settle(disp), disp)  # rest_px = 0: off
    # off, it is not stored: the weights (and a grounding's digest of them) are as before it
    assert "rest_px" not in m.state_dict()
    m.rest_px.fill_(1.0)
    assert float(m.state_dict()["rest_px"]) == 1.0
    want = disp.clone()
    want[0, 1] = 0.0
    torch.testing.assert_close(m.settle(disp), want, rtol=0, atol=0)
    # a step drops what the dynamics propose the same way, and keeps the state consistent
    pos = torch.tensor([[[-0.5, -0.5], [-0.42, -0.5], [0.6, 0.6], [0.6, -0.6]]])
    state, a = KeypointState(pos, torch.zeros_like(pos)), torch.randn(1, 2)
    with torch.no_grad():
        raw, _ = m.transition(state, a)
        nxt = m.advance(state, a)
    torch.testing.assert_close(nxt.vel, m.settle(raw.vel))
    torch.testing.assert_close(nxt.pos, pos + nxt.vel)


# ---------------------------------------------------------------------------- solid parts
def test_keep_apart_shoves_what_a_moving_part_meets() -> None:
    """Known answers at 32x32 (1 px = 1/16 unit), parts 1 and 2 kept 4 px apart: part 1 moves
    2 px right into part 2, which stood still 5 px away: part 2 takes the whole overlap (1 px),
    part 1 none; both moving 2 px at each other from 6 px share the 2 px overlap evenly; a
    pair already closer than 4 px is not pushed apart, only kept from closing further; a step
    onto part 2's centre, or past it, shoves part 2 on; a shove is passed on to a third part in
    the next pass; absent, fixed and unkept pairs as documented."""
    m = _model()
    px = 2 / 32
    m.apart_px[1, 2] = m.apart_px[2, 1] = 4.0
    before = torch.tensor([[[-0.5, -0.5], [0.0, 0.0], [5 * px, 0.0], [0.5, 0.5]]])
    after = before.clone()
    after[0, 1, 0] += 2 * px
    after[0, 0] = before[0, 3]  # keypoint 0 has no apart_px with anyone: lands on 3
    shift = m.keep_apart(before, after)
    torch.testing.assert_close(shift[0, 2], torch.tensor([px, 0.0]))
    torch.testing.assert_close(shift[0, [0, 1, 3]], torch.zeros(3, 2))
    # both moving at each other
    before[0, 2, 0] = 6 * px
    after = before.clone()
    after[0, 1, 0] += 2 * px
    after[0, 2, 0] -= 2 * px
    shift = m.keep_apart(before, after)
    torch.testing.assert_close(shift[0, 1], torch.tensor([-px, 0.0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(shift[0, 2], torch.tensor([px, 0.0]), atol=1e-6, rtol=0)
    # already 3 px apart, and part 1 stays there: nothing; coming 1 px closer: undone
    before[0, 2, 0] = 3 * px
    torch.testing.assert_close(m.keep_apart(before, before), torch.zeros(1, 4, 2))
    after = before.clone()
    after[0, 1, 0] += px
    torch.testing.assert_close(m.keep_apart(before, after)[0, 2], torch.tensor([px, 0.0]))
    # a step onto part 2's centre, and one past it: part 2 is shoved on, 4 px beyond part 1
    before[0, 2, 0] = 5 * px
    for to in (5, 7):
        after = before.clone()
        after[0, 1, 0] = to * px
        shift = m.keep_apart(before, after)
        torch.testing.assert_close(shift[0, 2], torch.tensor([(to + 4 - 5) * px, 0.0]))
        torch.testing.assert_close(shift[0, 1], torch.zeros(2))
    # a shove passed on: part 2, shoved 1.5 px, meets part 3 (also kept 4 px from 2), which
    # takes the next overlap in the following pass; one pass leaves it
    m.apart_px[2, 3] = m.apart_px[3, 2] = 4.0
    chain = torch.tensor([[[-0.5, -0.5], [0.0, 0.0], [4.5 * px, 0.0], [9 * px, 0.0]]])
    after = chain.clone()
    after[0, 1, 0] += 2 * px
    shift = m.keep_apart(chain, after)
    torch.testing.assert_close(shift[0, 2:], torch.tensor([[1.5 * px, 0.0], [1.0 * px, 0.0]]))
    assert float(m.keep_apart(chain, after, passes=1)[0, 3].abs().max()) == 0.0
    m.apart_px[2, 3] = m.apart_px[3, 2] = 0.0
    before[0, 2, 0] = 3 * px
    after = before.clone()
    after[0, 1, 0] += px
    # part 2 absent: meets nothing; part 2 fixed: part 1 takes it all
    present = torch.tensor([[1.0, 1.0, 0.0, 1.0]])
    torch.testing.assert_close(m.keep_apart(before, after, present), torch.zeros(1, 4, 2))
    fixed = torch.tensor([[False, False, True, False]])
    shift = m.keep_apart(before, after, fixed=fixed)
    torch.testing.assert_close(shift[0, 1], torch.tensor([-px, 0.0]))
    torch.testing.assert_close(shift[0, 2], torch.zeros(2))


def test_imagined_steps_keep_solid_parts_apart_and_off_it_is_not_stored() -> None:
    """A step through the model moves the pair by the dynamics, then apart: parts 1 and 2
    start 4 px apart and the dynamics alone bring them closer; kept 4 px apart they end 4 px
    apart, displacement and position consistent. ``apart_px`` is stored only when set."""
    m = _model()
    assert "apart_px" not in m.state_dict()
    pos = torch.tensor([[[-0.5, -0.5], [0.0, 0.0], [-0.25, 0.0], [0.6, -0.6]]])
    state, a = KeypointState(pos, torch.zeros_like(pos)), torch.zeros(1, 2)
    gap = lambda s: float((s.pos[0, 1] - s.pos[0, 2]).norm()) * 16  # noqa: E731  px at 32x32
    kept = torch.zeros(4, 4)
    kept[1, 2] = kept[2, 1] = 4.0
    with torch.no_grad():
        plain = m.advance(state, a)
        m.set_apart(kept)
        nxt = m.advance(state, a)
    assert gap(plain) < 3.99  # the dynamics alone (seeded weights)
    assert gap(nxt) == pytest.approx(4.0, abs=1e-3)
    torch.testing.assert_close(nxt.pos, pos + nxt.vel)
    torch.testing.assert_close(
        nxt.vel, plain.vel + m.keep_apart(pos, plain.pos, m.present(plain.presence))
    )
    # gradients through such a step (a grounding is fit through them) are finite
    moving = pos.clone().requires_grad_(True)
    out = m.advance(KeypointState(moving, torch.zeros_like(pos)), a.requires_grad_(True))
    out.pos.sum().backward()
    assert bool(torch.isfinite(moving.grad).all()) and bool(torch.isfinite(a.grad).all())
    assert "apart_px" in m.state_dict()
    # turned off, the step is the loose one again; set again, it keeps them apart
    with torch.no_grad():
        m.set_apart(torch.zeros(4, 4))
        off = m.advance(state, a)
        torch.testing.assert_close(off.pos, m.loose_step(state, a).pos, rtol=0, atol=0)
        torch.testing.assert_close(off.pos, plain.pos, rtol=0, atol=0)
        m.set_apart(kept)
        assert gap(m.advance(state, a)) == pytest.approx(4.0, abs=1e-3)
    with pytest.raises(ValueError, match=r"apart_px of shape \(3, 3\); expected \(4, 4\)"):
        m.set_apart(torch.zeros(3, 3))
    # loaded, a model keeps the pairs apart as the saved one did
    again = _model()
    again.load_state_dict(m.state_dict())
    torch.testing.assert_close(again.apart_px, m.apart_px)
    with torch.no_grad():
        torch.testing.assert_close(again.advance(state, a).pos, m.advance(state, a).pos)
        assert gap(again.advance(state, a)) == pytest.approx(4.0, abs=1e-3)


def test_apart_is_a_low_quantile_of_the_distance_between_objects_that_meet() -> None:
    """Known answers: keypoint 0 is driven; objects 1 and 2 come as close as 6 px (their
    distances uniform over 6-20 px), object 3 never nearer 1 or 2 than the interaction radius
    (12 px), object 4 is seen with the others in 50 frames only, and at 1 px from object 1,
    keypoint 5 is within one blob's width of it (4 px at 64x64: one part's two keypoints)."""
    torch.manual_seed(0)
    model = Keypoints(image_size=64, num_keypoints=6, action_dim=2, hidden=32, presence=True)
    with torch.no_grad():
        model.dynamics.gate_logit.copy_(torch.tensor([3.0, -3.0, -3.0, -3.0, -3.0, -3.0]))
        model.dynamics.log_radius.fill_(float(np.log(12 / 32)))
    gen = torch.Generator().manual_seed(0)
    n, px = 5000, 1 / 32
    pos = torch.zeros(n, 1, 6, 2)
    dist = 6 + 14 * torch.rand(n, generator=gen)
    pos[:, 0, 2, 0] = dist * px
    pos[:, 0, 3] = torch.tensor([0.0, 15 * px])  # 15 px from 1, at least 15 from 2
    pos[:, 0, 0] = torch.tensor([0.0, -3 * px])  # driven: never kept apart
    pos[:, 0, 4] = torch.tensor([0.0, -7 * px])  # 7 px from 1, but seldom seen
    pos[:, 0, 5] = torch.tensor([-px, 0.0])  # 1 px from object 1
    presence = torch.ones(n, 1, 6)
    presence[50:, 0, 4] = 0.0
    apart = calibrate_apart(model, (pos, presence))
    want = float(torch.quantile(dist, 0.01))
    assert float(apart[1, 2]) == pytest.approx(want, rel=1e-4) and 6 <= want < 6.2
    assert float(apart[2, 1]) == float(apart[1, 2])
    assert not apart[0].any() and not apart[:, 0].any()  # the driven keypoint
    assert not apart[3].any()  # never within reach of the others
    assert not apart[4].any()  # seen in 50 frames: too few to tell
    assert float(apart[1, 5]) == 0  # within two blob widths of object 1
    assert float(apart[2, 5]) == pytest.approx(want + 1, rel=1e-3)  # 1 px further than 1 is
    torch.testing.assert_close(model.apart_px, apart)
    with pytest.raises(ValueError, match=r"quantile=0"):
        calibrate_apart(model, (pos, presence), quantile=0)


def test_rest_is_the_quantile_of_the_drift_of_what_stays_put() -> None:
    """Tracks where keypoint 1 (undriven) stays exactly put unless touched: its still steps,
    and only those, are what the drift is measured on; calibrated at the 95th percentile, the
    model's own step (through ``settle``) moves it in 5% of those steps."""
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = Keypoints(num_keypoints=2, action_dim=2, hidden=32)
    with torch.no_grad():
        model.dynamics.gate_logit.copy_(torch.tensor([3.0, -3.0]))
        model.dynamics.log_radius.fill_(0.0)  # every pair within reach: every step drifts
    tracks = _touch_tracks(2000, 2, gen)
    moved_px = (tracks[:, 1:, 1] - tracks[:, :-1, 1]).norm(dim=-1) * 32  # keypoint 1, (N, 2)
    drift = still_drift_px(model, tracks)
    assert len(drift) == int((moved_px < 0.5).sum()) > 1000 and float(drift.min()) > 0
    rest = calibrate_rest(model, (tracks, None), quantile=0.95)
    assert float(model.rest_px) == pytest.approx(rest) and rest > 0
    with torch.no_grad():  # one step from each true state, as the drift is measured
        now = tracks[:, :-1].flatten(0, 1)
        state = KeypointState(now, last_displacements(tracks).flatten(0, 1))
        nxt = model.advance(state, model.actions_between(tracks).flatten(0, 1))
    still = (moved_px < 0.5).flatten()
    kept = (nxt.vel[still, 1].norm(dim=-1) > 0).float().mean()
    assert abs(float(kept) - 0.05) < 0.01, kept
    with pytest.raises(ValueError, match=r"quantile=1\.5"):
        calibrate_rest(model, (tracks, None), quantile=1.5)
    # steps where the keypoint is absent at either end are not counted
    torch.manual_seed(0)
    seen = Keypoints(num_keypoints=2, action_dim=2, hidden=32, presence=True)
    seen.load_state_dict(model.state_dict(), strict=False)
    presence = torch.ones(tracks.shape[:3])
    presence[:100, 2, 1] = 0.0  # gone in the last frame of the first 100 tracks
    absent_still = int((moved_px[:100, 1] < 0.5).sum())
    drift = still_drift_px(seen, tracks, presence)
    assert len(drift) == int((moved_px < 0.5).sum()) - absent_still and absent_still > 10


def test_training_calibrates_rest_on_held_out_tracks_and_resumes_exactly(
    toy: Path, tmp_path: Path
) -> None:
    """Before each checkpoint of the dynamics phase ``rest_px`` is calibrated (the perception
    phase leaves it off); runs stopped and resumed end with the same value and weights; a
    checkpoint from before ``rest_px`` existed loads with it off, and ``recalibrate_rest``
    sets it in the file."""

    def build():
        torch.manual_seed(0)
        schedule = KeypointSchedule(perception_steps=3, horizon_start=2, horizon_end=3)
        run = keypoints_training(
            str(toy), num_keypoints=4, action_dim=2, clip_length=4, schedule=schedule
        )
        with torch.no_grad():  # the agent's keypoint driven, the others not, from the start
            run.model.dynamics.gate_logit.copy_(torch.tensor([3.0, -3.0, -3.0, -3.0]))
        return run

    run = build()
    train(
        run.model,
        run.objective,
        run.dataset,
        tmp_path / "p",
        quick_settings(max_steps=3),
        before_checkpoint=run.before_checkpoint,
    )
    first, _ = load_model(tmp_path / "p" / "checkpoints" / "last.pt")
    assert float(first.rest_px) == 0.0  # perception only: nothing calibrated
    for out, stops in (("a", [6]), ("b", [4, 6])):
        for i, steps in enumerate(stops):
            run = build()
            train(
                run.model,
                run.objective,
                run.dataset,
                tmp_path / out,
                quick_settings(max_steps=steps),
                resume=i > 0,
                before_checkpoint=run.before_checkpoint,
            )
    a, _ = load_model(tmp_path / "a" / "checkpoints" / "last.pt")
    b, _ = load_model(tmp_path / "b" / "checkpoints" / "last.pt")
    assert float(a.rest_px) > 0
    for (k, v), v2 in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(v, v2, msg=k, rtol=0, atol=0)
    held_out = ClipDataset(str(toy), split="val", clip_length=4, stride=4)  # the toy has one
    again = calibrate_rest(b, spread_tracks(b, held_out))
    assert again == pytest.approx(float(a.rest_px), rel=1e-4)

    path = tmp_path / "a" / "checkpoints" / "last.pt"
    ckpt = torch.load(path, weights_only=False)
    del ckpt["model"]["rest_px"]  # as a checkpoint from before it existed
    torch.save(ckpt, tmp_path / "old.pt")
    old, _ = load_model(tmp_path / "old.pt")
    assert float(old.rest_px) == 0.0
    rest = recalibrate_rest(tmp_path / "old.pt", str(toy), split="train")
    again, saved = load_model(tmp_path / "old.pt")
    assert rest > 0 and float(again.rest_px) == pytest.approx(rest)
    assert saved["rest_calibration"]["data"] == str(toy)
    # a shipped model is not rewritten in place; a copy is written where asked
    with pytest.raises(ValueError, match="out="):
        recalibrate_rest("keypoints_pushmulti", str(toy))
    copy = tmp_path / "c" / "copy.pt"
    assert recalibrate_rest(tmp_path / "old.pt", str(toy), copy, split="train") == rest
    assert float(load_model(copy)[0].rest_px) == pytest.approx(rest)
    # apart_px: calibrated with rest_px on the same tracks, and recalibrated into a copy
    assert a.apart_px.any()
    torch.testing.assert_close(calibrate_apart(b, spread_tracks(b, held_out)), a.apart_px)
    train_split = held_out_clips(str(toy), "train", 9)  # a run without a config: 9 frames
    apart = recalibrate_apart(tmp_path / "old.pt", str(toy), copy, split="train")
    assert apart.shape == (4, 4)
    torch.testing.assert_close(apart, calibrate_apart(b, spread_tracks(b, train_split)))
    again, saved = load_model(copy)
    torch.testing.assert_close(again.apart_px, apart)
    assert saved["apart_calibration"]["data"] == str(toy)
    # both off: no hook, so a moving average of the weights is allowed
    run = keypoints_training(
        str(toy),
        num_keypoints=4,
        clip_length=4,
        rest_calibration=False,
        apart_calibration=False,
    )
    assert run.before_checkpoint is None
