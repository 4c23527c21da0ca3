"""The frame autoencoder and YODA in its latent space: shapes and errors, latent statistics
with a known answer, learning a toy scene's frames, the latent model's contract, its exact
resume, and its refusal of an autoencoder it was not trained on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.train_settings import quick_settings, straight_and_resumed

from latentplay.evaluation import metrics as M
from latentplay.rollouts.format import EpisodeReader
from latentplay.utils.frames import to_numpy_frames, to_tensor_frames
from latentplay.world_models.autoencoder import FrameAutoencoder
from latentplay.world_models.autoencoder.train import autoencoder_training
from latentplay.world_models.checkpoint import (
    CheckpointMismatchError,
    load_model,
    save_checkpoint,
)
from latentplay.world_models.protocol import Actions, StateEmbedding
from latentplay.world_models.train import train
from latentplay.world_models.yoda import Yoda
from latentplay.world_models.yoda.train import YodaSchedule, yoda_training


@pytest.fixture
def toy(push_toy: Path) -> Path:
    return push_toy


def _autoencoder_file(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    ae = FrameAutoencoder(image_size=32, latent_channels=4, downsample=4, width=8)
    return save_checkpoint(path, model=ae, step=0)


def test_shapes_range_and_errors() -> None:
    ae = FrameAutoencoder(image_size=32, latent_channels=3, downsample=4, width=8).eval()
    frames = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        z = ae.encode(frames)
    assert z.shape == (5, 3, 8, 8)
    out = ae.decode(z)
    assert out.shape == (5, 3, 32, 32) and 0 <= out.min().item() and out.max().item() <= 1
    with pytest.raises(ValueError, match=r"frames of shape \(5, 3, 16, 16\)"):
        ae.encode(frames[..., :16, :16])
    with pytest.raises(ValueError, match=r"latents of shape \(5, 3, 4, 4\)"):
        ae.decode(z[..., :4, :4])
    with pytest.raises(ValueError, match="downsample=3"):
        FrameAutoencoder(downsample=3)
    with pytest.raises(ValueError, match="image_size=36"):
        FrameAutoencoder(image_size=36, downsample=8)


def test_statistics_make_latents_zero_mean_unit_std() -> None:
    torch.manual_seed(0)
    ae = FrameAutoencoder(image_size=32, latent_channels=4, width=8).eval()
    frames = torch.rand(64, 3, 32, 32)
    before = ae.encode(frames).transpose(0, 1).flatten(1)
    ae.set_statistics(frames, chunk=10)
    z = ae.encode(frames).transpose(0, 1).flatten(1)
    torch.testing.assert_close(z.mean(1), torch.zeros(4), atol=1e-4, rtol=0)
    torch.testing.assert_close(z.std(1), torch.ones(4), atol=1e-3, rtol=0)
    assert not torch.allclose(before.std(1), torch.ones(4), atol=0.05)  # the check can fail
    # normalising is undone exactly by decode: the frames do not change
    torch.testing.assert_close(ae.decode(ae.encode(frames)), ae.decode_raw(ae.encode_raw(frames)))


def _psnr(model: FrameAutoencoder, root: Path) -> float:
    reader = EpisodeReader(root)
    frames = np.concatenate([reader.frames(ep) for ep in reader.indices("test")])
    with torch.no_grad():
        rebuilt = to_numpy_frames(model.reconstruct(to_tensor_frames(frames)))
    return float(
        np.mean(M.psnr(rebuilt.transpose(0, 3, 1, 2) / 255, frames.transpose(0, 3, 1, 2) / 255))
    )


def test_autoencoder_learns_the_toy_frames(toy: Path, tmp_path: Path) -> None:
    """Known answer: a few hundred steps rebuild held-out frames of the toy scene (flat
    colours, small squares) far better than the untrained net."""
    torch.manual_seed(0)
    run = autoencoder_training(str(toy), latent_channels=4, downsample=4, width=16)
    untrained = _psnr(run.model.eval(), toy)
    train(
        run.model,
        run.objective,
        run.dataset,
        tmp_path / "ae",
        quick_settings(batch_size=32, max_steps=300, lr=2e-3),
        before_checkpoint=run.before_checkpoint,
    )
    model, _ = load_model(tmp_path / "ae" / "checkpoints" / "last.pt")
    trained = _psnr(model, toy)
    assert untrained < 20, f"untrained PSNR {untrained:.1f} dB: the bar below would not test"
    assert trained >= 25, f"PSNR {trained:.1f} dB after 300 steps (untrained {untrained:.1f})"


def test_latent_yoda_contract_and_exact_resume(toy: Path, tmp_path: Path) -> None:
    ae = _autoencoder_file(tmp_path / "ae.pt", seed=0)
    schedule = YodaSchedule(clip_length=4)

    def build() -> tuple:
        torch.manual_seed(0)
        run = yoda_training(str(toy), size="xs", memory=3, autoencoder=str(ae), schedule=schedule)
        return run.model, run.objective, run.dataset

    model = build()[0].eval()
    assert model.latent and isinstance(model, StateEmbedding)
    frames = torch.randint(0, 256, (2, 3, 3, 32, 32), dtype=torch.uint8)
    state = model.encode(frames)
    assert state.frames.shape == (2, 3, 4, 8, 8)  # latents, not frames
    assert model.embed(state).shape == (2, 4 * 8 * 8)
    video = model.rollout(frames[:, :1], model.infer_actions(frames))
    assert video.shape == (2, 2, 3, 32, 32)
    assert model.simulate(frames[:, :1], 2).shape == (2, 2, 3, 32, 32)
    assert model.decode(model.step(state, Actions())).shape == (2, 3, 32, 32)

    a, b = straight_and_resumed(build, tmp_path, steps=4)
    for (k, v), v2 in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(v, v2, msg=k, rtol=0, atol=0)
    frozen = torch.load(ae, weights_only=False)["model"]
    for k, v in frozen.items():  # training never touches the autoencoder
        torch.testing.assert_close(a.state_dict()[f"autoencoder.{k}"], v, rtol=0, atol=0)


def test_latent_yoda_refuses_another_autoencoder(tmp_path: Path) -> None:
    ae = _autoencoder_file(tmp_path / "ae.pt", seed=0)
    model = Yoda(size="xs", image_size=32, memory=3, autoencoder=str(ae))
    digest = model.model_args()["autoencoder_sha256"]
    path = save_checkpoint(tmp_path / "yoda.pt", model=model, step=0)
    assert load_model(path)[0].latent  # the same file: loads
    _autoencoder_file(ae, seed=1)  # the autoencoder is retrained in place
    with pytest.raises(CheckpointMismatchError, match=digest[:16]):
        load_model(path)
    with pytest.raises(CheckpointMismatchError, match="expected an autoencoder"):
        Yoda(size="xs", image_size=32, autoencoder=str(path))
    with pytest.raises(FileNotFoundError, match=r"missing\.pt"):
        Yoda(size="xs", image_size=32, autoencoder=str(tmp_path / "missing.pt"))


def test_latent_yoda_trains_on_cached_latents_and_flows_of_its_frames(
    toy: Path, tmp_path: Path
) -> None:
    """The cache holds what the uncached step computes: each frame's latent and the flow of
    each transition (fp16); a function that returns the wrong number of rows is refused."""
    from latentplay.rollouts.dataset import ClipDataset, EpisodeCache

    ae = _autoencoder_file(tmp_path / "ae.pt", seed=0)
    torch.manual_seed(0)
    run = yoda_training(str(toy), size="xs", memory=3, autoencoder=str(ae))
    model, objective = run.model, run.objective
    latents, flows = objective.caches(model)
    ep = int(run.dataset.index[0, 0])
    frames = run.dataset.episode_frames(ep)
    with torch.no_grad():
        want = model.to_space(to_tensor_frames(frames))
    torch.testing.assert_close(latents.per_episode[ep], want, rtol=0, atol=1e-5)
    flow = torch.from_numpy(model.flow(frames[3], frames[4]))
    torch.testing.assert_close(flows.per_episode[ep][3].float(), flow, rtol=1e-3, atol=1e-2)
    assert flows.per_episode[ep][-1].abs().max() == 0  # the last frame has no next one
    loss, terms = objective(model, torch.zeros(4, 4, 3, 32, 32), step=0)
    assert torch.isfinite(loss) and "flow_matching" in terms
    with torch.autocast("cpu", dtype=torch.bfloat16):  # trainer.precision=bf16
        loss, _ = objective(model, torch.zeros(4, 4, 3, 32, 32), step=1)
        assert flows.clips(flows.draw(2)).dtype == torch.float16  # kept as cached
    assert torch.isfinite(loss)
    with pytest.raises(ValueError, match="expected one per frame"):
        EpisodeCache(ClipDataset(toy, split="val", clip_length=2), lambda f: torch.zeros(1))


def test_a_latent_planner_never_decodes(tmp_path: Path) -> None:
    """CEM over the latent model with the state cost scores distances between latents: the
    decoder is never called, and the plan has the model's action shape."""
    from latentplay.agents.planners import CEM
    from latentplay.agents.planners.costs import GoalImageCost

    ae = _autoencoder_file(tmp_path / "ae.pt", seed=0)
    torch.manual_seed(0)
    model = Yoda(size="xs", image_size=32, memory=2, sample_steps=1, autoencoder=str(ae)).eval()

    def no_decode(*_: object) -> torch.Tensor:
        raise AssertionError("a latent-space cost decoded a frame")

    model.to_frames = no_decode  # type: ignore[method-assign]
    frame, goal = torch.rand(1, 1, 3, 32, 32), torch.rand(3, 32, 32)
    planner = CEM(model.action_spec, horizon=2, samples=8, elites=2, iterations=2)
    with torch.no_grad():
        plan = planner.plan(GoalImageCost(model, frame, goal, space="state"))
    assert plan.actions.continuous.shape == (1, 2, 4 * model.points)
    with pytest.raises(ValueError, match="takes 32x32"):
        Yoda(size="xs", image_size=64, autoencoder=str(ae))


def test_a_latent_model_ships_with_its_autoencoder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shipped, a latent model names its shipped autoencoder (checked to hold the same
    weights) and loads by name alone; without it, or with another autoencoder, shipping is
    refused."""
    from latentplay.world_models import shipped
    from latentplay.world_models.checkpoint import load_model

    monkeypatch.setattr(shipped, "MODELS_DIR", tmp_path / "models")
    ae = _autoencoder_file(tmp_path / "ae.pt", seed=0)
    torch.manual_seed(1)
    yoda = Yoda(size="xs", image_size=32, memory=2, autoencoder=str(ae))
    ckpt = save_checkpoint(tmp_path / "yoda.pt", model=yoda, step=7)
    shipped.ship(ae, "ae_toy")
    shipped.ship(_autoencoder_file(tmp_path / "other.pt", seed=1), "ae_other")
    with pytest.raises(ValueError, match=r"pass autoencoder=.*'ae_other', 'ae_toy'"):
        shipped.ship(ckpt, "yoda_toy")
    with pytest.raises(ValueError, match="'ae_other' is not the one"):
        shipped.ship(ckpt, "yoda_toy", autoencoder="ae_other")
    with pytest.raises(ValueError, match="half=False"):
        shipped.ship(ckpt, "yoda_toy", autoencoder="ae_toy", half=True)
    with pytest.raises(ValueError, match="is not a latent model"):
        shipped.ship(ae, "ae_again", autoencoder="ae_toy")
    shipped.ship(ckpt, "yoda_toy", autoencoder="ae_toy")
    (tmp_path / "ae.pt").unlink()  # the shipped pair needs nothing outside models/
    model, meta = load_model("yoda_toy")
    assert meta["model_args"]["autoencoder"] == "ae_toy" and meta["step"] == 7
    frames = torch.randint(0, 256, (1, 2, 3, 32, 32), dtype=torch.uint8)
    torch.testing.assert_close(model.encode(frames).frames, yoda.encode(frames).frames)
    for name, p in model.state_dict().items():
        torch.testing.assert_close(p, yoda.state_dict()[name], rtol=0, atol=0)


def test_reencoding_puts_every_nth_generated_latent_through_the_autoencoder(
    tmp_path: Path,
) -> None:
    """reencode_every=2 gives exactly the rollout of a plain sampler whose 2nd and 4th
    generated latents are replaced by encode(clip(decode(.))) (same noise: re-encoding draws
    none); a pixel YODA and a negative count are refused."""
    from latentplay.world_models.yoda import YodaState

    ae = _autoencoder_file(tmp_path / "ae.pt", seed=0)
    torch.manual_seed(0)
    model = Yoda(size="xs", image_size=32, memory=8, autoencoder=str(ae)).eval()
    frames = torch.randint(0, 256, (1, 1, 3, 32, 32), dtype=torch.uint8)
    null = Actions(continuous=None)
    coder = model.autoencoder

    def roll(every: int, by_hand: bool = False) -> torch.Tensor:
        model.set_sampler(reencode_every=every)
        model.generator = torch.Generator().manual_seed(3)
        state = model.encode(frames)
        for k in range(1, 5):
            state = model.step(state, null)
            if by_hand and k % 2 == 0:
                with torch.no_grad():
                    last = coder.encode(coder.decode(state.frames[:, -1]).clamp(0, 1))
                state = YodaState(torch.cat([state.frames[:, :-1], last[:, None]], 1), k)
        assert state.generated == 4
        return state.frames[0, 1:]  # the 4 generated latents

    plain, every2, reference = roll(0), roll(2), roll(0, by_hand=True)
    torch.testing.assert_close(every2, reference, rtol=0, atol=0)
    torch.testing.assert_close(every2[0], plain[0], rtol=0, atol=0)  # the 1st: as generated
    assert not torch.allclose(every2[1], plain[1])  # the 2nd: re-encoded
    with pytest.raises(ValueError, match="reencode_every=-1"):
        model.set_sampler(reencode_every=-1)
    with pytest.raises(ValueError, match="generates pixels"):
        Yoda(size="xs", image_size=32).set_sampler(reencode_every=2)
