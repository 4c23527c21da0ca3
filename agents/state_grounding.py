"""A grounding conditioned on the model's state and fit through the model's own rollouts, and
the view that lets a planner search the env's action box with it.

A learned action is the arm's *motion* read from frames; what motion an env command causes
depends on where the arm is and how it already moves (the env's controller lags its target,
the arm stops at the workspace's edge), so a fixed map between env and learned actions
(:class:`~latentplay.agents.grounding.Grounding`) mispredicts exactly the strokes a plan is
made of. Here an env action and the model's reading of the state
(:class:`~latentplay.world_models.protocol.StateFeatures`) map to a learned action, fit so
that the model, driven through the map for ``horizon`` steps from states it perceived, lands
where it perceives the recorded frames (distances in its own embedding). The labels are the
recorded commands of a few episodes; nothing else of the env is read.

A planner then samples env actions in their box (:class:`EnvActionView`): every plan is one
the arm can carry out, and nothing is mapped back from the learned space.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from latentplay.agents.grounding import KINDS, labelled_episodes
from latentplay.rollouts.format import EpisodeReader
from latentplay.utils.frames import to_tensor_frames
from latentplay.utils.io import atomic_path
from latentplay.utils.progress import progress_bar
from latentplay.world_models.protocol import (
    Actions,
    ActionSpec,
    Calibrated,
    PartPresence,
    StateEmbedding,
    StateFeatures,
    WorldModel,
    cat_states,
    index_state,
    rollout,
)
from latentplay.world_models.shipped import shipped_models

GROUNDINGS = (*KINDS, "rollout")  # every grounding kind: the fixed maps, and this one


def check_grounding_choice(
    kind: str,
    file: str | Path | None,
    kind_key: str = "grounding.kind",
    file_key: str = "grounding.file",
) -> None:
    """Raise a ValueError, naming the settings as the caller's config spells them, unless
    ``kind`` is a grounding kind and a saved ``file`` comes with the kind that saves one."""
    if kind not in GROUNDINGS:
        raise ValueError(f"{kind_key}={kind!r}; expected one of {GROUNDINGS}")
    if file is not None and kind != "rollout":
        raise ValueError(
            f"{file_key}={str(file)!r} with {kind_key}={kind}: a saved grounding is a "
            f"state-conditioned one ({kind_key}=rollout)"
        )


def check_groundable(model: Any) -> None:
    """Raise a ValueError naming what ``model`` lacks for a state-conditioned grounding."""
    missing = [c.__name__ for c in (StateFeatures, StateEmbedding) if not isinstance(model, c)]
    if missing or not isinstance(model, nn.Module):
        raise ValueError(
            f"{type(model).__name__} lacks {missing or ['parameters']}: a state-conditioned "
            "grounding (grounding.kind=rollout) needs a model with state features, a state "
            "embedding and differentiable steps (keypoints); use grounding.kind=linear"
        )
    spec = model.action_spec
    if spec.continuous < 1 or spec.discrete or spec.sparse_points:
        raise ValueError(
            f"action spec {spec}: a state-conditioned grounding maps to continuous learned "
            "actions only"
        )


class StateGrounding(nn.Module):
    """``(env actions (B, E), state features (B, F)) -> learned actions (B, C)``: a two-layer
    MLP on standardized features, its output in units of the spec's bound / 3 (about one
    standard deviation of the learned actions) and zero before fitting."""

    def __init__(self, env_dim: int, feature_dim: int, spec: ActionSpec, hidden: int = 128) -> None:
        super().__init__()
        self.env_dim = env_dim
        self.net = nn.Sequential(
            nn.Linear(env_dim + feature_dim, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, spec.continuous),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.register_buffer("feat_mean", torch.zeros(feature_dim))
        self.register_buffer("feat_std", torch.ones(feature_dim))
        self.scale = spec.continuous_bound / 3
        self.labels = 0

    def forward(self, env_actions: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        x = torch.cat([env_actions, (features - self.feat_mean) / self.feat_std], dim=-1)
        return self.net(x) * self.scale

    def to_env(self, actions: Actions) -> torch.Tensor:
        """A plan's actions are env actions already (:class:`EnvActionView`): clipped to the
        box, as the planner sampled them."""
        return actions.continuous.detach().clamp(-1, 1)


GROUNDING_FORMAT = "latentplay-state-grounding"
SHIPPED_FILE = "grounding.pt"  # a shipped model's own, beside its weights.pt


def weights_digest(model: nn.Module, calibrations: bool = False) -> str:
    """A digest of ``model``'s parameters and buffers (names, shapes, float32 values): a
    grounding fit through one model's rollouts names the model it belongs to. A
    :class:`Calibrated` model's calibrations (settings of its imagination, which a user may
    turn on or off) are left out unless ``calibrations`` (how groundings were named before):
    a grounding maps commands to the learned weights' actions and stays valid across them."""
    h = hashlib.sha256()
    skip = () if calibrations or not isinstance(model, Calibrated) else model.calibrations
    for name, t in sorted(model.state_dict().items()):
        if name in skip:
            continue
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def save_state_grounding(grounding: StateGrounding, model: nn.Module, path: str | Path) -> Path:
    """Write ``grounding`` (fit through ``model``) to ``path`` atomically, with the digest of
    the model's weights so that it is never applied to another model."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    first = grounding.net[0]
    payload = {
        "format": GROUNDING_FORMAT,
        "env_dim": grounding.env_dim,
        "feature_dim": first.in_features - grounding.env_dim,
        "action_dim": grounding.net[-1].out_features,
        "hidden": first.out_features,
        "scale": grounding.scale,
        "labels": grounding.labels,
        "model": weights_digest(model),
        "state_dict": {k: v.detach().cpu() for k, v in grounding.state_dict().items()},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def grounding_file(name_or_path: str | Path) -> Path:
    """An existing grounding file as it is; else the grounding shipped beside the shipped
    model of that name (``models/<name>/grounding.pt``); else an error naming both."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = shipped_models()
    weights = shipped.get(str(name_or_path))
    if weights is not None and weights.with_name(SHIPPED_FILE).is_file():
        return weights.with_name(SHIPPED_FILE)
    have = sorted(n for n, w in shipped.items() if w.with_name(SHIPPED_FILE).is_file())
    raise FileNotFoundError(
        f"grounding {str(name_or_path)!r}: no such file, and no shipped model of that name has "
        f"one (shipped with a grounding: {have})"
    )


def load_state_grounding(
    name_or_path: str | Path, model: nn.Module, device: str | torch.device = "cpu"
) -> StateGrounding:
    """The grounding written by :func:`save_state_grounding` (a path, or a shipped model's
    name), checked to belong to ``model``: a grounding is fit through one model's dynamics and
    means nothing for another's."""
    check_groundable(model)
    path = grounding_file(name_or_path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any unreadable file gets the same clear message
        raise ValueError(f"{path}: not a readable state grounding ({e})") from e
    if not isinstance(payload, dict) or payload.get("format") != GROUNDING_FORMAT:
        raise ValueError(f"{path}: not a state grounding (format {GROUNDING_FORMAT!r} expected)")
    digest = weights_digest(model)
    if payload["model"] != digest and payload["model"] != weights_digest(model, True):
        raise ValueError(
            f"{path} was fit through the model with weights {payload['model']}; this model's "
            f"are {digest}: fit a grounding for it (grounding.labels=[N])"
        )
    spec = ActionSpec(continuous=payload["action_dim"], continuous_bound=3 * payload["scale"])
    g = StateGrounding(payload["env_dim"], payload["feature_dim"], spec, payload["hidden"])
    g.load_state_dict(payload["state_dict"])
    g.labels = int(payload["labels"])
    return g.to(device).eval()


def fit_state_grounding(
    model: WorldModel,
    states: Any,
    embeds: torch.Tensor,
    env_actions: torch.Tensor,
    *,
    horizon: int = 10,
    steps: int = 2000,
    batch: int = 64,
    lr: float = 2e-3,
    hidden: int = 128,
    seed: int = 0,
    progress: bool = False,
) -> StateGrounding:
    """A :class:`StateGrounding` fit on E labelled episodes of T states each: ``states`` one
    batched model state of ``E * T`` entries (episode-major), ``embeds (E, T, D)`` the model's
    embeddings of the same states, ``env_actions (E, T-1, env_dim)`` the commands between
    them. Each step rolls the model out ``horizon`` steps from ``batch`` random states under
    the recorded commands through the map, and fits the map (the model stays frozen) to the
    L1 distance between the rolled-out and the perceived embeddings at every step."""
    check_groundable(model)
    if embeds.ndim != 3 or env_actions.ndim != 3:
        raise ValueError(
            f"embeds {tuple(embeds.shape)}, env_actions {tuple(env_actions.shape)}; expected "
            "(E, T, D) and (E, T-1, env_dim)"
        )
    e, t = embeds.shape[:2]
    if env_actions.shape[:2] != (e, t - 1):
        raise ValueError(
            f"env_actions of shape {tuple(env_actions.shape)} for embeds {tuple(embeds.shape)};"
            f" expected ({e}, {t - 1}, env_dim): one command between consecutive states"
        )
    if not 1 <= horizon <= t - 1:
        raise ValueError(f"horizon={horizon}; expected 1 .. {t - 1} (steps in an episode)")
    if steps < 1:
        raise ValueError(f"steps={steps}; expected at least 1 Adam step (grounding.steps)")
    device = embeds.device
    features = model.state_features(states)
    torch.manual_seed(seed)  # the map's initial weights
    g = StateGrounding(env_actions.shape[-1], features.shape[-1], model.action_spec, hidden)
    g.feat_mean.copy_(features.mean(dim=0))
    g.feat_std.copy_(features.std(dim=0, unbiased=False).clamp_min(1e-6))
    g.to(device)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(g.parameters(), lr=lr)
    frozen = [p for p in model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        bar = progress_bar(range(steps), desc="state grounding", disable=not progress, leave=False)
        for _ in bar:
            ep = torch.randint(e, (batch,), generator=gen)
            t0 = torch.randint(t - horizon, (batch,), generator=gen)
            state = index_state(states, ep * t + t0)
            loss = torch.zeros((), device=device)
            for j in range(horizon):
                learned = g(env_actions[ep, t0 + j], model.state_features(state))
                state = model.step(state, Actions(continuous=learned))
                loss = loss + (model.embed(state) - embeds[ep, t0 + j + 1]).abs().mean()
            opt.zero_grad()
            (loss / horizon).backward()
            opt.step()
    finally:
        for p in frozen:
            p.requires_grad_(True)
    g.labels = int(env_actions.shape[0] * env_actions.shape[1])
    return g.eval()


@torch.no_grad()
def labelled_states(
    model: WorldModel, reader: EpisodeReader, episodes: list[int], device: str | torch.device
) -> tuple[Any, torch.Tensor, torch.Tensor]:
    """What :func:`fit_state_grounding` fits on, from dataset episodes of equal length: the
    model's state at every frame after the first (each encoded from it and the frame before,
    so that it knows how things move), their embeddings and the recorded commands between
    them."""
    states, embeds, commands = [], [], []
    for ep in episodes:
        frames = to_tensor_frames(reader.frames(ep), device)
        acts = torch.as_tensor(reader.ground_truth(ep)["actions"], dtype=torch.float32)
        if len(acts) != len(frames) - 1:
            raise ValueError(f"episode {ep}: {len(acts)} actions for {len(frames)} frames")
        pairs = torch.stack([frames[:-1], frames[1:]], dim=1)  # (T, 2, 3, H, W)
        state = model.encode(pairs)
        states.append(state)
        embeds.append(model.embed(state))
        commands.append(acts[1:].to(device))
    lengths = {len(c) for c in commands}
    if len(lengths) > 1:
        raise ValueError(f"episodes of different lengths {sorted(lengths)}; expected one length")
    return cat_states(states), torch.stack(embeds), torch.stack(commands)


def state_grounding_from_data(
    model: WorldModel,
    data: str | Path,
    labels: int,
    *,
    horizon: int = 10,
    steps: int = 2000,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> StateGrounding:
    """:func:`fit_state_grounding` on the first training episodes of the dataset ``data`` that
    hold ``labels`` recorded commands (at least 2 episodes); ``horizon`` at most an episode's
    steps; ``seed`` the map's initial weights and its batches."""
    check_groundable(model)
    if labels < 1:
        raise ValueError(
            f"labels={labels}; a state-conditioned grounding is fit on labelled episodes "
            "(grounding.labels=[N], N > 0)"
        )
    with labelled_episodes(model, data, labels) as (reader, episodes):
        states, embeds, commands = labelled_states(model, reader, episodes, device)
    horizon = min(horizon, commands.shape[1])
    return fit_state_grounding(
        model, states, embeds, commands, horizon=horizon, steps=steps, seed=seed, progress=progress
    )


class EnvActionView:
    """``model`` driven by env actions: each step maps the env action (clipped to the box)
    and the state's features through ``grounding`` to the model's learned action. Its
    action spec is the env's box, so a planner samples commands the arm can carry out."""

    def __init__(self, model: WorldModel, grounding: StateGrounding) -> None:
        check_groundable(model)
        self.model, self.grounding = model, grounding
        self.name = f"{model.name}-env"
        self.action_spec = ActionSpec(continuous=grounding.env_dim, continuous_bound=1.0)

    def encode(self, frames: torch.Tensor) -> Any:
        return self.model.encode(frames)

    def infer_actions(self, frames: torch.Tensor) -> Actions:
        raise NotImplementedError(
            "env actions are not read from frames; parse the model's own (model.infer_actions)"
        )

    def step(self, state: Any, actions: Actions) -> Any:
        cmd = actions.continuous
        if cmd is None or cmd.shape[-1] != self.grounding.env_dim:
            raise ValueError(f"env actions (B, {self.grounding.env_dim}) expected")
        learned = self.grounding(cmd.clamp(-1, 1), self.model.state_features(state))
        return self.model.step(state, Actions(continuous=learned))

    def decode(self, state: Any) -> torch.Tensor:
        return self.model.decode(state)

    def rollout(self, context: torch.Tensor, actions: Actions) -> torch.Tensor:
        return rollout(self, context, actions)

    def embed(self, state: Any) -> torch.Tensor:
        return self.model.embed(state)

    def state_positions_px(self, state: Any) -> torch.Tensor:
        return self.model.state_positions_px(state)

    def present_parts(self, state: Any) -> torch.Tensor | None:
        return self.model.present_parts(state) if isinstance(self.model, PartPresence) else None
