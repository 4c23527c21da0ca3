"""Learned actions and interaction dynamics over keypoints.

The inverse-dynamics net reads two consecutive keypoint sets (positions only, no pixels) and
returns a small continuous latent action. The action reaches the scene only through keypoints
with a high *control gate* (one learned gate per keypoint, pushed towards 0 by a sparsity
term): the arm learns to take it, objects do not. Everything else moves through interaction
edges, which are local (a learned soft cut-off on distance), so an object that nothing comes
near does not move: LAPO's two failures (the action leaks the next frame's content, or the
dynamics ignores it) have no way in.

A *contact decision* per keypoint (``contact=True``) makes "moves this step or not" a yes/no
answer instead of an average: a head on the messages a keypoint receives predicts whether it
moves, trained on its tracks; training rolls out with the true decisions (so the displacement
learns "how far, given it moves"), imagination with the head's (a hard gate). A near miss
then leaves an object where it is instead of nudging it by the mean of "pushed" and "not".
"""

from __future__ import annotations

import torch
from torch import nn


def _mlp(cin: int, hidden: int, cout: int, layers: int = 2) -> nn.Sequential:
    mods: list[nn.Module] = []
    for i in range(layers):
        mods += [nn.Linear(cin if i == 0 else hidden, hidden), nn.ReLU()]
    mods.append(nn.Linear(hidden, cout))
    return nn.Sequential(*mods)


class InverseDynamics(nn.Module):
    """Keypoints at t and t+1 ``(B, K, 2)`` each -> latent action ``(B, A)``."""

    def __init__(self, num_keypoints: int, action_dim: int, hidden: int) -> None:
        super().__init__()
        self.net = _mlp(4 * num_keypoints, hidden, action_dim)

    def forward(
        self, pos: torch.Tensor, nxt: torch.Tensor, presence: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``presence (B, K)``: absent keypoints' positions and motion are masked out (where an
        absent keypoint wanders carries nothing about the action)."""
        x = torch.cat([pos, nxt - pos], dim=-1)
        if presence is not None:
            x = x * presence[..., None]
        return self.net(x.flatten(1))


class InteractionDynamics(nn.Module):
    """One step of keypoint motion: ``pos, vel (B, K, 2)``, action ``(B, A)`` ->
    displacement ``(B, K, 2)``. Each keypoint has a learned embedding (``role``): what it is
    (an arm part, one object) and so how it moves and is pushed.

    Each keypoint first proposes its own displacement, ``gate_i * drive(action, node_i)`` plus
    what its last velocity carries over. Then, ``rounds`` times, neighbours within the learned
    cut-off add messages that depend on the proposed displacements and vanish when both ends
    stay put: pushes (and pushes of pushes) move objects, nothing moves on its own.

    The message net is one hidden layer ``hidden // 2`` wide: its input layer is evaluated
    per node (below), so a message costs one activation and one ``(hidden // 2) x 2`` product
    per pair, which is what a planner's step time is made of.

    ``after_motion``: a message also reads how much the pair's distance changes under both
    ends' proposed moves (zero when both stay put). A push is an overlap *after* the pusher
    moves, a norm of positions and motions that one ReLU layer on the separate inputs only
    approximates piecewise.
    """

    def __init__(
        self,
        num_keypoints: int,
        action_dim: int,
        hidden: int,
        role_dim: int = 8,
        rounds: int = 2,
        contact: bool = False,
        after_motion: bool = False,
    ) -> None:
        super().__init__()
        if rounds < 1:
            raise ValueError(f"rounds={rounds}; expected >= 1")
        k = num_keypoints
        self.rounds, self.after_motion = rounds, after_motion
        self.role = nn.Parameter(torch.randn(k, role_dim) * 0.1)
        self.gate_logit = nn.Parameter(torch.zeros(k))
        node = role_dim
        self.drive = _mlp(action_dim + node, hidden, 2)
        self.message = _mlp(2 + 1 + 4 + 2 * node + int(after_motion), hidden // 2, 2, layers=1)
        self.carry = _mlp(2 + node, hidden, 2, layers=1)
        self.log_radius = nn.Parameter(torch.tensor(-1.2))  # exp(-1.2) ~ 0.3: 10 px at 64
        self.log_softness = nn.Parameter(torch.tensor(-3.0))
        # moves-or-not logit from (received messages, role, own proposal, displacement)
        self.move_head = _mlp(hidden // 2 + node + 4, hidden // 2, 1, layers=1) if contact else None

    def gates(self) -> torch.Tensor:
        return torch.sigmoid(self.gate_logit)

    def driven(self) -> torch.Tensor:
        """``(K,)`` bool: the keypoints the action drives, those whose gate is at least half
        the largest (the sparsity term pulls the others' towards 0; a gate's scale is
        learned, so only gates relative to each other tell the arm from objects)."""
        g = self.gates().detach()
        return g >= 0.5 * g.max()

    def _moved(self, f: nn.Module, x: torch.Tensor, still: torch.Tensor) -> torch.Tensor:
        """``f(x) - f(x with its motion part zeroed)``: zero for what does not move."""
        return f(x) - f(still)

    def forward(
        self,
        pos: torch.Tensor,
        vel: torch.Tensor,
        action: torch.Tensor,
        moving: torch.Tensor | None = None,
        presence: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(displacement (B, K, 2), moves-logit (B, K) or None without a contact head)``.

        ``moving (B, K)`` in [0, 1], if given, gates the displacements (training's true
        decisions); else the head's own decisions gate them (``logit > 0``). ``presence
        (B, K)`` scales every edge by both ends' presence: an absent keypoint neither pushes
        nor is pushed."""
        b, k, _ = pos.shape
        node = self.role.expand(b, -1, -1)
        gate = self.gates()[None, :, None]
        own = gate * self.drive(torch.cat([action[:, None].expand(-1, k, -1), node], dim=-1))
        own = own + self._moved(
            self.carry, torch.cat([vel, node], -1), torch.cat([torch.zeros_like(vel), node], -1)
        )
        rel = pos[:, :, None] - pos[:, None]  # (B, K, K, 2): i minus j
        dist = rel.pow(2).sum(-1, keepdim=True).add(1e-8).sqrt()
        cutoff = torch.sigmoid((self.log_radius.exp() - dist) / self.log_softness.exp())
        cutoff = cutoff * (1.0 - torch.eye(k, device=pos.device))[None, :, :, None]
        if presence is not None:
            cutoff = cutoff * (presence[:, :, None] * presence[:, None])[..., None]
        # The message net's first layer, split by input: the geometry and both ends' roles
        # are the same every round (computed once; the roles' part once for all samples);
        # the motion part is added per round. Its last layer is linear and a message is its
        # output minus the still pair's, so it applies after the sum over senders: once per
        # node.
        first, act, last = self.message[0], self.message[1], self.message[2]
        w, n = first.weight, node.shape[-1]
        w_geo, w_ui, w_uj = w[:, :3], w[:, 3:5], w[:, 5:7]
        w_ei, w_ej, w_after = w[:, 7 : 7 + n], w[:, 7 + n : 7 + 2 * n], w[:, 7 + 2 * n :]
        roles = (self.role @ w_ei.T + first.bias)[:, None] + (self.role @ w_ej.T)[None]
        base = torch.cat([rel, dist], -1) @ w_geo.T + roles  # roles (K, K, H): per pair, any B
        # A message is act(pair) - act(still pair); the still pairs' part of the cut-off's
        # weighted sum is the same every round, so it is summed once.
        still = (cutoff * act(base)).sum(dim=2)
        disp = own
        for _ in range(self.rounds):
            x = base + (disp @ w_ui.T)[:, :, None]
            x += (disp @ w_uj.T)[:, None]  # in place: a sum's gradient needs no operand
            if self.after_motion:  # the change of the pair's distance under both moves
                moved = rel + disp[:, :, None] - disp[:, None]
                closer = moved.pow(2).sum(-1, keepdim=True).add(1e-8).sqrt() - dist
                x += closer @ w_after.T
            received = (cutoff * act(x)).sum(dim=2) - still
            disp = own + received @ last.weight.T
        if self.move_head is None:
            return disp, None
        logit = self.move_head(torch.cat([received, node, own, disp], -1))[..., 0]
        if moving is None:
            moving = (logit > 0).to(disp.dtype)
        return disp * moving[..., None], logit
