"""Imagined steps through torch.compile: the same steps as eager ones, only where no gradient
is needed, a compiler failure falls back to eager steps, and the modes refuse what cannot run
by name."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch

from latentplay.world_models import compiling
from latentplay.world_models.compiling import compile_unavailable, use_imagination
from latentplay.world_models.keypoints import Keypoints
from latentplay.world_models.keypoints.model import KeypointState
from latentplay.world_models.protocol import CompilesSteps

CPU = torch.device("cpu")


def _model() -> Keypoints:
    torch.manual_seed(0)
    return Keypoints(image_size=32, num_keypoints=4, action_dim=2, presence=True).eval()


def _state(batch: int = 5) -> tuple[KeypointState, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    pos = torch.rand(batch, 4, 2, generator=g) * 2 - 1
    vel = torch.randn(batch, 4, 2, generator=g) * 0.05
    presence = torch.rand(batch, 4, generator=g) + 0.5
    return KeypointState(pos, vel, presence), torch.randn(batch, 2, generator=g)


class _Calls:
    """A stand-in for torch.compile: counts the calls of the function it returns, which
    runs the original (``fail``: raises instead, as a backend that cannot build)."""

    def __init__(self, fail: bool = False) -> None:
        self.calls, self.fail = 0, fail

    def __call__(self, fn: Callable[..., Any], **_: Any) -> Callable[..., Any]:
        def compiled(*args: Any) -> Any:
            self.calls += 1
            if self.fail:
                raise RuntimeError("backend failed to build")
            return fn(*args)

        return compiled


def test_compiled_steps_run_only_where_no_gradient_is_needed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = _Calls()
    monkeypatch.setattr(torch, "compile", fake)
    m = _model()
    assert isinstance(m, CompilesSteps)
    weights = m.state_dict()
    state, a = _state()
    with torch.no_grad():
        eager = m.advance(state, a)
    assert fake.calls == 0 and not m.steps_compiled  # not compiled until asked
    m.compile_steps()
    with torch.no_grad():
        out = m.advance(state, a)
    with torch.inference_mode():  # planners' other way of asking for no gradient
        m.advance(state, a)
    assert fake.calls == 2 and m.steps_compiled
    torch.testing.assert_close(out.pos, eager.pos, rtol=0, atol=0)
    # with gradients (training, fitting a grounding) the step is the eager one
    pos = state.pos.clone().requires_grad_()
    m.advance(KeypointState(pos, state.vel, state.presence), a).pos.sum().backward()
    assert fake.calls == 2 and pos.grad is not None and pos.grad.abs().sum() > 0
    after = m.state_dict()  # the weights and their names are unchanged
    assert list(after) == list(weights)
    assert all(torch.equal(after[k], weights[k]) for k in weights)


def test_a_compiler_failure_falls_back_to_eager_steps_with_a_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = _Calls(fail=True)
    monkeypatch.setattr(torch, "compile", fake)
    m = _model()
    state, a = _state()
    with torch.no_grad():
        eager = m.advance(state, a)
        m.compile_steps()
        with pytest.warns(UserWarning, match="torch.compile failed .*backend failed to build"):
            out = m.advance(state, a)
        assert not m.steps_compiled
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # eager from now on: no second attempt, no warning
            again = m.advance(state, a)
    assert fake.calls == 1
    torch.testing.assert_close(out.pos, eager.pos, rtol=0, atol=0)
    torch.testing.assert_close(again.pos, eager.pos, rtol=0, atol=0)
    # strict (imagination=compiled): the failure raises
    m.compile_steps(strict=True)
    with torch.no_grad(), pytest.raises(RuntimeError, match="backend failed to build"):
        m.advance(state, a)
    # an error of the step itself is raised as it is, and compiling stays on
    fake.fail = False
    m.compile_steps()
    with torch.no_grad(), pytest.raises(RuntimeError):
        m.advance(state, a[:, :1])  # an action of the wrong size
    assert m.steps_compiled


def test_imagination_modes_refuse_what_cannot_run_by_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = _Calls()
    monkeypatch.setattr(torch, "compile", fake)
    with pytest.raises(ValueError, match="imagination='fast'; expected one of"):
        use_imagination(_model(), "fast", CPU)
    m = _model()
    assert use_imagination(m, "eager", CPU) is False and not m.steps_compiled

    class Plain:  # a model that does not compile its steps
        pass

    assert use_imagination(Plain(), "auto", CPU) is False
    with pytest.raises(ValueError, match="Plain does not compile its steps"):
        use_imagination(Plain(), "compiled", CPU)
    if sys.platform in ("win32", "darwin"):
        return  # the compiler checks below are Linux's
    # no C++ compiler: auto says why and stays eager, compiled is refused with the reason
    monkeypatch.setenv("CXX", "my-c++")
    monkeypatch.setattr(compiling.shutil, "which", lambda name: None)
    assert "no C++ compiler 'my-c++'" in str(compile_unavailable("cpu"))
    m = _model()
    assert use_imagination(m, "auto", CPU) is False and not m.steps_compiled
    assert "imagined steps run eagerly: no C++ compiler" in capsys.readouterr().out
    with pytest.raises(ValueError, match="imagination=compiled: no C\\+\\+ compiler"):
        use_imagination(m, "compiled", CPU)
    # the compiler Inductor calls, $CXX or else g++, on PATH: auto compiles
    monkeypatch.delenv("CXX")
    monkeypatch.setattr(compiling.shutil, "which", lambda n: "/usr/bin/g++" if n == "g++" else None)
    assert compile_unavailable(CPU) is None
    assert use_imagination(m, "auto", CPU) is True and m.steps_compiled
    assert compile_unavailable(torch.device("meta")) is not None


@pytest.mark.slow
@pytest.mark.skipif(compile_unavailable(CPU) is not None, reason="torch.compile cannot run here")
def test_compiled_steps_equal_eager_steps() -> None:
    """The real compiler: a rollout of compiled steps equals the eager one, for two batch
    sizes (each compiles once)."""
    m = _model()
    eager = _model()
    use_imagination(m, "compiled", CPU)  # strict: a compiler failure raises
    for batch in (5, 9):
        state, a = _state(batch)
        ours, theirs = state, state
        with torch.no_grad():
            for _ in range(4):
                ours, theirs = m.advance(ours, a), eager.advance(theirs, a)
        torch.testing.assert_close(ours.pos, theirs.pos, rtol=0, atol=1e-5)
        torch.testing.assert_close(ours.presence, theirs.presence)
    assert m.steps_compiled
