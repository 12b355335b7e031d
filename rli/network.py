"""How rli drives a particular kind of network: the parts a :class:`~rli.Policy` is built from.

A :class:`Network` says which modules form the actor (and critic) trunk in forward
order, how to run the actor and critic on a batch of preprocessed observations, and
how to turn raw network outputs into environment actions. Builders for SB3 policies
live in :mod:`rli.loading.sb3_networks`, for plain torch modules in :mod:`rli.loading.torch_networks`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
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
    #: ``(values, next state)`` from the state of the LSTM the critic reads (its own, or the actor's when shared),
    #: which starts an episode at ``initial_state``; ``None`` when the critic is not recurrent.
    critic_step: Callable[[torch.Tensor, Any, torch.Tensor], tuple[torch.Tensor, Any]] | None = None


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


_PASS_THROUGH = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
                 nn.FeatureAlphaDropout)


def is_pass_through(module: nn.Module) -> bool:
    """Whether ``module`` returns its input unchanged when acting (``nn.Identity``, dropout, an empty container).

    Example:
        >>> is_pass_through(nn.Sequential()), is_pass_through(nn.Linear(2, 2))
        (True, False)
    """
    if isinstance(module, _PASS_THROUGH):
        return True
    return isinstance(module, (nn.Sequential, nn.ModuleList, nn.ModuleDict)) and len(module) == 0


def is_leaf(module: nn.Module) -> bool:
    """A module rli addresses as one layer: no submodules, or a recurrent layer (whose gates are not modules)."""
    return _is_recurrent(module) or not any(True for _ in module.children())


def is_plain_stack(module: nn.Module) -> bool:
    """Whether every container in ``module`` is an ``nn.Sequential`` (so registration order is forward order
    and each container's output is its last layer's).

    Example:
        >>> is_plain_stack(nn.Sequential(nn.Linear(2, 3), nn.Sequential(nn.Tanh())))
        True
    """
    return all(is_leaf(sub) or isinstance(sub, nn.Sequential) for sub in module.modules())


@contextlib.contextmanager
def evaluating(module: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and ``no_grad`` for a look at ``module`` (every submodule's mode restored after).

    Example:
        >>> import torch
        >>> net = nn.Sequential(nn.BatchNorm1d(2))
        >>> with evaluating(net):
        ...     _ = net(torch.ones(3, 2))
        >>> net.training, float(net[0].running_mean[0])
        (True, 0.0)
    """
    modes = {sub: sub.training for sub in module.modules()}
    try:
        module.eval()
        with torch.no_grad():
            yield module
    finally:
        for sub, mode in modes.items():
            sub.train(mode)


@dataclass
class ForwardTrace:
    """What one forward pass showed about a module tree (see :func:`trace_forward`).

    ``order`` lists, in the order their outputs were produced (first call of each),
    the modules that hold a representation of their own: leaves, and containers whose
    output is a tensor none of their submodules produced (a residual sum ``x + f(x)``,
    a concatenation, a custom ``forward``). A container that returns its last
    layer's output (``nn.Sequential``) is left out: it names that layer again.
    """

    order: list[str]
    inputs: dict[str, int]
    outputs: dict[str, int]


def trace_forward(root: nn.Module, run: Callable[[], Any], prefix: str = "") -> ForwardTrace:
    """Run ``run()`` once with a hook on every module of ``root`` under ``prefix`` and record the forward order.

    Tensors are compared by identity (``id``), never by value, so an in-place
    activation (whose output is its input tensor) is still seen as the layer that
    produced it. Hooks are removed whatever ``run`` does.

    Example:
        >>> import torch
        >>> class Block(nn.Module):
        ...     def __init__(self):
        ...         super().__init__(); self.fc = nn.Linear(3, 3)
        ...     def forward(self, x):
        ...         return x + torch.relu(self.fc(x))
        >>> net = nn.Sequential(Block(), nn.Linear(3, 1))
        >>> trace_forward(net, lambda: net(torch.zeros(2, 3))).order
        ['0.fc', '0', '1']
    """
    start = root.get_submodule(prefix) if prefix else root
    base = f"{prefix}." if prefix else ""
    named = [(base + name if name else prefix, module) for name, module in start.named_modules()]
    produced: list[tuple[str, Any]] = []
    inputs: dict[str, int] = {}
    keep: list[Any] = []  # holds the traced tensors alive so that their ids stay unique during the run

    def make_hooks(name: str) -> tuple[Any, Any]:
        def before(_module: nn.Module, args: Any) -> None:
            if name not in inputs and args:
                try:
                    tensor = first_tensor(args)
                except TypeError:
                    return
                keep.append(tensor)
                inputs[name] = id(tensor)

        def after(_module: nn.Module, _args: Any, output: Any) -> None:
            if any(done == name for done, _ in produced):
                return
            try:
                tensor = first_tensor(output)
            except TypeError:
                return
            keep.append(tensor)
            produced.append((name, id(tensor)))
        return before, after

    handles = []
    try:
        for name, module in named:
            before, after = make_hooks(name)
            handles.append(module.register_forward_pre_hook(before))
            handles.append(module.register_forward_hook(after))
        run()
    finally:
        for handle in handles:
            handle.remove()
    outputs = dict(produced)
    modules = dict(named)
    order = []
    for name, ident in produced:
        module = modules[name]
        if is_leaf(module):
            order.append(name)
            continue
        inner = f"{name}." if name else ""
        if not any(other.startswith(inner) and other != name and out == ident for other, out in produced):
            order.append(name)
    return ForwardTrace(order=order, inputs=inputs, outputs=outputs)
