"""Architectures for bare weights: :func:`build_arch` turns an ``arch=`` spec into an ``nn.Module``."""

from __future__ import annotations

import copy
import inspect
import itertools
from collections.abc import Mapping
from typing import Any

from torch import nn

from rli.errors import RliError

#: what ``arch=`` accepts: an ``nn.Module``, a factory returning one, or ``{"mlp": sizes, "activation": name}``.
ArchSpec = Any
_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU, "silu": nn.SiLU,
                "leaky_relu": nn.LeakyReLU, "sigmoid": nn.Sigmoid, "identity": nn.Identity}


def build_arch(arch: ArchSpec) -> nn.Module:
    """An ``nn.Module`` from an architecture spec: a module (copied), a class or factory called without
    arguments (a custom residual network, say), or ``{"mlp": sizes, "activation": name}``.

    Example:
        >>> build_arch({"mlp": [28, 256, 4], "activation": "elu"})
        Sequential(
          (0): Linear(in_features=28, out_features=256, bias=True)
          (1): ELU(alpha=1.0)
          (2): Linear(in_features=256, out_features=4, bias=True)
        )
    """
    if isinstance(arch, nn.Module):
        return copy.deepcopy(arch)
    if isinstance(arch, Mapping):
        sizes = arch.get("mlp")
        if not isinstance(sizes, (list, tuple)) or len(sizes) < 2 or not all(
                isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes):
            raise RliError(f"arch['mlp'] must list at least two positive layer sizes, got {sizes!r}")
        activation = str(arch.get("activation", "tanh")).lower()
        output = arch.get("output_activation")
        if activation not in _ACTIVATIONS or (output is not None and str(output).lower() not in _ACTIVATIONS):
            raise RliError(f"unknown activation in arch; choose from {', '.join(sorted(_ACTIVATIONS))}")
        layers: list[nn.Module] = []
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
            try:
                layers.append(nn.Linear(fan_in, fan_out))
            except (RuntimeError, MemoryError):
                raise RliError(f"arch['mlp'] = {sizes} needs a {fan_out}×{fan_in} weight matrix, more memory than "
                               "there is; check the layer sizes") from None
            if i < len(sizes) - 2:
                layers.append(_ACTIVATIONS[activation]())
        if output is not None:
            layers.append(_ACTIVATIONS[str(output).lower()]())
        return nn.Sequential(*layers)
    if isinstance(arch, str):
        raise RliError(f"arch={arch!r} is a name, not an architecture; in Python pass the class or an instance "
                       "(arch=MyNet, arch=MyNet(...)); on the command line --arch module:Class with --trust imports it")
    if callable(arch):
        name = getattr(arch, "__name__", type(arch).__name__)
        try:
            inspect.signature(arch).bind()
        except TypeError as err:
            raise RliError(f"arch {name} cannot be built without arguments ({err}); pass an instance "
                           f"or a factory such as lambda: {name}(...)") from None
        except ValueError:
            pass  # no signature to check (a builtin): call it and let it say what it needs
        module = arch()  # an exception from the user's own code reaches them unchanged
        if not isinstance(module, nn.Module):
            raise RliError(f"the arch factory returned {type(module).__name__}, not an nn.Module")
        return module
    raise RliError(f"arch must be an nn.Module, a factory or an mlp spec dict, not {type(arch).__name__}")
