"""A convolutional frame autoencoder (the latent space of latent YODA); see :mod:`.model`."""

from latentplay.world_models.autoencoder.model import FrameAutoencoder

__all__ = ["FrameAutoencoder"]
