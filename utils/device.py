"""Device resolution: ``auto`` picks CUDA when present (code never calls ``.cuda()`` itself)."""

from __future__ import annotations

from typing import Any


def resolve_device(device: Any) -> Any:
    """``"auto"`` -> ``torch.device("cuda")`` when a CUDA device is present, else the CPU; any
    other name (``cpu``, ``cuda:1``) or ``torch.device`` as given. ValueError names a bad one."""
    import torch

    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device={device!r}; expected auto, cpu, cuda or cuda:N") from e
