"""Dict observations (SB3 ``MultiInputPolicy``, goal-conditioned robotics): flattened in gymnasium's order
wherever they enter rli, unflattened before the network; every entry point checked against SB3 itself."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch import nn

import rli
from rli.space_fit import dict_entries, flatten_batch, unflatten_tensor

sb3 = pytest.importorskip("stable_baselines3")


class GoalReach(gym.Env):
    """Move a point towards a goal: Dict(observation=Box(4), desired_goal=Box(2), achieved_goal=Box(2))."""

    def __init__(self, continuous: bool = False) -> None:
        box = lambda n: spaces.Box(-1.0, 1.0, (n,), np.float32)  # noqa: E731
        self.observation_space = spaces.Dict(observation=box(4), desired_goal=box(2), achieved_goal=box(2))
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32) if continuous else spaces.Discrete(4)
        self.continuous = continuous

    def _obs(self) -> dict[str, np.ndarray]:
        velocity = np.concatenate([self.pos - self.goal, [self.t / 20.0, 1.0]])
        return {"observation": velocity.astype(np.float32), "desired_goal": self.goal.astype(np.float32),
                "achieved_goal": self.pos.astype(np.float32)}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = self.np_random.uniform(-1, 1, 2)
        self.goal = self.np_random.uniform(-1, 1, 2)
        self.t = 0
        return self._obs(), {"distance": float(np.linalg.norm(self.pos - self.goal))}

    def step(self, action):
        if self.continuous:
            move = 0.1 * np.clip(np.asarray(action, dtype=np.float64), -1, 1)
        else:
            move = 0.1 * np.array([[1, 0], [-1, 0], [0, 1], [0, -1]][int(action)], dtype=np.float64)
        self.pos = np.clip(self.pos + move, -1, 1)
        self.t += 1
        distance = float(np.linalg.norm(self.pos - self.goal))
        return self._obs(), -distance, distance < 0.1, self.t >= 20, {"distance": distance}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.manual_seed(0)
    model = sb3.PPO("MultiInputPolicy", GoalReach(), seed=0, n_steps=128, batch_size=64, n_epochs=2,
                    policy_kwargs={"net_arch": [32, 32]})
    model.learn(256)
    path = tmp_path_factory.mktemp("dict") / "goal_ppo.zip"
    model.save(path)
    return model, path


def _dict_batch(env: GoalReach, n: int, seed: int) -> dict[str, np.ndarray]:
    env.observation_space.seed(seed)
    samples = [env.observation_space.sample() for _ in range(n)]
    return {key: np.stack([s[key] for s in samples]) for key in env.observation_space.spaces}


def test_flatten_matches_gymnasium_on_every_entry_kind() -> None:
    space = spaces.Dict(b=spaces.Box(-3, 3, (2, 2)), a=spaces.Discrete(3, start=1), c=spaces.MultiDiscrete([2, 4]),
                        d=spaces.MultiBinary(3))
    space.seed(0)
    rows = [space.sample() for _ in range(20)]
    batch = {key: np.stack([np.asarray(r[key]) for r in rows]) for key in space.spaces}
    flat = flatten_batch(space, batch)
    np.testing.assert_allclose(flat, np.stack([spaces.flatten(space, r) for r in rows]))
    np.testing.assert_allclose(flatten_batch(space, rows[3])[0], spaces.flatten(space, rows[3]))
    back = unflatten_tensor(space, torch.as_tensor(flat))
    for key in space.spaces:
        np.testing.assert_array_equal(back[key].numpy(), batch[key])
    with pytest.raises(rli.RliError, match=r"needs exactly the keys \['b', 'a', 'c', 'd'\]; missing \['d'\]"):
        flatten_batch(space, {k: v for k, v in batch.items() if k != "d"})


def test_multi_input_ppo_acts_like_predict_on_dicts_and_flat_arrays(trained) -> None:
    model, path = trained
    obs = _dict_batch(GoalReach(), 64, seed=1)
    expected = model.predict(obs, deterministic=True)[0]
    for policy in (rli.load_policy(path), rli.load_policy(path, trust=True), rli.load_policy(model)):
        assert policy.obs_shape == (8,) and policy.kind == "PPO"
        np.testing.assert_array_equal(policy.act(obs), expected)
        flat = flatten_batch(model.observation_space, obs)
        np.testing.assert_array_equal(policy.act(flat), expected)
        one = {key: value[5] for key, value in obs.items()}
        np.testing.assert_array_equal(policy.act(one), expected[5:6])


def test_evaluate_equals_an_sb3_loop_reseeded_per_episode(trained) -> None:
    model, path = trained
    policy = rli.load_policy(path)
    result = rli.evaluate(policy, GoalReach, episodes=5, seed=3, n_envs=2)
    env = GoalReach()
    returns = []
    for episode in range(5):
        obs, _ = env.reset(seed=3 + episode)
        total, done = 0.0, False
        while not done:
            action = model.predict(obs, deterministic=True)[0]
            obs, reward, terminated, truncated, _ = env.step(action)
            total += reward
            done = terminated or truncated
        returns.append(total)
    np.testing.assert_allclose(result.returns, returns, rtol=0, atol=1e-9)


def test_rollouts_capture_and_probe_on_the_flat_vector(trained) -> None:
    _, path = trained
    policy = rli.load_policy(path)
    obs = rli.ObsSet.from_rollouts(GoalReach, policy, n=120, seed=0)
    assert obs.obs.shape == (120, 8) and {"episode", "step", "distance"} <= set(obs.labels)
    # rows are gymnasium's flattening of what the env returned: replay episode 0 and compare
    env = GoalReach()
    first, _ = env.reset(seed=0)
    np.testing.assert_allclose(obs.obs[0], spaces.flatten(env.observation_space, first))
    # the flat vector is the keys in the space's order: observation 0..3, desired_goal 4..5, achieved_goal 6..7
    assert [(e.key, e.start, e.stop) for e in dict_entries(env.observation_space)] == [
        ("observation", 0, 4), ("desired_goal", 4, 6), ("achieved_goal", 6, 8)]
    np.testing.assert_allclose(obs.obs[:, 6:8], obs.obs[:, 4:6] + obs.obs[:, 0:2], atol=1e-6)
    acts = rli.capture(policy, obs, layers=None)
    assert acts.n == 120
    result = rli.probe(policy, obs, "obs[0]", layer="mlp_extractor.policy_net.0", controls=False)
    assert np.isfinite(result.r2)


def test_dict_obs_for_a_plain_module_and_mismatched_keys() -> None:
    env = GoalReach(continuous=True)
    net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 2))
    policy = rli.load_policy(net, env=lambda: GoalReach(continuous=True))
    obs = _dict_batch(env, 10, seed=0)
    flat = flatten_batch(env.observation_space, obs)
    with torch.no_grad():
        expected = np.clip(net(torch.as_tensor(flat)).numpy(), -1, 1)
    np.testing.assert_allclose(policy.act(obs), expected, rtol=1e-6)
    assert len(rli.evaluate(policy, lambda: GoalReach(continuous=True), episodes=2, seed=0).returns) == 2
    with pytest.raises(rli.RliError, match="observations are a dict"):
        rli.load_policy(nn.Sequential(nn.Linear(8, 2))).act(obs)


def _hooked(model, module: nn.Module, obs) -> np.ndarray:
    """``module``'s output while SB3's own ``predict`` runs on ``obs`` (no rli involved)."""
    seen = []
    handle = module.register_forward_hook(lambda _m, _i, out: seen.append(out.detach().double().numpy()))
    try:
        model.predict(obs, deterministic=True)
    finally:
        handle.remove()
    return seen[0]


def test_probe_and_polarity_take_a_dict_of_arrays(trained) -> None:
    from sklearn.linear_model import Ridge, RidgeCV
    from sklearn.model_selection import KFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model, path = trained
    policy = rli.load_policy(path)
    obs = _dict_batch(GoalReach(), 200, seed=2)
    flat = flatten_batch(model.observation_space, obs)
    y = (obs["desired_goal"][:, 0] - obs["achieved_goal"][:, 0]).astype(np.float64)
    layer = "mlp_extractor.policy_net.1"
    acts = _hooked(model, model.policy.mlp_extractor.policy_net[1], obs)
    folds = KFold(5, shuffle=True, random_state=0)
    fixed = rli.probe(policy, obs, y, layer, alphas=1.0, controls=False, seed=0)
    np.testing.assert_allclose(fixed.fold_scores, cross_val_score(Ridge(1.0), acts, y, cv=folds, scoring="r2"),
                               rtol=1e-4, atol=1e-4)
    grid = tuple(np.logspace(-3, 3, 13))
    got = rli.probe(policy, obs, y, layer, alphas=grid, control_seeds=1, seed=0)
    raw = cross_val_score(make_pipeline(StandardScaler(), RidgeCV(alphas=grid)), flat, y, cv=folds, scoring="r2")
    assert got.controls["raw_obs"] == pytest.approx(raw.mean(), abs=0.02)
    # "obs[i]" names the flat vector in gymnasium's order: entry 4 is desired_goal[0]
    by_name = rli.probe(policy, obs, "obs[4]", layer, alphas=1.0, controls=False, seed=0)
    np.testing.assert_allclose(by_name.fold_scores,
                               cross_val_score(Ridge(1.0), acts, obs["desired_goal"][:, 0], cv=folds, scoring="r2"),
                               rtol=1e-4, atol=1e-4)
    # polarity and interventions built on a dict see the flat observations
    as_dict = rli.polarity_test(policy, obs, y, sensors=[4, 6], layer=layer, seed=0)
    as_flat = rli.polarity_test(policy, flat, y, sensors=[4, 6], layer=layer, seed=0)
    assert (as_dict.r2_normal, as_dict.r2_inverted) == (as_flat.r2_normal, as_flat.r2_inverted)
    w = rli.ablate(policy, layer, "pc1", obs=obs)
    with w:
        cut = rli.capture(policy, obs, [layer])[layer]
    assert np.abs(cut @ rli.fit_pca(acts, 1)[0][:, 0]).max() < 1e-4


def test_sample_of_a_dict_space_gives_gymnasiums_flat_rows() -> None:
    space = spaces.Dict(pos=spaces.Box(-1, 1, (3,)), mode=spaces.Discrete(3, start=1), bits=spaces.MultiBinary(2))
    reference = copy.deepcopy(space)
    reference.seed(5)
    expected = np.stack([spaces.flatten(reference, reference.sample()) for _ in range(40)])
    got = rli.ObsSet.sample(space, n=40, seed=5)
    assert got.obs.shape == (40, 8)
    np.testing.assert_allclose(got.obs, expected)
    nested = spaces.Dict(inner=spaces.Dict(a=spaces.Box(0, 1, (1,))))
    with pytest.raises(rli.RliError, match="observation key 'inner' is a Dict space"):
        rli.ObsSet.sample(nested, n=4, seed=0)


def test_sample_of_a_dict_policy_feeds_act(trained) -> None:
    model, path = trained
    policy = rli.load_policy(path)
    obs = rli.ObsSet.sample(policy, n=30, seed=1)
    assert obs.obs.shape == (30, 8)
    reference = copy.deepcopy(model.observation_space)
    reference.seed(1)
    rows = [reference.sample() for _ in range(30)]
    batch = {key: np.stack([row[key] for row in rows]) for key in rows[0]}
    np.testing.assert_array_equal(policy.act(obs), model.predict(batch, deterministic=True)[0])


def test_obsset_from_a_dict_flattens_with_the_space_it_is_given(trained) -> None:
    model, path = trained
    policy = rli.load_policy(path)
    obs = _dict_batch(GoalReach(), 12, seed=3)
    flat = np.stack([spaces.flatten(model.observation_space, {k: v[i] for k, v in obs.items()}) for i in range(12)])
    for space in (policy, model.observation_space):
        held = rli.ObsSet(obs, labels={"i": np.arange(12)}, space=space)
        np.testing.assert_allclose(held.obs, flat)
    with pytest.raises(rli.RliError, match="pass space=policy"):
        rli.ObsSet(obs)
    with pytest.raises(rli.RliError, match=r"shape \(5,\) per row but space takes \(8,\)"):
        rli.ObsSet(np.zeros((3, 5)), space=policy)
    with pytest.raises(rli.RliError, match="not a Dict space"):
        rli.ObsSet(obs, space=spaces.Box(-1, 1, (8,)))
