"""Steering vectors and the steer intervention: fits against numpy/scikit-learn on SB3's own activations,
coeff 0 is the identity bit for bit, composition and reuse, leak-freedom, and assert_steering_changes
calibrated (a random vector where steering cannot change the expected return) and powered (a planted one)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from scipy import stats as st
from sklearn.decomposition import TruncatedSVD
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

import rli
from pytest_rli.steering_assertions import assert_steering_changes
from rli.capture import capture
from rli.steering import SteeringVector, steer, steering_vector
from tests.test_interrupts import _hooks
from tests.test_zoo import CASES
from tests.zoo.build import checkpoint


def _zoo(name: str) -> rli.Policy:
    return rli.load_policy(checkpoint(name), **CASES[name].load)


@pytest.fixture(scope="module")
def cartpole() -> tuple[rli.Policy, rli.ObsSet]:
    policy = _zoo("ppo_cartpole")
    return policy, rli.ObsSet.from_rollouts("CartPole-v1", policy, n=200, seed=0, episodes=8)


def _sb3_acts(policy: rli.Policy, obs: np.ndarray, name: str) -> np.ndarray:
    seen: dict[str, torch.Tensor] = {}
    handle = policy.module.get_submodule(name).register_forward_hook(
        lambda m, i, o: seen.__setitem__("h", o.detach().clone()))
    try:
        with torch.no_grad():
            policy.module.predict(obs, deterministic=True)
    finally:
        handle.remove()
    return seen["h"].numpy().astype(np.float64)


def test_vectors_match_numpy_and_sklearn_on_sb3_activations(cartpole):
    policy, obs = cartpole
    lean = obs.obs[:, 2] > 0
    k = min(lean.sum(), (~lean).sum())
    pos, neg = obs[np.flatnonzero(lean)[:k]], obs[np.flatnonzero(~lean)[:k]]
    name = "mlp_extractor.policy_net.1"
    a, b = _sb3_acts(policy, pos.obs, name), _sb3_acts(policy, neg.obs, name)
    mean = steering_vector(policy, 1, pos, neg)
    np.testing.assert_allclose(mean.vector, a.mean(0) - b.mean(0), rtol=1e-5, atol=1e-6)
    assert mean.norm == pytest.approx(np.linalg.norm(a.mean(0) - b.mean(0)), rel=1e-5) and mean.n == len(pos) + len(neg)
    diff = a.mean(0) - b.mean(0)
    pca = steering_vector(policy, 1, pos, neg, method="pca")
    reference = TruncatedSVD(n_components=1, algorithm="arpack").fit(a - b).components_[0]
    reference = reference * np.sign(reference @ diff)
    np.testing.assert_allclose(pca.vector / pca.norm, reference, atol=1e-5)
    assert pca.norm == pytest.approx(abs(diff @ reference), rel=1e-5)
    logistic = steering_vector(policy, 1, pos, neg, method="logistic")
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(
        np.r_[a, b], np.r_[np.ones(len(a)), np.zeros(len(b))])
    w = pipe[-1].coef_[0] / pipe[0].scale_
    w /= np.linalg.norm(w)
    np.testing.assert_allclose(logistic.vector / logistic.norm, w * np.sign(w @ diff), atol=1e-3)
    assert logistic.vector @ diff > 0


@pytest.mark.parametrize("name", ["ppo_cartpole", "ppo_cnn_chw", "recurrentppo_cartpole"])
def test_coeff_zero_is_the_identity_bit_for_bit(name):
    policy = _zoo(name)
    env = {"ppo_cnn_chw": "tests.zoo.envs:ZooImage-v0"}.get(name, "CartPole-v1")
    obs = rli.ObsSet.from_rollouts(env, policy, n=12, seed=0, episodes=2)
    layer = policy.actor_layers[len(policy.actor_layers) // 2]
    rng = np.random.default_rng(0)
    plain = capture(policy, obs)
    with steer(policy, layer.name, rng.normal(size=layer.width), coeff=0.0):
        steered = capture(policy, obs)
        actions = policy.act(obs)
    assert all(np.array_equal(plain[k], steered[k]) for k in plain)
    assert np.array_equal(actions, policy.act(obs))
    push = steer(policy, layer.name, rng.normal(size=layer.width), coeff=0.5)
    with push:
        moved = capture(policy, obs, layers=[layer.name])[layer.name]
    with push:  # reusable: the same edit again
        again = capture(policy, obs, layers=[layer.name])[layer.name]
    assert np.array_equal(moved, again) and not np.array_equal(moved, plain[layer.name])


def test_steer_adds_coeff_times_vector_and_composes(cartpole):
    policy, obs = cartpole
    name = "mlp_extractor.policy_net.1"
    v = np.random.default_rng(1).normal(size=16)
    base = _sb3_acts(policy, obs.obs, name)
    with steer(policy, 1, v, coeff=-2.0):
        moved = _sb3_acts(policy, obs.obs, name)  # hooks on SB3's own forward pass see the edit
    np.testing.assert_allclose(moved, base - 2.0 * v, rtol=1e-5, atol=1e-5)
    u = np.eye(16)[0]
    with steer(policy, 1, v, coeff=1.0), rli.ablate(policy, 1, u):  # same layer: steer first, then ablate
        both = capture(policy, obs, layers=[1])[1]
    expected = base + v
    expected[:, 0] = 0.0
    np.testing.assert_allclose(both, expected, rtol=1e-5, atol=1e-5)
    before = [p.detach().clone() for p in policy.module.parameters()]
    hooks = _hooks(policy.module)
    with pytest.raises(KeyboardInterrupt):
        with steer(policy, 1, v):
            raise KeyboardInterrupt
    assert _hooks(policy.module) == hooks
    assert all(torch.equal(a, b) for a, b in zip(before, policy.module.parameters()))


def test_bad_input_is_an_rli_error(cartpole):
    policy, obs = cartpole
    with pytest.raises(rli.RliError, match="width 16"):
        steer(policy, 1, np.ones(3))
    with pytest.raises(rli.RliError, match="NaN"):
        steer(policy, 1, np.full(16, np.nan))
    fitted = SteeringVector(np.ones(16), "mlp_extractor.policy_net.1", "mean", 4.0, 10)
    with pytest.raises(rli.RliError, match="another activation space"):
        steer(policy, 3, fitted)
    with pytest.raises(rli.RliError, match="method must be"):
        steering_vector(policy, 1, obs, obs, method="svm")
    with pytest.raises(rli.RliError, match="same length"):
        steering_vector(policy, 1, obs[:10], obs[:12], method="pca")
    with pytest.raises(rli.RliError, match="is zero"):
        steering_vector(policy, 1, obs[:10], obs[:10])
    with pytest.raises(rli.RliError, match="min_effect"):
        assert_steering_changes(policy=policy, env="CartPole-v1", layer=1, vector=np.ones(16), min_effect=-1)


# ------------------------------------------------------------------------------ calibration of the assertion
class DriftCoin(gym.Env):
    """Observations drift (AR(1), ρ = 0.9); the reward is the action's sign times a hidden AR(1) coin ε_t.

    With ``prefer=False`` no policy can change the expected return: ε is independent of everything the
    policy sees, so steering changes individual returns (other actions, other signs) but not their mean.
    With ``prefer=True`` the reward is 1 for action 1: steering toward action 1 raises the return.
    """

    observation_space = gym.spaces.Box(-10, 10, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, prefer: bool = False, steps: int = 20) -> None:
        self.prefer, self.steps = prefer, steps

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t, self.x, self.coin = 0, self.np_random.normal(size=2), self.np_random.normal()
        return self.x.astype(np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        sign = 1.0 if int(action) == 1 else -1.0
        reward = 1.0 * (int(action) == 1) if self.prefer else sign * self.coin
        self.coin = 0.9 * self.coin + np.sqrt(0.19) * self.np_random.normal()
        self.x = 0.9 * self.x + np.sqrt(0.19) * self.np_random.normal(size=2)
        self.t += 1
        return self.x.astype(np.float32), reward, False, self.t >= self.steps, {}


def _coin_policy() -> rli.Policy:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2))
    return rli.load_policy(net, observation_space=DriftCoin.observation_space, action_space=DriftCoin.action_space)


def _passes(**kwargs: Any) -> bool:
    try:
        assert_steering_changes(**kwargs)
    except AssertionError:
        return False
    return True


def _null_passes(reps: int, seed: int) -> int:
    policy, rng = _coin_policy(), np.random.default_rng(seed)
    planted = policy.module[2].weight.detach().numpy()
    norm = float(np.linalg.norm(planted[1] - planted[0]))
    count = 0
    for rep in range(reps):
        v = rng.normal(size=8)
        v *= norm / np.linalg.norm(v)  # a random vector of the planted one's norm
        count += _passes(policy=policy, env=DriftCoin, layer=1, vector=v, coeff=1.0, metric="return", min_effect=0.0,
                         episodes=10, seed=1000 * seed + 10 * rep)
    return count


def _power_passes(reps: int, seed: int) -> int:
    policy = _coin_policy()
    w = policy.module[2].weight.detach().numpy()
    toward_one = w[1] - w[0]  # raises logit 1 over logit 0
    return sum(_passes(policy=policy, env=lambda: DriftCoin(prefer=True), layer=1, vector=toward_one, coeff=1.0,
                       metric="return", min_effect=3.0, direction="increase", episodes=10, seed=1000 * seed + 10 * rep)
               for rep in range(reps))


def test_assertion_null_and_power_fast():
    reps = 16
    assert _null_passes(reps, seed=0) <= st.binom.ppf(0.99, reps, 0.05)
    assert _power_passes(4, seed=1) == 4


@pytest.mark.slow
def test_assertion_null_and_power_thorough():
    reps = 400
    assert _null_passes(reps, seed=2) <= st.binom.ppf(0.99, reps, 0.05)
    assert _power_passes(100, seed=3) >= 80
