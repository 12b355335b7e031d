"""rli.ObsSet: construction, labels, grid, sampling, rollouts, save/load."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import rli


def test_labels_and_slicing():
    obs = rli.ObsSet(np.arange(12.0).reshape(6, 2), labels={"y": np.arange(6.0), "cls": list("aabbcc")})
    assert len(obs) == 6 and obs.obs.shape == (6, 2)
    sub = obs[np.array([0, 5])]
    assert sub.labels["y"].tolist() == [0.0, 5.0] and sub.labels["cls"].tolist() == ["a", "c"]
    assert len(obs[2]) == 1 and len(obs[-1]) == 1 and obs[-1].labels["y"].tolist() == [5.0]
    with pytest.raises(rli.RliError, match="known labels: cls, y"):
        obs.label("upwash")
    with pytest.raises(TypeError):
        obs.labels["z"] = np.zeros(6)
    assert obs.with_labels(z=np.ones(6)).label("z").sum() == 6


@pytest.mark.parametrize(("obs", "labels", "message"), [
    (np.zeros(3), None, "batch of shape"),
    (np.array([[1.0, np.nan]]), None, "NaN/inf"),
    (np.array([["a"]]), None, "numeric"),
    (np.zeros((3, 2)), {"y": [1.0, 2.0]}, "label 'y' has 2 values for 3 observations"),
    (np.zeros((2, 2)), {"y": [1.0, np.inf]}, "label 'y' contains 1 NaN/inf"),
    (np.zeros((2, 2)), {"y": 3.0}, "a scalar"),
])
def test_bad_input_is_rejected(obs, labels, message):
    with pytest.raises(rli.RliError, match=message):
        rli.ObsSet(obs, labels)


def test_grid_is_a_product_in_ij_order_with_the_rest_fixed():
    base = np.arange(28.0)
    xs, ys = np.linspace(-6, 0, 4), np.linspace(-3, 3, 5)
    grid = rli.ObsSet.grid(base, {9: xs, 10: ys}, label_fn=lambda o: {"dist": np.hypot(o[:, 9], o[:, 10])})
    assert grid.obs.shape == (20, 28) and grid.meta["grid_shape"] == [4, 5]
    assert np.array_equal(grid.obs[:, 9].reshape(4, 5), np.repeat(xs[:, None], 5, axis=1))
    assert np.array_equal(grid.obs[:, 10].reshape(4, 5), np.repeat(ys[None], 4, axis=0))
    untouched = [i for i in range(28) if i not in (9, 10)]
    assert np.array_equal(grid.obs[:, untouched], np.repeat(base[None, untouched], 20, axis=0))
    assert np.allclose(grid.labels["dist"], np.hypot(grid.obs[:, 9], grid.obs[:, 10]))
    with pytest.raises(rli.RliError, match="outside the observation"):
        rli.ObsSet.grid(base, {28: xs})


@given(st.integers(0, 10_000), st.integers(1, 200))
def test_sample_is_seeded_and_inside_the_space(seed, n):
    space = gym.spaces.Box(low=np.array([-1.0, 0.0, -np.inf]), high=np.array([1.0, np.inf, np.inf]),
                           dtype=np.float64)
    a, b = rli.ObsSet.sample(space, n, seed), rli.ObsSet.sample(space, n, seed)
    assert np.array_equal(a.obs, b.obs) and a.obs.dtype == np.float64 and a.obs.shape == (n, 3)
    assert np.all(a.obs[:, 0] >= -1) and np.all(a.obs[:, 0] <= 1) and np.all(a.obs[:, 1] >= 0)


def test_sample_other_spaces_and_policies():
    discrete = rli.ObsSet.sample(gym.spaces.MultiDiscrete([3, 4]), 50, seed=1)
    assert discrete.obs.shape == (50, 2) and discrete.obs.max() < 4
    policy = rli.load_policy(nn.Sequential(nn.Linear(3, 1)), env="Pendulum-v1")
    assert rli.ObsSet.sample(policy, 5, seed=0).obs.shape == (5, 3)
    with pytest.raises(rli.RliError, match="gymnasium space"):
        rli.ObsSet.sample(object(), 5, seed=0)


def test_from_rollouts_is_seeded_and_labels_info():
    policy = rli.load_policy(nn.Sequential(nn.Linear(4, 2)), env="CartPole-v1")
    a = rli.ObsSet.from_rollouts("CartPole-v1", policy, n=300, seed=3)
    b = rli.ObsSet.from_rollouts("CartPole-v1", policy, n=300, seed=3)
    assert len(a) == 300 and np.array_equal(a.obs, b.obs)
    episodes = a.labels["episode"]
    assert episodes[0] == 0 and np.all(np.diff(episodes) >= 0)
    first = a.obs[a.labels["step"] == 0]
    env = gym.make("CartPole-v1")
    for i, start in enumerate(first):
        assert np.array_equal(start, env.reset(seed=3 + i)[0])
    custom = rli.ObsSet.from_rollouts(gym.make("CartPole-v1"), policy, n=20, seed=0,
                                      label_fn=lambda o, info: {"angle": o[2]})
    assert np.array_equal(custom.labels["angle"], custom.obs[:, 2])


def test_save_load_roundtrip(tmp_path):
    obs = rli.ObsSet(np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32),
                     labels={"y": np.arange(10), "cls": np.array(list("ab") * 5)}, meta={"seed": 4})
    path = obs.save(tmp_path / "set")
    assert path.suffix == ".npz"
    back = rli.ObsSet.load(path)
    assert np.array_equal(back.obs, obs.obs) and back.obs.dtype == np.float32
    assert back.labels["cls"].tolist() == obs.labels["cls"].tolist() and back.meta == {"seed": 4}
    assert back.fingerprint == obs.fingerprint


def test_load_rejects_foreign_and_missing_files(tmp_path):
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(rli.RliError, match="no 'obs' array"):
        rli.ObsSet.load(tmp_path / "other.npz")
    with pytest.raises(rli.RliError, match="no such file"):
        rli.ObsSet.load(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(rli.RliError, match="not a readable"):
        rli.ObsSet.load(tmp_path / "junk.npz")
    np.savez(tmp_path / "pickled.npz", obs=np.array([{"a": 1}], dtype=object))
    with pytest.raises(rli.RliError):
        rli.ObsSet.load(tmp_path / "pickled.npz")


def test_policy_accepts_obsset_and_validates_it():
    policy = rli.load_policy(nn.Sequential(nn.Linear(3, 2)))
    assert policy.act(rli.ObsSet(np.zeros((4, 3)))).shape == (4, 2)
    with pytest.raises(rli.RliError, match="takes \\(n, 3\\)"):
        policy.act(rli.ObsSet(np.zeros((4, 5))))
