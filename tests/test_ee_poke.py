"""End-effector pokes: a sparse-flow model driven like the arm, planned and grounded as GLASS."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentplay.agents.grounding import Grounding, camera_jacobian
from latentplay.agents.views import EndEffectorPoke
from latentplay.envs.arm import EE_STEP, PushMultiEnv
from latentplay.world_models.protocol import Actions, repeat_state
from latentplay.world_models.yoda import Yoda


class Recorder(Yoda):
    """A YODA whose steps record the control maps they were given."""

    def step_control(self, state, control, sample_steps=None):
        self.seen.append(control.clone())
        return super().step_control(state, control, sample_steps)


def test_pokes_follow_the_end_effector_and_ground_analytically() -> None:
    env = PushMultiEnv(width=64, height=64, time_limit=None)
    env.reset(seed=3)
    torch.manual_seed(0)
    model = Recorder(size="xs", sample_steps=1, spread=0.0)
    model.seen = []
    ee = EndEffectorPoke(model.eval(), env)
    with pytest.raises(RuntimeError, match="before set_start"):
        ee.encode(torch.rand(1, 1, 3, 64, 64))
    ee.set_start(env.get_state())
    start = env.ground_truth()["ee_pixel"]
    state = ee.encode(torch.from_numpy(env.render_rgb()).permute(2, 0, 1)[None, None])
    move = torch.tensor([[0.125, 0.0]])  # 4 px right per step (half-frame units)
    with torch.no_grad():
        state = ee.step(repeat_state(state, 1), Actions(continuous=move))
        state = ee.step(state, Actions(continuous=move))
    for t, control in enumerate(model.seen):  # the poke sat at the moving end effector
        at = np.floor(start + np.array([4.0 * t, 0.0])).astype(int)  # centres at c + 0.5
        assert control[0, 2, at[1], at[0]] == 1.0 and control[0, 2].sum() == 1.0
        torch.testing.assert_close(
            control[0, 0, at[1], at[0]], torch.tensor(4.0 / model.flow_scale)
        )
    torch.testing.assert_close(
        state.ee_px[0], torch.as_tensor(start, dtype=torch.float32) + torch.tensor([8.0, 0.0])
    )
    # analytic grounding: one env action unit moves the end effector EE_STEP metres; its
    # pixels, in half-frames, are what the poke of that action is
    g = Grounding.analytic(ee.action_spec, EE_STEP, camera_jacobian(env), 64)
    learned = g.to_learned(torch.tensor([[1.0, 0.0, 0.0]])).continuous[0]
    assert ee.action_spec.continuous_bound >= float(learned.abs().max()) * 0.9
    env.step(np.array([1.0, 0.0, 0.0], np.float32))
    for _ in range(5):  # let the arm settle on its target
        env.step(np.zeros(3, np.float32))
    moved = env.ground_truth()["ee_pixel"] - start
    np.testing.assert_allclose(learned.numpy() * 32, moved, atol=0.8)
    env.close()
