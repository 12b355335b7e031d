"""The small CNN features extractor of the MiniGrid benchmark policy (SB3 ``features_extractor_class``).

SB3's ``NatureCNN`` needs images of at least 36×36 pixels; MiniGrid's egocentric view is
7×7 cells of 3 integer codes (object, colour, state). :class:`MiniGridCNN` is the
extractor of minigrid's own SB3 example and of rl-starter-files: three 2×2 convolutions
(16, 32, 64 channels, ReLU) and a linear layer to ``features_dim`` (ReLU). It lives in an
importable module so that a checkpoint naming it loads without ``trust=True``.

Example:
    >>> import gymnasium as gym, numpy as np, torch
    >>> space = gym.spaces.Box(0, 255, (3, 7, 7), dtype=np.uint8)
    >>> net = MiniGridCNN(space, features_dim=32)
    >>> tuple(net(torch.zeros(2, 3, 7, 7)).shape)
    (2, 32)
"""

from __future__ import annotations

import gymnasium as gym
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn


class MiniGridCNN(BaseFeaturesExtractor):
    """Conv(2×2, 16) → ReLU → Conv(2×2, 32) → ReLU → Conv(2×2, 64) → ReLU → Flatten → Linear → ReLU.

    ``observation_space`` is channels first (SB3 transposes channels-last images before the
    policy sees them); a 7×7 view gives 64 channels of 4×4 positions before the linear layer.
    """

    def __init__(self, observation_space: gym.spaces.Box, features_dim: int = 64) -> None:
        super().__init__(observation_space, features_dim)
        channels = observation_space.shape[0]
        self.cnn = nn.Sequential(
            nn.Conv2d(channels, 16, (2, 2)), nn.ReLU(),
            nn.Conv2d(16, 32, (2, 2)), nn.ReLU(),
            nn.Conv2d(32, 64, (2, 2)), nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            flat = self.cnn(torch.zeros(1, *observation_space.shape)).shape[1]
        self.linear = nn.Sequential(nn.Linear(flat, features_dim), nn.ReLU())

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.linear(self.cnn(observations))
