"""Keypoints: unsupervised keypoints, a latent action through the arm, interaction dynamics."""

from latentplay.world_models.keypoints.model import Keypoints, KeypointState

__all__ = ["KeypointState", "Keypoints"]
