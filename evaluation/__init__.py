"""Evaluation: metrics (``latentplay.evaluation.metrics``), rollout protocols, counterfactuals."""
