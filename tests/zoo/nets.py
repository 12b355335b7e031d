"""A custom torch policy that is not a plain ``nn.Sequential``: a residual block the action head reads.

Example:
    >>> import torch
    >>> from tests.zoo.nets import ResidualPolicy
    >>> ResidualPolicy()(torch.zeros(5, 4)).shape
    torch.Size([5, 2])
"""

from __future__ import annotations

import torch
from torch import nn


class ResidualBlock(nn.Module):
    """``x + relu(fc(x))``: its output is the sum, not the output of any of its children."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.relu(self.fc(x))


class ResidualPolicy(nn.Module):
    """``obs → Linear → Tanh → ResidualBlock → Linear → action logits`` (CartPole: 4 inputs, 2 actions)."""

    def __init__(self, obs_dim: int = 4, width: int = 16, n_actions: int = 2) -> None:
        super().__init__()
        self.fc_in = nn.Linear(obs_dim, width)
        self.act = nn.Tanh()
        self.block = ResidualBlock(width)
        self.head = nn.Linear(width, n_actions)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.act(self.fc_in(obs))))
