"""The model's answer to a query: its videos of both branches from their first frames."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from latentplay.evaluation.counterfactual.branches import QueryBranches
from latentplay.utils.frames import to_numpy_frames, to_tensor_frames
from latentplay.world_models.protocol import Actions, StartState, WorldModel

ToLearned = Callable[[np.ndarray], Actions]  # env actions (H, 3) -> the model's (1, H, ...)


@dataclass
class EnvDrive:
    """How a branch's env actions drive the model: ``model`` takes ``to_actions(env actions)``
    (the model itself with a fixed map to its learned actions, or a view that maps each env
    action through the state it meets, :class:`~latentplay.agents.state_grounding.
    EnvActionView`, with the env actions as they are)."""

    model: WorldModel
    to_actions: ToLearned


@torch.no_grad()
def predict(
    model: WorldModel,
    branches: QueryBranches,
    drive: EnvDrive | None = None,
    device: str | torch.device = "cpu",
    parse: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """The model's counterfactual and factual videos (H, h, w, 3) uint8 from each branch's
    first frame. A branch's actions: the factual video's, parsed by ``model`` (``parse``;
    the counterfactual branch too when the intervention leaves the actions as they were),
    else its env actions through ``drive`` (always for a counterfactual branch whose actions
    the intervention changed). A :class:`StartState` model (the simulator; the end-effector
    view) is told each branch's true start state."""
    device = torch.device(device)
    f, cf = branches.factual, branches.counterfactual
    changes_actions = branches.query.intervention.kind == "actions"
    if drive is None and (changes_actions or not parse):
        raise ValueError(
            f"query {branches.query.name}: predicting it from env actions needs a grounding "
            "(env actions -> learned actions)"
        )
    parsed = None
    if parse:
        parsed = model.infer_actions(to_tensor_frames(f.frames, device)[None])
    out = []
    for branch, driven in ((cf, changes_actions or not parse), (f, not parse)):
        who, acts = (drive.model, drive.to_actions(branch.actions)) if driven else (model, parsed)
        if isinstance(who, StartState):
            who.set_start(branch.start)
        video = who.rollout(to_tensor_frames(branch.frames[:1], device)[None], acts)
        out.append(to_numpy_frames(video[0]))
    return out[0], out[1]
