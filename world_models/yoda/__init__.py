"""YODA-style world model (sparse flow control, flow matching); see :mod:`.model`."""

from latentplay.world_models.yoda.model import Yoda, YodaState

__all__ = ["Yoda", "YodaState"]
