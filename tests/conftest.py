"""Shared fixtures: small SB3 models built (not trained) in the tests, hypothesis profiles."""

from __future__ import annotations

import os
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch._dynamo  # noqa: F401 — see below
from hypothesis import HealthCheck, settings

# torch._dynamo is imported once, here: pytester's in-process runs restore sys.modules afterwards, and importing it
# again inside a later run fails with "Only a single TORCH_LIBRARY".
# For the same reason rli's lazy names are all loaded here: a module first imported inside an in-process run would be
# dropped after it, and its classes (rli.Policy) then exist twice.
import rli

for _name in rli.__all__:
    getattr(rli, _name)

settings.register_profile("ci", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=300, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


class ImageEnv(gym.Env):
    """A tiny image-observation env (36×36 grey frames) so NatureCNN policies can be built."""

    observation_space = gym.spaces.Box(0, 255, (1, 36, 36), np.uint8)
    action_space = gym.spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


SB3_CASES = {
    "PPO": ("stable_baselines3", "PPO", "MlpPolicy", "Pendulum-v1", {"net_arch": [16, 16, 16]}),
    "A2C": ("stable_baselines3", "A2C", "MlpPolicy", "CartPole-v1", {"net_arch": [8, 8]}),
    "SAC": ("stable_baselines3", "SAC", "MlpPolicy", "Pendulum-v1", {"net_arch": [8, 8]}),
    "TD3": ("stable_baselines3", "TD3", "MlpPolicy", "Pendulum-v1", {"net_arch": [8, 8]}),
    "DQN": ("stable_baselines3", "DQN", "MlpPolicy", "CartPole-v1", {"net_arch": [8, 8]}),
    "RecurrentPPO": ("sb3_contrib", "RecurrentPPO", "MlpLstmPolicy", "CartPole-v1",
                     {"net_arch": [8], "lstm_hidden_size": 8}),
}


def build_sb3(name: str):
    """An untrained SB3 model of algorithm ``name`` with small networks (seeded)."""
    module, algo, policy, env, kwargs = SB3_CASES[name]
    cls = getattr(pytest.importorskip(module), algo)
    extra = {"buffer_size": 1000} if name in ("SAC", "TD3", "DQN") else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls(policy, env, policy_kwargs=kwargs, seed=0, device="cpu", **extra)


@pytest.fixture(scope="session")
def sb3_zip(tmp_path_factory):
    """Factory: path of a saved SB3 zip for an algorithm name (built once per session)."""
    made: dict[str, tuple] = {}

    def get(name: str):
        if name not in made:
            model = build_sb3(name)
            path = tmp_path_factory.mktemp(name) / f"{name.lower()}.zip"
            model.save(path)
            made[name] = (model, path)
        return made[name]

    return get


@pytest.fixture
def rng():
    return np.random.default_rng(0)
