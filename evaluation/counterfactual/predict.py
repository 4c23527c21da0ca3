"""The model's answer to a query: its videos of both branches from their first frames."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from latentplay.evaluation.counterfactual.branches import QueryBranches
from latentplay.utils.frames import to_numpy_frames, to_tensor_frames
from latentplay.world_models.protocol import Actions, StartState, WorldModel

ToLearned = Callable[[np.ndarray], Actions]  # env actions (H, 3) -> learned actions (1, H, ...)


@torch.no_grad()
def predict(
    model: WorldModel,
    branches: QueryBranches,
    to_learned: ToLearned | None = None,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """The model's counterfactual and factual videos (H, h, w, 3) uint8 from each branch's
    first frame. Actions: the factual video's parsed latent actions, or ``to_learned`` of the
    env actions (needed when the intervention changes the actions). A :class:`StartState`
    model (the simulator; the end-effector view) is told each branch's true start state."""
    device = torch.device(device)
    f, cf = branches.factual, branches.counterfactual
    changes_actions = branches.query.intervention.kind == "actions"
    if to_learned is None and changes_actions:
        raise ValueError(
            f"query {branches.query.name} changes the actions: predicting it needs grounding "
            "(env actions -> learned actions)"
        )
    if to_learned is not None:
        acts_f, acts_cf = to_learned(f.actions), to_learned(cf.actions)
    else:
        acts_f = acts_cf = model.infer_actions(to_tensor_frames(f.frames, device)[None])
    out = []
    for branch, acts in ((cf, acts_cf), (f, acts_f)):
        if isinstance(model, StartState):
            model.set_start(branch.start)
        video = model.rollout(to_tensor_frames(branch.frames[:1], device)[None], acts)
        out.append(to_numpy_frames(video[0]))
    return out[0], out[1]
