"""Imagined steps through ``torch.compile``: whether it can run here, and switching a model
to it (``imagination=auto|compiled|eager`` of the planning run)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from typing import Any

import torch

from latentplay.utils.device import resolve_device
from latentplay.world_models.protocol import CompilesSteps

IMAGINATION = ("auto", "compiled", "eager")


def compile_unavailable(device: torch.device | str) -> str | None:
    """Why ``torch.compile`` cannot run on ``device`` here, None if it can: its backend
    (Inductor) builds C++ on a CPU with ``$CXX``, else ``g++`` (``clang++`` on macOS), and
    Triton kernels on CUDA."""
    device = resolve_device(device)
    if device.type == "cpu":
        if sys.platform == "win32":
            return "torch.compile's CPU backend is not set up on Windows"
        cxx = os.environ.get("CXX") or ("clang++" if sys.platform == "darwin" else "g++")
        if shutil.which(cxx) is None:
            return f"no C++ compiler {cxx!r} on PATH (install it or set CXX)"
        return None
    if device.type == "cuda":
        return None if importlib.util.find_spec("triton") else "Triton is not installed"
    return f"no torch.compile backend set up here for {device.type!r}"


def use_imagination(model: Any, imagination: str, device: torch.device | str) -> bool:
    """Apply ``imagination`` to ``model`` (on ``device``) and say whether its steps are now
    compiled. ``auto``: compiled where the model can compile its steps (``CompilesSteps``)
    and ``torch.compile`` can run on ``device``, else eager with a note why (and eager, with
    a warning, should compiling fail at the first step); ``compiled``: the same, refused with
    the reason where it cannot, raising where compiling fails; ``eager``: as the model is.
    Whether steps stayed compiled to the end: ``model.steps_compiled``."""
    if imagination not in IMAGINATION:
        raise ValueError(f"imagination={imagination!r}; expected one of {IMAGINATION}")
    if imagination == "eager":
        return False
    if not isinstance(model, CompilesSteps):
        if imagination == "compiled":
            raise ValueError(
                f"imagination=compiled: {type(model).__name__} does not compile its steps; "
                "use imagination=auto or eager"
            )
        return False
    why = compile_unavailable(device)
    if why is not None:
        if imagination == "compiled":
            raise ValueError(f"imagination=compiled: {why}; use imagination=auto or eager")
        print(f"imagined steps run eagerly: {why}")
        return False
    model.compile_steps(strict=imagination == "compiled")
    return True
