"""The model's answer to a query: its videos of both branches from their first frames, or, for
a model that abduces (:class:`~latentplay.world_models.protocol.Abduces`), its counterfactual
video given the factual one observed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from latentplay.evaluation.counterfactual.branches import QueryBranches
from latentplay.utils.frames import to_numpy_frames, to_tensor_frames
from latentplay.world_models.protocol import Abduces, Actions, StartState, WorldModel

ToLearned = Callable[[np.ndarray], Actions]  # env actions (H, 3) -> the model's (1, H, ...)

# forward: both branches imagined from their first frames; abduction: the factual branch is
# the observed video and the counterfactual one follows it where the intervention does not
# reach; auto: abduction where the model can and its actions come from the factual video or a
# fixed map (answer_mode).
ANSWERS = ("auto", "abduction", "forward")
ABDUCTION_NOTE = "the factual video is observed: what the intervention does not reach follows it"


@dataclass
class EnvDrive:
    """How a branch's env actions drive the model: ``model`` takes ``to_actions(env actions)``
    (the model itself with a fixed map to its learned actions, or a view that maps each env
    action through the state it meets, :class:`~latentplay.agents.state_grounding.
    EnvActionView`, with the env actions as they are)."""

    model: WorldModel
    to_actions: ToLearned


def answer_mode(
    model: WorldModel, drive: EnvDrive | None, answer: str = "auto", parse: bool = True
) -> str:
    """``answer`` (one of :data:`ANSWERS`) resolved for ``model``: "abduction" or "forward".
    Abduction needs a model that abduces, the factual video's actions parsed (``parse``) and
    changed actions through a fixed map to the model's own (``drive.model`` is ``model``)."""
    if answer not in ANSWERS:
        raise ValueError(f"answer={answer!r}; expected one of {ANSWERS}")
    if answer == "forward":
        return answer
    why = None
    if not isinstance(model, Abduces):
        why = f"a {type(model).__name__} model does not abduce (keypoint models do)"
    elif not parse:
        why = "action_source=grounded drives the factual branch too; abduction parses it"
    elif drive is not None and drive.model is not model:
        why = "a state-conditioned grounding (grounding=rollout) acts through a view"
    if why is None:
        return "abduction"
    if answer == "abduction":
        raise ValueError(f"answer=abduction: {why}; use answer=forward or auto")
    return "forward"


@torch.no_grad()
def predict(
    model: WorldModel,
    branches: QueryBranches,
    drive: EnvDrive | None = None,
    device: str | torch.device = "cpu",
    parse: bool = True,
    answer: str = "forward",
) -> tuple[np.ndarray, np.ndarray]:
    """The model's counterfactual and factual videos (H, h, w, 3) uint8 from each branch's
    first frame. A branch's actions: the factual video's, parsed by ``model`` (``parse``;
    the counterfactual branch too when the intervention leaves the actions as they were),
    else its env actions through ``drive`` (always for a counterfactual branch whose actions
    the intervention changed). A :class:`StartState` model (the simulator; the end-effector
    view) is told each branch's true start state. ``answer`` (:data:`ANSWERS`, resolved by
    :func:`answer_mode`): with abduction the factual video is the factual answer, and the
    counterfactual one is the model's given it."""
    answer = answer_mode(model, drive, answer, parse)
    device = torch.device(device)
    f, cf = branches.factual, branches.counterfactual
    changes_actions = branches.query.intervention.kind == "actions"
    if drive is None and (changes_actions or not parse):
        raise ValueError(
            f"query {branches.query.name}: predicting it from env actions needs a grounding "
            "(env actions -> learned actions)"
        )
    if answer == "abduction":
        assert isinstance(model, Abduces)
        acts = drive.to_actions(cf.actions) if changes_actions and drive is not None else None
        video = model.counterfactual(
            to_tensor_frames(f.frames, device)[None],
            to_tensor_frames(cf.frames[:1], device)[None],
            acts,
        )
        return to_numpy_frames(video[0]), f.frames[1:].copy()
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
