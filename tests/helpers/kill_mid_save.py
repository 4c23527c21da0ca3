"""Start writing a checkpoint over PATH and die by SIGKILL halfway through the write."""

from __future__ import annotations

import io
import os
import signal
import sys

import torch

from latentplay.world_models import checkpoint
from latentplay.world_models.glass import Glass

_real_save = torch.save


def _half_then_die(obj, f, *args, **kwargs) -> None:
    buf = io.BytesIO()
    _real_save(obj, buf, *args, **kwargs)
    data = buf.getvalue()
    with open(f, "wb") as out:
        out.write(data[: len(data) // 2])
        out.flush()
        os.fsync(out.fileno())
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    torch.manual_seed(1)
    model = Glass(size="xs", image_size=32, num_actions=3)
    torch.save = _half_then_die  # in this process only
    checkpoint.save_checkpoint(sys.argv[1], model=model, step=999)
