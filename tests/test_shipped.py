"""Shipped models load by name and reproduce their card's figure on the small fixed set."""

from __future__ import annotations

import pytest

from latentplay.evaluation.shipped import card_check
from latentplay.world_models.checkpoint import load_model
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
    measured = card_check(name)
    for key, value in recorded["figures"].items():
        assert measured[key] == pytest.approx(value, abs=recorded["tolerance"][key]), key


def test_an_unknown_name_lists_the_shipped_ones() -> None:
    with pytest.raises(FileNotFoundError, match=r"no shipped model of that name \(shipped: \["):
        resolve_checkpoint("no_such_model")
