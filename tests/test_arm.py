"""Known-answer checks of the arm/push envs: kinematics, projection, goals and interventions."""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np
import pytest

from latentplay.envs.arm import EE_STEP, LABEL_ARM, MAX_OBJECTS, ArmEnv, ArmState, PushMultiEnv
from latentplay.envs.registration import ARM_ENV_IDS


@pytest.fixture
def multi():
    env = gym.make("latentplay/PushMulti-v0", n_objects=4)
    yield env
    env.close()


@pytest.fixture
def push():
    env = gym.make("latentplay/Push-v0")
    yield env
    env.close()


def test_mujoco_gl_defaults_to_egl_headless() -> None:
    if os.environ.get("DISPLAY"):
        pytest.skip("a display is attached")
    assert os.environ["MUJOCO_GL"] in {"egl", "osmesa", "glfw"}


def test_end_effector_follows_the_action() -> None:
    env = gym.make("latentplay/Reach-v0")
    try:
        _, info = env.reset(seed=0)
        start = info["ee_pos"][:2].copy()
        for _ in range(3):
            _, *_, info = env.step(np.array([1.0, 0.0, 0.0]))
        for _ in range(3):
            _, *_, info = env.step(np.zeros(3))  # settle
        moved = info["ee_pos"][:2] - start
        assert moved[0] == pytest.approx(3 * EE_STEP, abs=2e-3)
        assert abs(moved[1]) < 2e-3
        angle = info["paddle_angle"]
        for _ in range(4):
            _, *_, info = env.step(np.array([0.0, 0.0, 1.0]))
        for _ in range(3):
            _, *_, info = env.step(np.zeros(3))
        assert info["paddle_angle"] - angle == pytest.approx(0.6, abs=0.02)
        # The paddle turns about the end effector: the end effector stays put.
        np.testing.assert_allclose(info["ee_pos"][:2], start + moved, atol=2e-3)
    finally:
        env.close()


def test_joint_control_moves_joint_targets() -> None:
    env = gym.make("latentplay/Reach-v0", control="joint")
    try:
        _, info = env.reset(seed=0)
        q0 = info["joint_pos"].copy()
        for _ in range(2):
            env.step(np.array([1.0, 0.0, 0.0]))
        for _ in range(4):
            _, *_, info = env.step(np.zeros(3))
        np.testing.assert_allclose(info["joint_pos"] - q0, [0.2, 0, 0], atol=0.01)
    finally:
        env.close()


@pytest.mark.parametrize("seed", range(6))
def test_projected_pixels_land_on_segmented_objects(multi, seed: int) -> None:
    _, info = multi.reset(seed=seed)
    seg = multi.unwrapped.render_segmentation()
    hits = 0
    for i in range(MAX_OBJECTS):
        u, v = np.floor(info["object_pixel"][i]).astype(int)
        label = seg[v, u]
        if label == LABEL_ARM:  # hidden under the arm in this view
            continue
        assert label == 2 + i, f"object {i} projects to a pixel labelled {label}"
        hits += 1
    assert hits >= 3
    u, v = np.floor(info["ee_pixel"]).astype(int)
    assert seg[v, u] == LABEL_ARM


def test_pixel_to_world_inverts_world_to_pixel(multi) -> None:
    multi.reset(seed=0)
    cam = multi.unwrapped.camera
    pts = np.array([[0.1, -0.05, 0.02], [-0.12, 0.1, 0.02], [0.0, 0.0, 0.02]])
    back = cam.pixel_to_world(cam.world_to_pixel(pts), z=0.02)
    np.testing.assert_allclose(back, pts, atol=1e-12)


def test_state_observation_layout() -> None:
    env = gym.make("latentplay/Push-v0", obs_type="state")
    try:
        obs, info = env.reset(seed=0)
        assert obs.shape == (40,)
        phi = info["paddle_angle"]
        np.testing.assert_allclose(obs[8:10], [np.cos(phi), np.sin(phi)], atol=1e-12)
        np.testing.assert_allclose(obs[10:12], info["goal"])
        np.testing.assert_allclose(obs[12:15], [1.0, *info["object_pos"][0][:2]])
        assert not obs[19:].any(), "parked slots are zeros"
    finally:
        env.close()


def test_goal_image_and_show_goal(push) -> None:
    _, info = push.reset(seed=4)
    u = push.unwrapped
    goal_state = u.goal_state()
    u.set_state(goal_state)
    gt = u.ground_truth()
    np.testing.assert_allclose(gt["object_pos"][0][:2], info["goal"], atol=1e-9)
    push.reset(seed=4)
    frame = u.render_rgb()
    goal_frame = u.render_goal()
    assert np.abs(goal_frame.astype(int) - frame).sum() > 0
    np.testing.assert_array_equal(u.render_rgb(), frame)  # rendering the goal changed nothing
    shown = gym.make("latentplay/Push-v0", show_goal=True)
    try:
        obs, _ = shown.reset(seed=4)
        gu, gv = np.floor(info["goal_pixel"]).astype(int)
        assert np.abs(obs[gv, gu].astype(int) - frame[gv, gu]).sum() > 30
    finally:
        shown.close()


def test_reach_goal_state_puts_end_effector_on_goal() -> None:
    env = gym.make("latentplay/Reach-v0")
    try:
        _, info = env.reset(seed=2)
        u = env.unwrapped
        u.set_state(u.goal_state())
        np.testing.assert_allclose(u.ground_truth()["ee_pos"][:2], info["goal"], atol=1e-6)
    finally:
        env.close()


def test_move_object(multi) -> None:
    _, info = multi.reset(seed=0)
    u = multi.unwrapped
    others = np.delete(info["object_pos"][:, :2], 1, axis=0)
    grid = [(x, y) for x in np.linspace(-0.1, 0.1, 5) for y in np.linspace(-0.1, 0.05, 4)]
    free = max(grid, key=lambda p: np.linalg.norm(others - p, axis=1).min())
    u.move_object(1, free)
    gt = u.ground_truth()
    np.testing.assert_allclose(gt["object_pos"][1], [*free, 0.02])
    seg = u.render_segmentation()
    pu, pv = np.floor(gt["object_pixel"][1]).astype(int)
    assert seg[pv, pu] == 3
    with pytest.raises(ValueError, match=r"\|x\|"):
        u.move_object(1, (0.5, 0.0))


def test_remove_and_add_object(push) -> None:
    push.reset(seed=0)
    u = push.unwrapped
    assert u.active_objects == [0]
    slot = u.add_object((-0.1, -0.1))
    assert slot == 1 and u.active_objects == [0, 1]
    assert (u.render_segmentation() == 3).any()
    u.remove_object(0)
    seg = u.render_segmentation()
    assert not (seg == 2).any() and (seg == 3).any()
    assert not u.ground_truth()["object_active"][0]
    g = u._obj_geom[0]  # a removed object touches nothing
    assert u.model.geom_contype[g] == 0 and u.model.geom_conaffinity[g] == 0
    with pytest.raises(ValueError, match="not active"):
        u.move_object(0, (0.0, 0.0))
    for xy in [(0.05, 0.05), (0.1, 0.0), (-0.05, 0.1)]:
        u.add_object(xy)
    with pytest.raises(ValueError, match="all 4 object slots"):
        u.add_object((0.0, -0.1))


def _push_displacement(env: gym.Env, state: ArmState, mass: float | None, friction: float | None):
    u = env.unwrapped
    u.set_state(state)
    if mass is not None:
        u.set_object_mass(0, mass)
    if friction is not None:
        u.set_object_friction(0, friction)
    start = u.ground_truth()["object_pos"][0][:2].copy()
    for _ in range(25):
        gt = u.ground_truth()
        d = gt["object_pos"][0][:2] - gt["ee_pos"][:2]
        env.step(np.append(np.clip(d / np.linalg.norm(d) * 2, -1, 1), 0.0))
    return float(np.linalg.norm(u.ground_truth()["object_pos"][0][:2] - start))


def _aimed_state(env: gym.Env) -> ArmState:
    """Object in the middle, end effector just behind it, so pushes are well defined."""
    env.reset(seed=0)
    u = env.unwrapped
    u.move_object(0, (0.0, -0.02))
    u.set_state(u.get_state())
    return u.get_state()


def test_mass_intervention_changes_the_push(push) -> None:
    state = _aimed_state(push)
    light = _push_displacement(push, state, mass=0.2, friction=None)
    heavy = _push_displacement(push, state, mass=20.0, friction=None)
    assert light > 0.02, "the scripted push should move a light object"
    assert heavy < 0.5 * light
    push.unwrapped.set_state(state)
    assert push.unwrapped.get_state().object_mass[0] == pytest.approx(0.2)


def test_friction_intervention_changes_the_push(push) -> None:
    state = _aimed_state(push)
    slippery = _push_displacement(push, state, mass=None, friction=0.1)
    sticky = _push_displacement(push, state, mass=None, friction=3.0)
    assert slippery > sticky + 1e-3


def test_interventions_are_part_of_the_state(multi) -> None:
    multi.reset(seed=1)
    u = multi.unwrapped
    before = u.get_state()
    u.remove_object(2)
    u.set_object_mass(0, 1.5)
    after = u.get_state()
    u.set_state(before)
    assert u.active_objects == [0, 1, 2, 3]
    assert u.model.body_mass[u._obj_body[0]] == pytest.approx(0.2)
    u.set_state(after)
    assert u.active_objects == [0, 1, 3]
    assert u.model.body_mass[u._obj_body[0]] == pytest.approx(1.5)


def test_invalid_intervention_values(push) -> None:
    push.reset(seed=0)
    u = push.unwrapped
    with pytest.raises(ValueError, match="mass"):
        u.set_object_mass(0, -1.0)
    with pytest.raises(ValueError, match="friction"):
        u.set_object_friction(0, float("nan"))
    with pytest.raises(ValueError, match="object index"):
        u.set_object_mass(7, 1.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"obs_type": "rgb"}, "obs_type"),
        ({"n_objects": 9}, "n_objects"),
        ({"n_objects": [3, 1]}, r"n_objects=\[3, 1\].*range \[lo, hi\]"),
        ({"n_objects": [1, 5]}, "n_objects"),
        ({"n_objects": [1.5, 2]}, "n_objects"),
        ({"width": 0}, "width"),
        ({"control": "torque"}, "control"),
    ],
)
def test_bad_constructor_arguments(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        ArmEnv(**kwargs)


@pytest.mark.parametrize("env_id", ARM_ENV_IDS)
def test_any_frame_size(env_id: str) -> None:
    env = gym.make(env_id, width=96, height=80)
    try:
        obs, info = env.reset(seed=0)
        assert obs.shape == (80, 96, 3)
        assert 0 <= info["ee_pixel"][0] < 96 and 0 <= info["ee_pixel"][1] < 80
    finally:
        env.close()


def test_added_object_is_physical(push) -> None:
    """An added object rests on the table and the arm can push it."""
    push.reset(seed=0)
    u = push.unwrapped
    slot = u.add_object((0.08, -0.08))
    for _ in range(10):
        push.step(np.zeros(3))
    assert u.ground_truth()["object_pos"][slot][2] == pytest.approx(0.02, abs=2e-3)
    u.set_state(u.get_state())
    touched = False
    for _ in range(30):
        gt = u.ground_truth()
        d = gt["object_pos"][slot][:2] - gt["ee_pos"][:2]
        _, *_, info = push.step(np.append(np.clip(d / 0.02, -1, 1), 0.0))
        touched |= bool(info["contact_arm_object"][slot])
    assert touched


@pytest.mark.parametrize("intervention", ["move", "add", "remove", "mass", "friction"])
def test_intervened_state_replays_exactly(multi, intervention: str) -> None:
    multi.reset(seed=2)
    u = multi.unwrapped
    if intervention == "add":
        u.remove_object(3)
    {
        "move": lambda: u.move_object(0, (0.0, -0.1)),
        "add": lambda: u.add_object((0.1, 0.0)),
        "remove": lambda: u.remove_object(1),
        "mass": lambda: u.set_object_mass(2, 2.0),
        "friction": lambda: u.set_object_friction(0, 1.5),
    }[intervention]()
    saved = u.get_state()
    acts = np.random.default_rng(0).uniform(-1, 1, (15, 3))
    first = [multi.step(a)[0] for a in acts]
    u.set_state(saved)
    second = [multi.step(a)[0] for a in acts]
    assert all(a.tobytes() == b.tobytes() for a, b in zip(first, second, strict=True))


def test_advance_moves_exactly_as_step(push) -> None:
    """advance (a step without observation, reward or info) leaves the same state as step,
    through a push (contacts) and with out-of-range actions (clipped alike)."""
    u = push.unwrapped
    start = _aimed_state(push)
    gt = u.ground_truth()
    box = gt["object_pos"][0][:2].copy()
    toward = box - gt["ee_pos"][:2]
    push_in = np.append(np.clip(toward / np.linalg.norm(toward) * 2, -1, 1), 0.0)
    acts = [push_in] * 10 + list(np.random.default_rng(1).uniform(-1.5, 1.5, (10, 3)))
    u.set_state(start)
    for a in acts:
        push.step(a)
    stepped = u.get_state()
    u.set_state(start)
    for a in acts:
        u.advance(a)
    advanced = u.get_state()
    moved = np.linalg.norm(u.ground_truth()["object_pos"][0][:2] - box)
    assert moved > 0.02, "the box should have been pushed"
    assert advanced.physics.tobytes() == stepped.physics.tobytes()
    assert advanced.target.tobytes() == stepped.target.tobytes()
    assert advanced.elapsed_steps == stepped.elapsed_steps == len(acts)
    with pytest.raises(ValueError, match="NaN or inf"):
        u.advance([0.0, float("nan"), 0.0])


def test_time_limit_is_part_of_the_state() -> None:
    env = gym.make("latentplay/Reach-v0")
    try:
        env.reset(seed=0)
        u = env.unwrapped
        for _ in range(90):
            env.step(np.zeros(3))
        saved = u.get_state()
        for _ in range(10):
            *_, truncated, _ = env.step(np.zeros(3))
        assert truncated
        u.set_state(saved)
        *_, truncated, _ = env.step(np.zeros(3))
        assert not truncated, "restoring step 90 restores 10 steps to go"
    finally:
        env.close()


def test_a_range_of_object_counts_varies_the_scene_per_episode() -> None:
    """n_objects=[lo, hi]: each episode draws how many objects and which of slots 0..hi-1,
    from the episode's seed; the push task's object is the first of them."""
    env = PushMultiEnv(n_objects=[1, 3])
    scenes = set()
    for seed in range(40):
        _, info = env.reset(seed=seed)
        active = tuple(int(i) for i in np.flatnonzero(info["object_active"]))
        assert 1 <= len(active) <= 3 and max(active) <= 2
        scenes.add(active)
        first = info["object_pos"][active[0], :2]
        assert info["reward_dist"] == pytest.approx(-np.linalg.norm(first - info["goal"]))
    assert {len(s) for s in scenes} == {1, 2, 3}
    assert any(0 not in s for s in scenes)  # scenes without slot 0, as after removing it
    seed = next(s for s in range(40) if not env.reset(seed=s)[1]["object_active"][0])
    _, info = env.reset(seed=seed)
    target = env.target_object()
    assert target == int(np.flatnonzero(info["object_active"])[0]) != 0
    env.set_state(env.goal_state())  # the goal image shows the task's object at the goal
    assert np.allclose(env.ground_truth()["object_pos"][target, :2], info["goal"], atol=1e-6)
    _, again = env.reset(seed=7)
    _, first = PushMultiEnv(n_objects=[1, 3]).reset(seed=7)
    assert np.array_equal(again["object_active"], first["object_active"])  # seeded
