"""GLASS: global shifts and discrete local actions learned from frames alone."""

from latentplay.world_models.glass.losses import LossWeights, glass_losses
from latentplay.world_models.glass.model import SIZES, Glass, GlassState

__all__ = ["SIZES", "Glass", "GlassState", "LossWeights", "glass_losses"]
