"""How rli drives a particular kind of network: the parts a :class:`~rli.Policy` is built from.

A :class:`Network` says which modules form the actor (and critic) trunk in forward
order, how to run the actor and critic on a batch of preprocessed observations, and
how to turn raw network outputs into environment actions. Builders for SB3 policies
live in :mod:`rli.sb3_networks`, for plain torch modules in :mod:`rli.torch_networks`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn


@dataclass
class Network:
    """Everything a :class:`~rli.Policy` needs to know about one kind of network."""

    root: nn.Module
    kind: str
    obs_shape: tuple[int, ...]
    actor: list[str]
    run_actor: Callable[[torch.Tensor], Any]
    to_actions: Callable[[np.ndarray], np.ndarray]
    critic: list[str] = field(default_factory=list)
    run_critic: Callable[[torch.Tensor], Any] | None = None
    observation_space: Any = None
    action_space: Any = None
    obs_dtype: np.dtype = field(default_factory=lambda: np.dtype(np.float32))
    recurrent: RecurrentSteps | None = None


@dataclass
class RecurrentSteps:
    """Step-by-step driving of a recurrent policy (hidden state carried by the caller)."""

    initial_state: Callable[[int], Any]
    step: Callable[[torch.Tensor, Any, torch.Tensor], tuple[torch.Tensor, Any]]


def first_tensor(output: Any) -> torch.Tensor:
    """The tensor a module produced (the first element for modules returning tuples, like ``nn.LSTM``)."""
    while isinstance(output, (tuple, list)):
        output = output[0]
    if not isinstance(output, torch.Tensor):
        raise TypeError(f"module produced {type(output).__name__}, not a tensor")
    return output


def leaf_names(module: nn.Module, prefix: str = "") -> list[str]:
    """Dotted names of the leaf modules of ``module`` in registration order (nested ``Sequential`` flattened)."""
    names = []
    for name, child in module.named_children():
        full = f"{prefix}.{name}" if prefix else name
        if any(True for _ in child.children()) and not _is_recurrent(child):
            names.extend(leaf_names(child, full))
        else:
            names.append(full)
    return names


def _is_recurrent(module: nn.Module) -> bool:
    return isinstance(module, nn.RNNBase)
