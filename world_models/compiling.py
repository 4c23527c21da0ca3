"""Imagined steps through ``torch.compile``: whether it can run here, and switching a model
to it (``imagination=auto|compiled|eager`` of the planning run)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from typing import Any

import torch

from latentplay.world_models.protocol import CompilesSteps

IMAGINATION = ("auto", "compiled", "eager")


def compile_unavailable(device: torch.device) -> str | None:
    """Why ``torch.compile`` cannot run on ``device`` here, None if it can: its backend
    (Inductor) builds C++ on a CPU, so a compiler must be on PATH, and Triton kernels on
    CUDA."""
    if device.type == "cpu":
        if sys.platform == "win32":
            return "torch.compile's CPU backend is not set up on Windows"
        names = [n for n in (os.environ.get("CXX"), "c++", "g++", "clang++") if n]
        if not any(shutil.which(n) for n in names):
            return "no C++ compiler on PATH (install g++ or set CXX)"
        return None
    if device.type == "cuda":
        return None if importlib.util.find_spec("triton") else "Triton is not installed"
    return f"no torch.compile backend set up here for {device.type!r}"


def use_imagination(model: Any, imagination: str, device: torch.device) -> bool:
    """Apply ``imagination`` to ``model`` and say whether its steps are now compiled.
    ``auto``: compiled where the model can compile its steps (``CompilesSteps``) and
    ``torch.compile`` can run on ``device``, else eager with a note why; ``compiled``: the
    same, refused with the reason where it cannot; ``eager``: as the model is."""
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
    why = compile_unavailable(torch.device(device))
    if why is not None:
        if imagination == "compiled":
            raise ValueError(f"imagination=compiled: {why}; use imagination=auto or eager")
        print(f"imagined steps run eagerly: {why}")
        return False
    model.compile_steps()
    return True
