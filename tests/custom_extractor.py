"""A user-defined SB3 features extractor: loading a zip that names it needs trust=True."""

import gymnasium as gym
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor


class TinyExtractor(BaseFeaturesExtractor):
    def __init__(self, observation_space: gym.spaces.Box) -> None:
        super().__init__(observation_space, features_dim=6)
        self.net = torch.nn.Linear(observation_space.shape[0], 6)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(obs))
