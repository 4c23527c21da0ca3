"""GLASS: shapes, losses with known answers, checkpoints and exact resume, and learning a toy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.train_settings import quick_settings

from latentplay.evaluation import metrics as M
from latentplay.rollouts.dataset import ClipDataset
from latentplay.rollouts.format import EpisodeReader
from latentplay.world_models.checkpoint import CheckpointMismatchError, load_model
from latentplay.world_models.glass import Glass, LossWeights, glass_losses
from latentplay.world_models.glass import losses as L
from latentplay.world_models.glass.model import MAX_LOCAL_FLOW, Renderer
from latentplay.world_models.glass.train import GlassCalibration, GlassObjective, GlassSchedule
from latentplay.world_models.layers import VectorQuantizer, shift_images, warp_images
from latentplay.world_models.protocol import Actions, WorldModel
from latentplay.world_models.train import train


@pytest.fixture(scope="module")
def toy(toy_dataset) -> Path:
    return toy_dataset(episodes=48, steps=16, size=32)


def _model(**kw) -> Glass:
    torch.manual_seed(0)
    return Glass(size="xs", image_size=32, num_actions=3, **kw)


# ---------------------------------------------------------------------------- shapes, protocol
def test_forward_shapes_and_protocol() -> None:
    m = _model()
    assert isinstance(m, WorldModel)
    x = torch.randint(0, 256, (2, 5, 3, 32, 32), dtype=torch.uint8)
    out = m(x, teacher_forced_steps=2)
    assert out["masks"].shape == (2, 5, 1, 32, 32)
    assert out["fg_shift"].shape == (2, 4, 2) and out["ids"].shape == (2, 4)
    assert [r.shape[-1] for r in out["rendered"]] == [8, 16, 32]
    acts = m.infer_actions(x)
    assert acts.continuous.shape == (2, 4, 2) and acts.discrete.dtype == torch.long
    frames = m.rollout(x[:, :2], acts)
    assert frames.shape == (2, 4, 3, 32, 32)
    assert float(frames.detach().min()) >= 0 and float(frames.detach().max()) <= 1
    assert m.teacher_forced(x).shape == (2, 4, 3, 32, 32)
    spec = m.action_spec
    assert (spec.continuous, spec.discrete) == (2, 3) and spec.continuous_bound > 0


def test_shift_heads_start_from_no_shift() -> None:
    m = _model()
    acts = m.infer_actions(torch.rand(1, 3, 3, 32, 32))
    assert torch.count_nonzero(acts.continuous) == 0


def test_state_is_explicit_and_branches() -> None:
    m = _model().eval()
    x = torch.rand(1, 2, 3, 32, 32)
    s = m.encode(x)
    a = Actions(torch.tensor([[0.1, 0.0]]), torch.tensor([1]))
    with torch.no_grad():
        f1 = m.decode(m.step(s, a))
        f2 = m.decode(m.step(s, a))  # stepping did not change s
    torch.testing.assert_close(f1, f2)


# ---------------------------------------------------------------------------- layers, losses
def test_shift_images_moves_content_by_whole_pixels() -> None:
    img = torch.zeros(1, 1, 8, 8)
    img[0, 0, 3, 2] = 1.0
    out = shift_images(img, torch.tensor([[2 * 2 / 8, -1 * 2 / 8]]))  # +2 px right, 1 px up
    assert out[0, 0, 2, 4] == pytest.approx(1.0) and float(out.sum()) == pytest.approx(1.0)


def test_warp_by_a_constant_flow_is_a_shift() -> None:
    x = torch.rand(2, 3, 16, 16)
    shifts = torch.tensor([[0.25, -0.125], [0.1, 0.3]])
    flow = shifts[:, :, None, None].expand(-1, -1, 16, 16)
    torch.testing.assert_close(warp_images(x, flow), shift_images(x, shifts))
    img = torch.zeros(1, 1, 8, 8)
    img[0, 0, 3, 2] = 1.0
    flow = torch.zeros(1, 2, 8, 8)
    flow[0, 0, 3, 3] = 2 / 8  # only the pixel right of the dot pulls from one pixel left
    out = warp_images(img, flow)
    assert float(out[0, 0, 3, 3]) == pytest.approx(1.0) and float(out[0, 0, 3, 2]) == 1.0


def test_flow_renderer_can_move_a_link_the_global_shift_does_not() -> None:
    """Known answer: a flow of +1 px in x everywhere and a zero blend weight render the
    shifted previous foreground moved one more pixel right."""
    torch.manual_seed(0)
    r = Renderer(hidden=8, w=4, kind="flow")
    h = torch.randn(1, 8, 4, 4)
    fg, mask = torch.rand(1, 3, 32, 32), torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        for head in r.heads:
            head.weight.zero_()
            head.bias.zero_()
            head.bias[4] = -30.0  # blend weight sigmoid(-30) ~ 0: keep the warped base
            head.bias[5] = float(torch.atanh(torch.tensor((2 / 32) / MAX_LOCAL_FLOW)))
        rgbs, m = r(h, fg, mask)
    torch.testing.assert_close(rgbs[-1], shift_images(fg, torch.tensor([[2 / 32, 0.0]])))
    torch.testing.assert_close(m, shift_images(mask, torch.tensor([[2 / 32, 0.0]])))
    assert [x.shape[-1] for x in rgbs] == [8, 16, 32]
    with pytest.raises(ValueError, match="renderer='crisp'"):
        Renderer(hidden=8, w=4, kind="crisp")


def test_remembered_background_shows_what_an_occluder_uncovers() -> None:
    """A static scene behind a 1-pixel occluder moving right: where the occluder stands at t,
    the background is the pixel seen there before; where it stood from the start, the
    inpainting."""
    scene = torch.rand(1, 1, 3, 4, 6).expand(1, 4, 3, 4, 6)
    masks = torch.zeros(1, 4, 1, 4, 6)
    for t in range(4):
        masks[0, t, 0, :, 1 + t] = 1.0  # column 1 + t is covered at t
    frames = scene * (1 - masks)  # the occluder is black
    fills = torch.full_like(frames, 0.5)  # an inpainter that knows nothing
    bg = Glass.remembered_backgrounds(frames, masks, frames * (1 - masks) + fills * masks)
    torch.testing.assert_close(bg[0, 0, :, :, 1], fills[0, 0, :, :, 1])  # never seen yet
    torch.testing.assert_close(bg[0, 3, :, :, 4], scene[0, 3, :, :, 4])  # seen at t <= 2
    torch.testing.assert_close(bg[0, 3, :, :, 1], scene[0, 3, :, :, 1])  # seen since t=1
    torch.testing.assert_close(bg[0, 2, :, :, 3], scene[0, 2, :, :, 3])


def test_mask_losses_known_values() -> None:
    half = torch.full((2, 3, 1, 4, 4), 0.5)
    assert float(L.binary_mask_loss(half)) == pytest.approx(0.5)
    binary = (torch.rand(2, 3, 1, 4, 4) > 0.5).float()
    assert float(L.binary_mask_loss(binary)) == 0.0
    assert float(L.mask_size_loss(torch.full((1, 2, 1, 4, 4), 0.1), 0.06)) == pytest.approx(0.04)


def test_shift_losses_known_values() -> None:
    fg = torch.rand(2, 4, 3, 8, 8)
    assert float(L.foreground_shift_loss(fg, fg[:, 1:])) == 0.0
    assert float(L.foreground_shift_loss(fg, fg[:, 1:] + 0.5)) == pytest.approx(0.25)
    assert float(L.background_shift_loss(fg, fg[:, 1:] - 0.2)) == pytest.approx(0.2)


def test_gradient_l1_known_value() -> None:
    a = torch.zeros(1, 1, 1, 4, 4)
    b = a.clone()
    b[..., :, 2:] = 1.0  # one vertical edge: horizontal differences differ in 4 of 12 places
    assert float(L.gradient_l1(a, a)) == 0.0
    assert float(L.gradient_l1(a, b)) == pytest.approx(4 / 12)


def test_motion_weights_and_moving_pixels() -> None:
    x = torch.zeros(1, 3, 3, 6, 6)
    x[:, 1, :, 2, 2] = 1.0  # a pixel lights up at t=1 only
    w = L.motion_weights(x, x[:, 1:], bias=0.001)
    assert float(w[0, 0, 0, 2, 2]) == pytest.approx(6.001)  # |1-0| x 3 channels, twice
    assert float(w[0, 0, 0, 0, 0]) == pytest.approx(0.001)
    target, weight = L.moving_pixels(x, margin=1)
    # (2, 2) differs from both neighbours at t=1 only: moving there; at the clip ends it
    # differs from its one neighbour: not judged.
    assert target[0, :, 0, 2, 2].tolist() == [0.0, 1.0, 0.0]
    assert weight[0, :, 0, 2, 2].tolist() == [0.0, 1.0, 0.0]
    assert weight[0, :, 0, 2, 3].tolist() == [0.0, 0.0, 0.0]  # beside a change: not judged
    assert target[0, :, 0, 5, 5].tolist() == [0.0, 0.0, 0.0]  # far from it: static
    assert weight[0, :, 0, 5, 5].tolist() == [1.0, 1.0, 1.0]


def test_motion_prior_ignores_pixels_a_mover_only_arrives_at_or_leaves() -> None:
    x = torch.zeros(1, 3, 3, 8, 8)
    for t in range(3):
        x[:, t, :, 4, t + 2 : t + 5] = 1.0  # a 3-pixel bar moving right by 1 pixel per frame
    _, weight = L.moving_pixels(x, margin=1)
    # At t=1 the bar covers columns 3-5: column 3 was dark at t+1, column 5 at t-1 (each
    # changed towards one neighbour), column 4 is bright in all three frames.
    assert weight[0, 1, 0, 4, 3:6].tolist() == [0.0, 0.0, 0.0]
    masks = torch.full((1, 3, 1, 8, 8), 0.01)
    masks[0, :, :, 4] = 0.99  # a whole row: right on the bar, wrong only beside it
    far = torch.full_like(masks, 0.01)
    far[0, :, :, 0] = 0.99  # a row far from any motion: wrong
    assert float(L.motion_prior_loss(masks, x)) < float(L.motion_prior_loss(far, x))


def test_vector_quantizer_picks_nearest_code_with_straight_through_gradient() -> None:
    vq = VectorQuantizer(3, 2).eval()
    with torch.no_grad():
        vq.codebook.weight.copy_(torch.tensor([[-1.0, -1.0], [3.0, 0.0], [0.0, 0.5]]))
    z = torch.tensor([[0.9, 0.1], [0.1, 0.8]], requires_grad=True)
    q, ids, loss = vq(z)
    assert ids.tolist() == [1, 2]  # cosine nearest
    torch.testing.assert_close(q, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    q.sum().backward()
    z2 = z.detach().clone().requires_grad_()
    torch.nn.functional.normalize(z2, dim=1).sum().backward()
    torch.testing.assert_close(z.grad, z2.grad)  # straight through: the normalization's alone
    assert float(loss.detach()) > 0


@pytest.mark.parametrize("bf16", [False, True])
def test_vector_quantizer_restarts_dead_codes(bf16: bool) -> None:
    """Also under bf16 autocast (trainer.precision=bf16), where the inputs come from bf16
    layers and the restarted codes must go into the fp32 codebook."""
    torch.manual_seed(0)
    vq = VectorQuantizer(4, 2).train()
    with torch.no_grad():
        vq.codebook.weight.copy_(torch.tensor([[1.0, 0.0], [1.0, 0.01], [1.0, -0.01], [0.99, 0.0]]))
    z = torch.randn(256, 2)  # inputs all around the circle; codes bunched at one angle
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for _ in range(300):
            vq(z.bfloat16() if bf16 else z)
    assert vq.codebook.weight.dtype == torch.float32
    _, ids, _ = vq.eval()(z)
    assert len(torch.unique(ids)) == 4, "every code ends up used"


def test_total_loss_covers_every_term() -> None:
    m = _model()
    out = m(torch.rand(2, 4, 3, 32, 32), teacher_forced_steps=1)
    loss, terms = glass_losses(out, LossWeights(), gma_only=False, motion_prior_scale=0.5)
    assert {"reconstruction", "foreground_shift", "vq", "state", "motion_prior"} <= set(terms)
    loss.backward()
    assert all(p.grad is not None for p in m.masker.parameters())
    _, gma_terms = glass_losses(
        m(torch.rand(2, 4, 3, 32, 32), 1, with_lma=False), LossWeights(), True
    )
    assert "vq" not in gma_terms


def test_schedules() -> None:
    s = GlassSchedule(seq_len_start=4, seq_len_end=8, seq_len_ramp_steps=100, motion_prior_steps=10)
    s0 = GlassSchedule(motion_prior_steps=10, motion_prior_floor=0.0)
    assert [s.seq_len(t) for t in (0, 50, 100, 500)] == [4, 6, 8, 8]
    assert [s.teacher_forced(t) for t in (0, 10_000)] == [5, 1]
    assert s.motion_prior(0) == 1.0 and s.motion_prior(5) == 0.5 and s.motion_prior(20) == 0.2
    assert s0.motion_prior(20) == 0.0


def test_calibrate_gives_inference_the_statistics_of_the_clips() -> None:
    """Precise BatchNorm: after calibrating on one batch, inference (running statistics) picks
    the local actions that normalizing by that batch's own statistics picks; nothing but the
    action network's normalization buffers changes, and the mode is restored."""
    m = _model()
    x = torch.rand(8, 5, 3, 32, 32)
    with torch.no_grad():
        for bn in m.modules():  # running statistics far from any batch's
            if isinstance(bn, torch.nn.BatchNorm1d):
                bn.running_mean.fill_(5.0)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    m.train()
    m.calibrate([x])
    assert m.training
    changed = {k for k, v in m.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith("action_net.mlp.") for k in changed), changed
    with torch.no_grad():
        m.eval()
        ids_running = m.infer_actions(x).discrete
        for bn in m.action_net.modules():
            if isinstance(bn, torch.nn.BatchNorm1d):
                bn.train()  # normalize by the batch itself
        ids_batch = m.infer_actions(x).discrete
    torch.testing.assert_close(ids_running, ids_batch)


# ---------------------------------------------------------------------------- checkpoints
_settings = quick_settings  # every call here names its max_steps


def _objective() -> GlassObjective:
    return GlassObjective(GlassSchedule(gma_warmup_steps=2, seq_len_start=4, seq_len_end=4))


def test_checkpoint_round_trip(toy: Path, tmp_path: Path) -> None:
    data = ClipDataset(toy, clip_length=4, cache=True)
    m = _model()
    train(m, _objective(), data, tmp_path / "run", _settings(max_steps=2))
    loaded, ckpt = load_model(tmp_path / "run" / "checkpoints" / "last.pt")
    assert ckpt["step"] == 2 and ckpt["model_args"]["size"] == "xs"
    x = torch.rand(1, 3, 3, 32, 32)
    m.eval()
    torch.testing.assert_close(loaded.infer_actions(x).continuous, m.infer_actions(x).continuous)


def test_resume_continues_exactly(toy: Path, tmp_path: Path) -> None:
    data = ClipDataset(toy, clip_length=4, cache=True)
    calibrate = GlassCalibration(data, clips=16)  # before every checkpoint: 2 of them in b
    straight = _model()
    train(
        straight,
        _objective(),
        data,
        tmp_path / "a",
        _settings(max_steps=6),
        before_checkpoint=calibrate,
    )
    first = _model()
    train(
        first,
        _objective(),
        data,
        tmp_path / "b",
        _settings(max_steps=3),
        before_checkpoint=calibrate,
    )
    second = _model()
    train(
        second,
        _objective(),
        data,
        tmp_path / "b",
        _settings(max_steps=6),
        resume=True,
        before_checkpoint=calibrate,
    )
    for (k, v), v2 in zip(straight.state_dict().items(), second.state_dict().values(), strict=True):
        torch.testing.assert_close(v, v2, msg=k, rtol=0, atol=0)
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3  # steps 2, 4, 6: nothing doubled by the resume


def test_checkpoint_of_another_model_is_refused(toy: Path, tmp_path: Path) -> None:
    data = ClipDataset(toy, clip_length=4, cache=True)
    train(_model(), _objective(), data, tmp_path / "run", _settings(max_steps=1))
    with pytest.raises(FileExistsError, match="resume=true"):
        train(_model(), _objective(), data, tmp_path / "run", _settings(max_steps=2))
    bigger = Glass(size="s", image_size=32, num_actions=3)
    with pytest.raises(CheckpointMismatchError, match="size: 'xs' vs 's'"):
        train(bigger, _objective(), data, tmp_path / "run", _settings(max_steps=2), resume=True)
    path = tmp_path / "run" / "checkpoints" / "last.pt"
    ckpt = torch.load(path, weights_only=False)
    ckpt["model_args"]["renderer"] = "blend"  # arguments that do not build these weights
    torch.save(ckpt, tmp_path / "edited.pt")
    with pytest.raises(CheckpointMismatchError, match=r"edited\.pt: its weights do not fit"):
        load_model(tmp_path / "edited.pt")


# ---------------------------------------------------------------------------- learning a toy
def _scores(model: Glass, root: Path) -> tuple[float, float]:
    """R² of the global shifts against the true shifts, and NMI of the local actions."""
    reader = EpisodeReader(root)
    parts = {"val": [], "test": []}
    model.eval()
    with torch.no_grad():
        for split in parts:
            for ep in reader.indices(split):
                x = torch.from_numpy(reader.frames(ep)).permute(0, 3, 1, 2)[None]
                acts = model.infer_actions(x)
                gt = reader.ground_truth(ep)
                parts[split].append(
                    (
                        acts.continuous[0].numpy() * 16,
                        acts.discrete[0].numpy(),
                        gt["shift"],
                        gt["local"],
                    )
                )
    fit = [np.concatenate(p) for p in zip(*parts["val"], strict=True)]
    test = [np.concatenate(p) for p in zip(*parts["test"], strict=True)]
    r2 = M.linear_r2(fit[0], fit[2], test[0], test[2])["r2"]
    return r2, M.nmi(test[1], test[3])


def test_xs_model_recovers_the_true_actions_of_a_toy(toy: Path, tmp_path: Path) -> None:
    """Known answer: from frames alone, the learned global shifts map linearly onto the true
    shifts and the learned local actions match the true ones; an untrained model does not."""
    r2_0, nmi_0 = _scores(_model(), toy)
    assert r2_0 < 0.5 and nmi_0 < 0.05, "the thresholds below must fail for an untrained model"
    model = _model(code_dim=8)
    data = ClipDataset(toy, clip_length=6, cache=True)
    schedule = GlassSchedule(
        gma_warmup_steps=150,
        seq_len_start=6,
        seq_len_end=6,
        teacher_forced_start=5,
        teacher_forced_end=5,
        motion_prior_steps=150,
    )
    weights = LossWeights(mask_size_target=0.06)
    train(
        model,
        GlassObjective(schedule, weights),
        data,
        tmp_path / "toy_run",
        _settings(batch_size=16, max_steps=400, max_minutes=None, lr=2e-3),
        before_checkpoint=GlassCalibration(data),
    )
    r2, nmi = _scores(model, toy)
    assert r2 >= 0.9, f"global shift R² {r2:.3f}"
    # Local actions are learned slowly on this budget, and whether two of the three merge into
    # one code after 400 steps depends on the seed and on the CPU's kernels and thread count:
    # the bar is "clearly above an untrained model" (five times its bound), not "high".
    assert nmi >= 0.25, f"local action NMI {nmi:.3f}"
