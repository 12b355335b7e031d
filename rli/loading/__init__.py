"""Loading policies: every form a policy arrives in → :class:`~rli.Policy`, without unpickling untrusted code.

One module per job: :mod:`~rli.loading.dispatch` (:func:`load_policy`, choosing a reader by the file's
kind), :mod:`~rli.loading.sb3` (SB3 zips), :mod:`~rli.loading.torch_files` (``torch.save``,
safetensors and TorchScript files), :mod:`~rli.loading.arch` (``arch=`` specs),
:mod:`~rli.loading.torchscript` (TorchScript graphs as eager modules), :mod:`~rli.loading.safe_pickle`
(allow-list unpickling), :mod:`~rli.loading.normalization` (observation statistics and their file names),
:mod:`~rli.loading.sb3_networks` and :mod:`~rli.loading.torch_networks` (the trunk of a network, in order).

The package is lazy like :mod:`rli` (PEP 562): a name imports its module on first use, so that
:mod:`rli.policy` can use :class:`ObsNormalizer` without importing the loaders (which use :class:`~rli.Policy`).

Example:
    >>> import torch.nn as nn
    >>> from rli.loading import load_policy
    >>> load_policy(nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))).obs_shape
    (3,)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "ArchSpec": "rli.loading.arch",
    "ObsNormalizer": "rli.loading.normalization",
    "build_arch": "rli.loading.arch",
    "from_script": "rli.loading.torchscript",
    "load_policy": "rli.loading.dispatch",
    "module_network": "rli.loading.torch_networks",
    "read_vecnormalize": "rli.loading.normalization",
    "safe_loads": "rli.loading.safe_pickle",
    "sb3_network": "rli.loading.sb3_networks",
    "vecnormalize_beside": "rli.loading.normalization",
}

__all__ = ["ArchSpec", "ObsNormalizer", "build_arch", "from_script", "load_policy", "module_network",
           "read_vecnormalize", "safe_loads", "sb3_network", "vecnormalize_beside"]  # the table's names

if TYPE_CHECKING:
    from rli.loading.arch import ArchSpec, build_arch
    from rli.loading.dispatch import load_policy
    from rli.loading.normalization import ObsNormalizer, read_vecnormalize, vecnormalize_beside
    from rli.loading.safe_pickle import safe_loads
    from rli.loading.sb3_networks import sb3_network
    from rli.loading.torch_networks import module_network
    from rli.loading.torchscript import from_script


def __getattr__(name: str) -> Any:
    """The public name ``name``, its module imported on first use (then cached in the package's namespace)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
