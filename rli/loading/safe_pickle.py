"""Unpickling restricted to an allow-list of inert classes.

SB3 stores a model's spaces and policy settings as cloudpickle payloads, and
``VecNormalize`` statistics as a plain pickle. Unpickling either can run arbitrary
code, so rli reads them with :func:`safe_loads`, which only lets through classes
that build data (numpy arrays, gymnasium spaces, torch layers, SB3 policy classes)
and refuses everything else with an :class:`UnsafePickleError` naming the culprit.
"""

from __future__ import annotations

import importlib
import io
import pickle
from typing import Any

_ALLOWED_GLOBALS = {
    ("builtins", name)
    for name in ("dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "bool", "str", "bytes",
                 "slice", "range", "object", "bytearray")
} | {
    ("collections", "OrderedDict"),
    ("copyreg", "_reconstructor"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy.random._pickle", "__generator_ctor"),
    ("numpy.random._pickle", "__bit_generator_ctor"),
    ("numpy.random._pickle", "__randomstate_ctor"),
}
_ALLOWED_MODULE_PREFIXES = ("numpy.dtypes", "numpy.random._pcg64", "numpy.random._mt19937", "numpy.random._philox",
                            "numpy.random._sfc64", "numpy.random.bit_generator", "numpy.random._generator")


class UnsafePickleError(pickle.UnpicklingError):
    """The payload refers to something outside the allow-list."""

    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        self.qualified_name = f"{module}.{name}"


def _is_inert_class(module: str, obj: Any) -> bool:
    """Classes whose construction only builds data or network layers."""
    if not isinstance(obj, type):
        return False
    import gymnasium
    import torch

    if module.startswith("gymnasium.spaces") and issubclass(obj, gymnasium.spaces.Space):
        return True
    if module.startswith("torch.nn.modules") and issubclass(obj, torch.nn.Module):
        return True
    if module.startswith("rli.envs.") and issubclass(obj, torch.nn.Module):  # rli's benchmark nets (MiniGridCNN)
        return True
    if module.startswith("torch.optim") and issubclass(obj, torch.optim.Optimizer):
        return True
    if module.startswith(("stable_baselines3.", "sb3_contrib.")):
        if issubclass(obj, torch.nn.Module):
            return True
        return module == "stable_baselines3.common.utils" and obj.__name__.endswith("Schedule")
    return False


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, replacements: dict[tuple[str, str], Any]) -> None:
        super().__init__(file)
        self._replacements = replacements

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._replacements:
            return self._replacements[(module, name)]
        if (module, name) in _ALLOWED_GLOBALS or module.startswith(_ALLOWED_MODULE_PREFIXES):
            return super().find_class(module, name)
        if module.startswith(("gymnasium.spaces", "torch.nn.modules", "torch.optim", "stable_baselines3.",
                              "sb3_contrib.", "rli.envs.")):
            try:
                obj = getattr(importlib.import_module(module), name)
            except (ImportError, AttributeError):
                raise UnsafePickleError(module, name) from None
            if _is_inert_class(module, obj):
                return obj
        raise UnsafePickleError(module, name)


def safe_loads(data: bytes, replacements: dict[tuple[str, str], Any] | None = None) -> Any:
    """Unpickle ``data`` allowing only inert classes; ``replacements`` maps (module, name) to stand-ins.

    Example:
        >>> import pickle
        >>> safe_loads(pickle.dumps({"a": [1, 2.5]}))
        {'a': [1, 2.5]}
        >>> import os
        >>> safe_loads(pickle.dumps(os.system))
        Traceback (most recent call last):
        ...
        rli.loading.safe_pickle.UnsafePickleError: posix.system
    """
    return _RestrictedUnpickler(io.BytesIO(data), replacements or {}).load()


class PickledRecord:
    """Stand-in for a class whose pickled state is wanted as a plain ``dict`` (``VecNormalize``, ``RunningMeanStd``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state: dict[str, Any] = {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.state = dict(state)
