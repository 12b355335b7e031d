"""rli: interpretability claims about RL policies, as tests.

The package is lazy (PEP 562): ``import rli`` loads only this table; each name imports its
module on first use, so ``import rli`` and ``rli --help`` load none of torch, gymnasium,
matplotlib, scipy or scikit-learn. rli's environments (``rli/FormationFlight-v0``) are
registered with gymnasium when gymnasium loads (:mod:`rli.registration`).

Example:
    >>> import numpy as np, torch.nn as nn, rli
    >>> policy = rli.load_policy(nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 2)))
    >>> acts = rli.capture(policy, np.zeros((8, 4)), layers=[1])
    >>> acts[1].shape
    (8, 16)
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import TYPE_CHECKING, Any

from rli.registration import register_when_imported

#: public name -> the module that defines it (one line per name).
_EXPORTS: dict[str, str] = {
    "AblationCurve": "rli.sweeps",
    "ActivationChunk": "rli.capture",
    "Activations": "rli.capture",
    "AttributionResult": "rli.attribution",
    "CKAResult": "rli.similarity",
    "Comparison": "rli.comparison",
    "DASResult": "rli.das",
    "EvalResult": "rli.rollout",
    "ImageScaleWarning": "rli.policy",
    "Intervention": "rli.interventions",
    "Layer": "rli.policy",
    "LayerProfile": "rli.probes",
    "LayerTable": "rli.policy",
    "ObsNormalizer": "rli.loading.normalization",
    "ObsSet": "rli.observations",
    "PatchReturnResult": "rli.patch_return",
    "PatchSweepResult": "rli.patch_sweep",
    "PolarityResult": "rli.polarity",
    "Policy": "rli.policy",
    "ProbeResult": "rli.probes",
    "RefitComparison": "rli.direction_uncertainty",
    "Report": "rli.protocol",
    "RliError": "rli.errors",
    "SteeringVector": "rli.steering",
    "SubspaceSearch": "rli.sweeps",
    "SweepTable": "rli.runs.table",
    "ablate": "rli.interventions",
    "ablation_curve": "rli.sweeps",
    "attribute": "rli.attribution",
    "build_arch": "rli.loading",
    "capture": "rli.capture",
    "cka": "rli.similarity",
    "compare": "rli.comparison",
    "compare_refit": "rli.direction_uncertainty",
    "das": "rli.das",
    "erase": "rli.interventions",
    "evaluate": "rli.rollout",
    "fit_pca": "rli.subspace",
    "interrogate": "rli.protocol",
    "iter_activations": "rli.capture",
    "keep_subspace": "rli.interventions",
    "load_policy": "rli.loading",
    "mean_ablate": "rli.interventions",
    "minimal_subspace": "rli.sweeps",
    "negate_sensors": "rli.polarity",
    "patch": "rli.interventions",
    "patch_return": "rli.patch_return",
    "patch_sweep": "rli.patch_sweep",
    "polarity_test": "rli.polarity",
    "probe": "rli.probes",
    "probe_layers": "rli.probes",
    "project_subspace": "rli.subspace",
    "reflect": "rli.interventions",
    "routing_label": "rli.probes",
    "steer": "rli.steering",
    "steering_vector": "rli.steering",
    "sweep": "rli.runs.sweep",
}

#: the submodules that are public names themselves (``rli.plots.probe_heatmap``); any other loads on first use too.
_SUBMODULES = ("envs", "plots", "protocol", "runs", "runstats", "sb3", "stats", "wrappers")

__all__ = [*_EXPORTS, *_SUBMODULES, "__version__"]

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time each name is imported on first use
    from rli import envs, plots, protocol, runs, runstats, sb3, stats, wrappers
    from rli.attribution import AttributionResult, attribute
    from rli.capture import ActivationChunk, Activations, capture, iter_activations
    from rli.comparison import Comparison, compare
    from rli.das import DASResult, das
    from rli.direction_uncertainty import RefitComparison, compare_refit
    from rli.errors import RliError
    from rli.interventions import Intervention, ablate, erase, keep_subspace, mean_ablate, patch, reflect
    from rli.loading import build_arch, load_policy
    from rli.loading.normalization import ObsNormalizer
    from rli.observations import ObsSet
    from rli.patch_return import PatchReturnResult, patch_return
    from rli.patch_sweep import PatchSweepResult, patch_sweep
    from rli.polarity import PolarityResult, negate_sensors, polarity_test
    from rli.policy import ImageScaleWarning, Layer, LayerTable, Policy
    from rli.probes import LayerProfile, ProbeResult, probe, probe_layers, routing_label
    from rli.protocol import Report, interrogate
    from rli.rollout import EvalResult, evaluate
    from rli.runs.sweep import sweep
    from rli.runs.table import SweepTable
    from rli.similarity import CKAResult, cka
    from rli.steering import SteeringVector, steer, steering_vector
    from rli.subspace import fit_pca, project_subspace
    from rli.sweeps import AblationCurve, SubspaceSearch, ablation_curve, minimal_subspace

    __version__: str


def __getattr__(name: str) -> Any:
    """The public name ``name``, its module imported on first use (then cached in the package's namespace);
    ``__version__`` from the installed package's metadata; any other submodule (``rli.compat``) imported."""
    if name == "__version__":
        from importlib.metadata import version

        value: Any = version("rli")
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _SUBMODULES or (not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}")):
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """The package's module type: a submodule named like a public function (``rli.capture``, the module of
    :func:`rli.capture`) does not replace the function when it is imported."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
register_when_imported()
