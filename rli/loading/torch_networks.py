"""Plain torch modules as policies: the trunk is the order in which layers produce their outputs.

A plain ``nn.Sequential`` of layers is numbered by registration (``layer=5`` is its sixth
leaf); any other module is traced once on zeros, and containers whose output is new
(residual blocks, custom ``forward`` methods) are layers of their own.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from rli.errors import RliError
from rli.network import Network, evaluating, first_tensor, is_leaf, is_plain_stack, leaf_names, trace_forward


def _infer_obs_shape(module: nn.Module) -> tuple[int, ...]:
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            return (sub.in_features,)
        if isinstance(sub, (nn.RNNBase,)):
            return (sub.input_size,)
        if isinstance(sub, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            break
    raise RliError(
        f"cannot tell the observation shape of this {type(module).__name__}: its first layer is not Linear; "
        "pass obs_shape=(...) or observation_space= to rli.load_policy"
    )


def _forward_order(module: nn.Module, obs_shape: tuple[int, ...], dtype: torch.dtype) -> list[str]:
    """The modules whose outputs a forward pass produces, in that order (see :func:`rli.network.trace_forward`).

    Leaves at their first call, and containers whose output is new (a residual block's
    ``x + f(x)``); the root itself only when it is a single layer.
    """
    try:
        with evaluating(module):
            trace = trace_forward(module, lambda: module(torch.zeros((2, *obs_shape), dtype=dtype)))
    except Exception as err:
        raise RliError(
            f"a forward pass of {type(module).__name__} on zeros of shape (2, {', '.join(map(str, obs_shape))}) "
            f"failed ({type(err).__name__}: {err}); pass the right obs_shape= to rli.load_policy"
        ) from err
    order = [name for name in trace.order if name or is_leaf(module)]
    if not order:
        raise RliError(f"no layer of {type(module).__name__} produced a tensor in a forward pass, so rli has nothing "
                       "to address; wrap the network so that its layers return tensors")
    return order


def module_network(
    module: nn.Module,
    *,
    obs_shape: tuple[int, ...] | None = None,
    observation_space: Any = None,
    action_space: Any = None,
    kind: str | None = None,
) -> Network:
    """Describe a plain ``nn.Module`` (``nn.Sequential`` or any module with ``forward(obs)``)."""
    if obs_shape is None and observation_space is not None:
        obs_shape = tuple(observation_space.shape)
    obs_shape = tuple(obs_shape) if obs_shape is not None else _infer_obs_shape(module)
    param = next(iter(module.parameters()), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    if isinstance(module, nn.Sequential) and is_plain_stack(module) and not any(
            isinstance(m, nn.RNNBase) for m in module.modules()):
        actor = leaf_names(module) or [""]  # registration order is forward order: layer=5 is the sixth leaf
    else:
        actor = _forward_order(module, obs_shape, dtype)

    def to_actions(raw: np.ndarray) -> np.ndarray:
        if isinstance(action_space, spaces.Discrete) and raw.ndim == 2 and raw.shape[1] == action_space.n:
            return raw.argmax(axis=1) + action_space.start
        if isinstance(action_space, spaces.Box):
            return np.clip(raw.reshape((-1, *action_space.shape)), action_space.low, action_space.high)
        return raw

    return Network(
        root=module,
        kind=kind or type(module).__name__,
        obs_shape=obs_shape,
        actor=actor,
        run_actor=lambda obs: first_tensor(module(obs)),
        to_actions=to_actions,
        observation_space=observation_space,
        action_space=action_space,
        obs_dtype=np.dtype(torch.empty(0, dtype=dtype).numpy().dtype),
    )
