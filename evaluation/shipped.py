"""The load-and-reproduce check of a shipped model: one figure of its card, measured on a
small fixed set of episodes collected here from fixed seeds (MuJoCo is deterministic on one
machine and across the pinned versions), so a card cannot drift from its weights.

    python -m latentplay.evaluation.shipped keypoints_pushmulti
"""

from __future__ import annotations

import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

from latentplay.agents.policies import ScriptedPushPolicy
from latentplay.rollouts.collect import collect
from latentplay.rollouts.worker import CollectSpec
from latentplay.world_models.autoencoder import FrameAutoencoder
from latentplay.world_models.checkpoint import load_model
from latentplay.world_models.protocol import KeypointTracks
from latentplay.world_models.shipped import card
from latentplay.world_models.yoda import Yoda

# The fixed set: scripted pushes in the model's env (64x64), seeds 0-11.
CHECK_SET = {"episodes": 12, "steps": 20, "seed": 0, "split_fractions": (0.34, 0.33, 0.33)}


def check_set(out: Path, env_id: str) -> Path:
    spec = CollectSpec(
        env_id=env_id,
        policy_factory=partial(ScriptedPushPolicy),
        env_kwargs={"width": 64, "height": 64},
        shard_episodes=CHECK_SET["episodes"],
        episodes=CHECK_SET["episodes"],
        steps=CHECK_SET["steps"],
        seed=CHECK_SET["seed"],
        split_fractions=CHECK_SET["split_fractions"],
    )
    collect(spec, out, workers=1, progress=False)
    return out


def card_check(name: str) -> dict[str, Any]:
    """The card's reproducible figures of the shipped model ``name`` on the fixed set: the
    keypoint probe of a keypoint model; the global shift's angle match and the teacher-forced
    PSNR of a model with global and local actions (GLASS); the PSNR of rebuilt frames and the
    objects' position error in them of an autoencoder; the teacher-forced and 8-step
    autoregressive PSNR of a generator (YODA, its sampling noise seeded)."""
    from latentplay.evaluation.autoencoder import autoencoder_scores
    from latentplay.evaluation.keypoints import keypoint_scores
    from latentplay.evaluation.world_model import evaluate

    model, _ = load_model(name)
    with tempfile.TemporaryDirectory() as tmp:
        data = check_set(Path(tmp) / "check", card(name)["env"])
        if isinstance(model, FrameAutoencoder):
            s = autoencoder_scores(model, data)
            return {
                "psnr_db": round(float(s["eval/autoencoder/psnr"]), 4),
                "object_px_median": round(float(s["eval/autoencoder/object_px_median"]), 4),
            }
        spec = model.action_spec
        if isinstance(model, Yoda):
            s = evaluate(model, data)
            return {
                "tf_psnr_db": round(float(s["eval/image/tf_psnr"]), 4),
                "ar8_psnr_db": round(float(s["eval/image/ar8_psnr"]), 4),
            }
        if isinstance(model, KeypointTracks):
            s = keypoint_scores(model, data)
            return {
                "probe_median_px": round(float(s["eval/keypoints/probe_median_px"]), 4),
                "covered_2px": round(float(s["eval/keypoints/covered_2px"]), 4),
            }
        if spec.continuous == 2 and spec.discrete:
            s = evaluate(model, data)
            return {
                "angle_match": round(float(s["eval/action/angle_match"]), 4),
                "tf_psnr_db": round(float(s["eval/image/tf_psnr"]), 4),
            }
    raise ValueError(f"{name}: no card check for a {type(model).__name__} yet")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m latentplay.evaluation.shipped <shipped model name>")
    print(card_check(sys.argv[1]))
