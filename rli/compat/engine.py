"""The compat layer's one way onto rli's engine: a reference model and layer index seen as a Policy and Layer.

Example:
    >>> import numpy as np, torch.nn as nn
    >>> from rli.compat.engine import extract_activations
    >>> model = nn.Sequential(nn.Linear(3, 5), nn.Tanh())
    >>> extract_activations(model, 1, np.zeros((4, 3))).shape
    (4, 5)
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

import numpy as np
import torch
from torch import nn

from rli.capture import capture
from rli.loading import load_policy
from rli.policy import Layer, Policy

# True while rli measures a model's layers (a forward pass on zeros): active ActivationPatchers stand
# aside then, since their output has the counterfactual's batch size, not the batch that was run.
measuring_layers: ContextVar[bool] = ContextVar("measuring_layers", default=False)


def engine(model: nn.Module, layer_idx: int, obs_shape: tuple[int, ...] | None = None) -> tuple[Policy, Layer]:
    """rli's view of ``model`` and of the module ``model[layer_idx]`` (found by identity, so nesting does not matter).

    For a flat ``nn.Sequential`` this layer is rli's actor-trunk index ``layer_idx``.
    """
    target = model[layer_idx]  # type: ignore[index]  # the reference API indexes its model (a Sequential)
    name = next(name for name, module in model.named_modules() if module is target)
    token = measuring_layers.set(True)
    try:
        policy = load_policy(model, obs_shape=obs_shape)
        return policy, policy.layer(name)
    finally:
        measuring_layers.reset(token)


def extract_activations(model: nn.Module, layer_idx: int, obs_dataset: Any) -> np.ndarray:
    """Activations (n, width) of ``model[layer_idx]`` for observations given as a numpy array or torch tensor.

    Observations are converted to float32 first, as the reference does.
    """
    obs: torch.Tensor | np.ndarray
    if isinstance(obs_dataset, torch.Tensor):
        obs = obs_dataset.detach().float()
    else:
        obs = np.asarray(obs_dataset, dtype=np.float32)
    policy, layer = engine(model, layer_idx, obs_shape=tuple(obs.shape[1:]))
    return capture(policy, obs, [layer])[layer.name]
