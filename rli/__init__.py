"""rli: interpretability claims about RL policies, as tests.

Example:
    >>> import numpy as np, torch.nn as nn, rli
    >>> policy = rli.load_policy(nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 2)))
    >>> acts = rli.capture(policy, np.zeros((8, 4)), layers=[1])
    >>> acts[1].shape
    (8, 16)
"""

from rli.capture import ActivationChunk, Activations, capture, iter_activations
from rli.errors import RliError
from rli.loading import build_arch, load_policy
from rli.normalization import ObsNormalizer
from rli.observations import ObsSet
from rli.policy import Layer, LayerTable, Policy

__version__ = "0.1.0"

__all__ = [
    "ActivationChunk",
    "Activations",
    "Layer",
    "LayerTable",
    "ObsNormalizer",
    "ObsSet",
    "Policy",
    "RliError",
    "build_arch",
    "capture",
    "iter_activations",
    "load_policy",
    "__version__",
]
