"""Silent mismatches (issue 16, class 6): a policy that does not fit its env, a zip reported as the wrong
algorithm, sb3-contrib policies, float images scaled twice. Each case is refused or warned about, never silent."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch import nn

import rli
from rli.policy import ImageScaleWarning

sb3 = pytest.importorskip("stable_baselines3")


# --------------------------------------------------------------- action space fit
def test_output_wider_than_the_action_is_refused_at_load() -> None:
    # 3 outputs for Pendulum's 1-D action: before, this loaded and acted with 3 "actions" per observation
    with pytest.raises(rli.RliError, match=r"^Pendulum-v1: the policy's output for 2 observations has shape "
                                           r"\(2, 3\), which is not 2 actions of shape \(1,\)"):
        rli.load_policy(nn.Sequential(nn.Linear(3, 3)), env="Pendulum-v1")


def test_discrete_policy_on_a_box_env_is_refused_before_any_step() -> None:
    policy = rli.load_policy(nn.Sequential(nn.Linear(3, 2)), action_space=spaces.Discrete(2))
    for run in (lambda: rli.evaluate(policy, "Pendulum-v1", episodes=2, seed=0),
                lambda: rli.ObsSet.from_rollouts("Pendulum-v1", policy, n=5, seed=0)):
        with pytest.raises(rli.RliError, match=r"action space is Discrete\(2\) but Pendulum-v1 takes Box"):
            run()


def test_policy_loaded_without_env_is_checked_by_evaluate_compare_and_rollouts() -> None:
    torch.manual_seed(0)
    policy = rli.load_policy(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)))  # logits, no space
    cut = rli.ablate(policy, 1, np.ones(8))
    runs = {"evaluate": lambda: rli.evaluate(policy, "CartPole-v1", episodes=2, seed=0),
            "compare": lambda: rli.compare(policy, "CartPole-v1", cut, episodes=2, seed=0),
            "from_rollouts": lambda: rli.ObsSet.from_rollouts("CartPole-v1", policy, n=5, seed=0)}
    for name, run in runs.items():
        with pytest.raises(rli.RliError, match="loaded without an action space") as info:
            run()
        assert "Discrete(2)" in str(info.value) and "\n" not in str(info.value), name
    # loaded with the env, the same network acts by argmax and runs
    fitted = rli.load_policy(policy.module, env="CartPole-v1")
    assert len(rli.evaluate(fitted, "CartPole-v1", episodes=2, seed=0).returns) == 2


def test_sb3_zip_on_another_env_is_refused_at_load(tmp_path) -> None:
    model = sb3.PPO("MlpPolicy", "CartPole-v1", seed=0, n_steps=16, batch_size=16)
    model.save(tmp_path / "ppo.zip")
    with pytest.raises(rli.RliError, match=r"Acrobot-v1 observations have shape \(6,\) but the policy takes \(4,\)"):
        rli.load_policy(tmp_path / "ppo.zip", env="Acrobot-v1")
    rli.load_policy(tmp_path / "ppo.zip", env="CartPole-v1")  # its own env fits


def test_box_actions_outside_the_bounds_are_clipped_as_sb3_predict_clips(tmp_path) -> None:
    model = sb3.PPO("MlpPolicy", "Pendulum-v1", seed=0, n_steps=16, batch_size=16)
    with torch.no_grad():
        model.policy.action_net.bias.fill_(9.0)  # far outside Box(-2, 2)
    obs = np.random.default_rng(0).uniform(-1, 1, (16, 3)).astype(np.float32)
    expected = model.predict(obs, deterministic=True)[0]
    assert np.all(np.abs(expected) == 2.0)
    np.testing.assert_array_equal(rli.load_policy(model).act(obs), expected)
    # a plain module with a Box action space does the same
    net = nn.Linear(3, 1)
    with torch.no_grad():
        net.bias.fill_(9.0)
        net.weight.zero_()
    np.testing.assert_array_equal(rli.load_policy(net, env="Pendulum-v1").act(obs), np.full((16, 1), 2.0))


# ------------------------------------------------------------ algorithm detection
def _contrib():
    return pytest.importorskip("sb3_contrib")


def _build(name: str):
    contrib = _contrib()
    algo = getattr(sb3, name, None) or getattr(contrib, name)
    small = {"policy_kwargs": {"net_arch": [16, 16]}}
    if name in ("PPO", "A2C", "TRPO", "MaskablePPO", "RecurrentPPO"):
        kwargs = dict(n_steps=16, **small)
        if name in ("PPO", "TRPO", "MaskablePPO", "RecurrentPPO"):
            kwargs["batch_size"] = 16
        policy = "MlpLstmPolicy" if name == "RecurrentPPO" else "MlpPolicy"
        env = "CartPole-v1"
    elif name in ("DQN", "QRDQN"):
        kwargs, policy, env = dict(buffer_size=100, **small), "MlpPolicy", "CartPole-v1"
    elif name == "ARS":
        kwargs, policy, env = dict(n_delta=2), "LinearPolicy", "Pendulum-v1"
    else:
        kwargs, policy, env = dict(buffer_size=100, **small), "MlpPolicy", "Pendulum-v1"
    if name == "MaskablePPO":
        from sb3_contrib.common.envs import InvalidActionEnvDiscrete

        return algo(policy, InvalidActionEnvDiscrete(dim=4, n_invalid_actions=1), seed=0, **kwargs)
    return algo(policy, env, seed=0, **kwargs)


# the ones that were wrong are in the default run; those that were already right run with the slow tests
ALGORITHMS = ["DDPG", "QRDQN", "TQC", "TRPO", "ARS", "CrossQ", "MaskablePPO"] + [
    pytest.param(name, marks=pytest.mark.slow) for name in ("PPO", "A2C", "DQN", "SAC", "TD3", "RecurrentPPO")]


@pytest.mark.parametrize("name", ALGORITHMS)
def test_every_sb3_and_contrib_zip_is_named_and_acts_like_predict(name: str, tmp_path) -> None:
    # before: TRPO was reported as A2C, DDPG as TD3; QRDQN, TQC, CrossQ, ARS and MaskablePPO did not load, with
    # errors that contradicted each other (untrusted: "unsupported class"; trusted: "damaged file")
    model = _build(name)
    path = tmp_path / f"{name}.zip"
    model.save(path)
    loaded = type(model).load(path)
    obs = np.stack([loaded.observation_space.sample() for _ in range(12)])
    expected = loaded.predict(obs, deterministic=True)[0]
    for trust in (False, True):
        policy = rli.load_policy(path, trust=trust)
        assert policy.kind == name
        np.testing.assert_array_equal(policy.act(obs), expected)
    assert rli.load_policy(model).kind == name
    if not policy.is_recurrent:  # (recurrent captures need states: tests/test_recurrent*)
        acts = rli.capture(policy, obs, layers=None)
        assert acts.n == 12 and len(acts) == len(policy.actor_layers)


def test_ddpg_is_told_from_td3_by_its_settings(tmp_path) -> None:
    td3_like_ddpg = sb3.TD3("MlpPolicy", "Pendulum-v1", policy_delay=1, target_noise_clip=0.0, buffer_size=10)
    td3_like_ddpg.save(tmp_path / "a.zip")
    assert rli.load_policy(tmp_path / "a.zip").kind == "DDPG"  # that *is* DDPG: same updates
    sb3.TD3("MlpPolicy", "Pendulum-v1", policy_delay=1, buffer_size=10).save(tmp_path / "b.zip")
    assert rli.load_policy(tmp_path / "b.zip").kind == "TD3"


# --------------------------------------------------------------- images scaled twice
class _Pixels(gym.Env):
    """A 3×36×36 uint8 image env (NatureCNN's smallest input)."""

    def __init__(self, channels_last: bool = False) -> None:
        shape = (36, 36, 3) if channels_last else (3, 36, 36)
        self.observation_space = spaces.Box(0, 255, shape, np.uint8)
        self.action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, True, {}


@pytest.mark.parametrize("channels_last", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_float_images_in_unit_range_warn_once_per_call(channels_last: bool) -> None:
    model = sb3.PPO("CnnPolicy", _Pixels(channels_last), seed=0, n_steps=16, batch_size=16,
                    policy_kwargs={"features_extractor_kwargs": {"features_dim": 16}})
    policy = rli.load_policy(model)
    pixels = np.random.default_rng(0).integers(0, 256, (6, *model.observation_space.shape), dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        good = policy.act(pixels, chunk_size=2)  # proper uint8 pixels: no warning
        policy.act(pixels.astype(np.float32), chunk_size=2)  # floats in [0, 255]: fine too
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scaled = policy.act(pixels.astype(np.float32) / 255.0, chunk_size=2)
        rli.capture(policy, pixels.astype(np.float32) / 255.0, layers=[0], chunk_size=2)
    ours = [w for w in caught if issubclass(w.category, ImageScaleWarning)]
    assert len(ours) == 2, [str(w.message) for w in caught]  # once per call, not once per chunk
    assert "scaled twice" in str(ours[0].message) and "uint8" in str(ours[0].message)
    # what the warning says happened did happen: SB3 divides the floats by 255 again
    np.testing.assert_array_equal(scaled, model.predict(pixels.astype(np.float32) / 255.0, deterministic=True)[0])
    np.testing.assert_array_equal(good, model.predict(pixels, deterministic=True)[0])
