"""Shipped models load by name and reproduce their card's figure on the small fixed set."""

from __future__ import annotations

import pytest

from latentplay.evaluation.shipped import card_check
from latentplay.world_models.checkpoint import load_model, training_summary
from latentplay.world_models.shipped import card, resolve_checkpoint, shipped_models

SHIPPED = sorted(shipped_models())


def test_there_are_shipped_models_within_the_size_budget() -> None:
    assert SHIPPED, "no shipped models under models/"
    total = sum(p.stat().st_size for p in shipped_models().values())
    assert total <= 30 * 2**20, f"shipped weights {total / 2**20:.1f} MB; the budget is 30 MB"


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_model_reproduces_its_card(name: str) -> None:
    _, ckpt = load_model(name)
    assert ckpt["model_name"] == card(name)["model"]
    recorded = card(name)["check"]
    assert recorded["figures"], f"{name}: its card records no check figure"
    measured = card_check(name)
    for key, value in recorded["figures"].items():
        assert measured[key] == pytest.approx(value, abs=recorded["tolerance"][key]), key


def test_an_unknown_name_lists_the_shipped_ones() -> None:
    with pytest.raises(FileNotFoundError, match=r"no shipped model has that name \(shipped: \["):
        resolve_checkpoint("no_such_model")


def test_reports_say_whether_a_model_is_shipped_or_a_short_run() -> None:
    for name in SHIPPED:  # the 8-minute autoencoder included
        _, shipped = load_model(name)
        assert training_summary(shipped).startswith("shipped model, trained "), name
    short = {"elapsed_seconds": 90.0, "step": 1200}
    assert training_summary(short) == (
        "short run (1.5 min, 1,200 steps): a demonstration of training, not a trained model"
    )
    assert training_summary({"elapsed_seconds": 1800.0, "step": 9}) == "trained 30.0 min, 9 steps"


def test_a_shipped_grounding_belongs_to_its_shipped_model() -> None:
    from latentplay.agents.state_grounding import SHIPPED_FILE, load_state_grounding

    with_grounding = [n for n, w in shipped_models().items() if w.with_name(SHIPPED_FILE).is_file()]
    assert with_grounding, "no shipped model ships a state grounding"
    for name in with_grounding:
        model, _ = load_model(name)
        g = load_state_grounding(name, model)  # refused if fit through other weights
        assert g.labels == card(name)["grounding"]["labels"], name


@pytest.mark.parametrize("name", ["glass_push", "yoda_latent_pushmulti"])
def test_a_model_loads_in_channels_last_and_predicts_as_in_the_default_layout(name: str) -> None:
    import torch

    fast, _ = load_model(name)
    plain, _ = load_model(name, channels_last=False)
    convs = [p for p in fast.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    assert all(p.is_contiguous() for p in plain.parameters())
    frames = torch.rand(
        2, 2, 3, fast.image_size, fast.image_size, generator=torch.Generator().manual_seed(0)
    )
    acts = fast.random_actions(2, 1, torch.Generator().manual_seed(1)).at(0)
    out = []
    for model in (fast, plain):
        torch.manual_seed(2)  # a generator's sampling noise, the same for both
        with torch.no_grad():
            out.append(model.decode(model.step(model.encode(frames), acts)))
    assert out[0].shape == (2, 3, fast.image_size, fast.image_size)
    torch.testing.assert_close(out[0], out[1], rtol=0, atol=1e-4)
