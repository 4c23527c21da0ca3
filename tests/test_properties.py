"""Property-based tests (hypothesis): env action handling and the shard writer/reader."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import latentplay.envs  # noqa: F401
from latentplay.envs.base import validate_action
from latentplay.rollouts import CorruptShardError, EpisodeReader
from latentplay.rollouts.format import FORMAT, FORMAT_VERSION, Episode, ShardWriter

ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True, width=64)


# ---------------------------------------------------------------------------- env actions
@given(a=hnp.arrays(np.float64, (3,), elements=ANY_FLOAT))
def test_validate_action_clips_finite_and_refuses_the_rest(a: np.ndarray) -> None:
    if np.isfinite(a).all():
        before = a.copy()
        out = validate_action(a, (3,))
        assert out.dtype == np.float64 and out.shape == (3,)
        np.testing.assert_array_equal(out, np.clip(a, -1, 1))
        out[:] = 0.0
        np.testing.assert_array_equal(a, before)  # a copy: the caller's array is never changed
    else:
        with pytest.raises(ValueError, match="NaN or inf"):
            validate_action(a, (3,))


@given(shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=4).filter(lambda s: s != (3,)))
def test_validate_action_refuses_every_other_shape(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"expected \(3,\)"):
        validate_action(np.zeros(shape), (3,))


@pytest.fixture(scope="module")
def push():
    env = gym.make("latentplay/Push-v0", width=16, height=16)
    env.reset(seed=0)
    yield env.unwrapped
    env.close()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(a=hnp.arrays(np.float64, (3,), elements=ANY_FLOAT))
def test_env_step_takes_any_finite_action_and_stays_valid(push, a: np.ndarray) -> None:
    state = push.get_state()
    if not np.isfinite(a).all():
        with pytest.raises(ValueError, match="NaN or inf"):
            push.step(a)
        after = push.get_state().to_arrays()
        for k, v in state.to_arrays().items():  # a refused action leaves the env untouched
            np.testing.assert_array_equal(after[k], v, err_msg=k)
        return
    obs, reward, *_, info = push.step(a)
    assert obs.shape == (16, 16, 3) and obs.dtype == np.uint8
    assert np.isfinite(reward) and np.isfinite(info["ee_pos"]).all()
    # A huge action is the same as its clipped self: clipping happens before the physics.
    clipped = push.get_state().to_arrays()
    push.set_state(state)
    push.step(np.clip(a, -1, 1))
    for k, v in push.get_state().to_arrays().items():
        np.testing.assert_array_equal(v, clipped[k], err_msg=k)


# ---------------------------------------------------------------------------- shards
@st.composite
def episodes(draw) -> list[Episode]:
    n = draw(st.integers(1, 3))
    size = draw(st.sampled_from([4, 8]))
    out = []
    for i in range(n):
        t = draw(st.integers(1, 5))
        seed = draw(st.integers(0, 2**31 - 1))
        rng = np.random.default_rng(seed)
        out.append(
            Episode(
                index=i,
                seed=seed,
                split=draw(st.sampled_from(["train", "val", "test"])),
                policy="random",
                frames=rng.integers(0, 256, (t + 1, size, size, 3), dtype=np.uint8),
                actions=rng.uniform(-1, 1, (t, 3)).astype(np.float32),
                rewards=rng.standard_normal(t),
                per_frame={"ee_pixel": rng.standard_normal((t + 1, 2))},
                per_step={"reward_dist": rng.standard_normal(t)},
                state={"physics": rng.standard_normal((t + 1, 6))},
                masks=rng.integers(0, 4, (t + 1, size, size), dtype=np.uint8)
                if draw(st.booleans())
                else None,
            )
        )
    return out


def _write(root: Path, eps: list[Episode], compression: str | None) -> None:
    (root / "shards").mkdir(parents=True)
    writer = ShardWriter(root / "shards", 0, compression=compression)
    for ep in eps:
        writer.add(ep)
    info = writer.close()
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "shards": [info]}
    (root / "meta.json").write_text(json.dumps(meta))


@settings(max_examples=25, deadline=None)
@given(eps=episodes(), compression=st.sampled_from(["gzip", "lzf", None]))
def test_shards_read_back_exactly_what_was_written(eps: list[Episode], compression) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _write(root, eps, compression)
        reader = EpisodeReader(root)
        assert len(reader) == len(eps)
        for i, ep in enumerate(eps):
            np.testing.assert_array_equal(reader.frames(i), ep.frames)
            gt = reader.ground_truth(i)
            np.testing.assert_array_equal(gt["actions"], ep.actions)
            np.testing.assert_array_equal(gt["rewards"], ep.rewards)
            for k, v in {**ep.per_frame, **ep.per_step}.items():
                np.testing.assert_array_equal(gt[k], v, err_msg=k)
            np.testing.assert_array_equal(gt["state"]["physics"], ep.state["physics"])
            if ep.masks is None:
                assert "masks" not in gt
            else:
                np.testing.assert_array_equal(gt["masks"], ep.masks)
            assert reader.episodes[i][3] == ep.split and gt["attrs"]["seed"] == ep.seed
        reader.close()


@settings(max_examples=40, deadline=None)
@given(eps=episodes(), where=st.floats(0, 1, exclude_max=True), bit=st.integers(0, 7))
def test_any_flipped_bit_or_truncation_is_caught_and_named(
    eps: list[Episode], where: float, bit: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _write(root, eps, "gzip")
        shard = root / "shards" / "shard-00000.h5"
        data = bytearray(shard.read_bytes())
        pos = int(where * len(data))
        data[pos] ^= 1 << bit
        shard.write_bytes(bytes(data))
        with pytest.raises(CorruptShardError, match=r"shard-00000\.h5: checksum mismatch"):
            EpisodeReader(root)
        shard.write_bytes(bytes(data[:pos]))
        with pytest.raises(CorruptShardError, match=r"shard-00000\.h5: truncated"):
            EpisodeReader(root)
