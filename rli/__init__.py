"""rli: interpretability claims about RL policies, as tests.

Example:
    >>> import numpy as np, torch.nn as nn, rli
    >>> policy = rli.load_policy(nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 2)))
    >>> acts = rli.capture(policy, np.zeros((8, 4)), layers=[1])
    >>> acts[1].shape
    (8, 16)
"""

from rli import envs, plots, protocol, stats, wrappers  # envs registers rli/FormationFlight-v0 with gymnasium
from rli.capture import ActivationChunk, Activations, capture, iter_activations
from rli.comparison import Comparison, compare
from rli.direction_uncertainty import RefitComparison, compare_refit
from rli.errors import RliError
from rli.interventions import Intervention, ablate, erase, keep_subspace, mean_ablate, patch, reflect
from rli.loading import build_arch, load_policy
from rli.normalization import ObsNormalizer
from rli.observations import ObsSet
from rli.polarity import PolarityResult, negate_sensors, polarity_test
from rli.policy import ImageScaleWarning, Layer, LayerTable, Policy
from rli.probes import LayerProfile, ProbeResult, probe, probe_layers, routing_label
from rli.protocol import Report, interrogate
from rli.rollout import EvalResult, evaluate
from rli.similarity import CKAResult, cka
from rli.subspace import fit_pca, project_subspace
from rli.sweeps import AblationCurve, SubspaceSearch, ablation_curve, minimal_subspace

__version__ = "0.1.0"

__all__ = [
    "AblationCurve",
    "ActivationChunk",
    "Activations",
    "CKAResult",
    "Comparison",
    "EvalResult",
    "ImageScaleWarning",
    "Intervention",
    "Layer",
    "LayerProfile",
    "LayerTable",
    "ObsNormalizer",
    "ObsSet",
    "PolarityResult",
    "RefitComparison",
    "Policy",
    "ProbeResult",
    "Report",
    "RliError",
    "SubspaceSearch",
    "ablate",
    "ablation_curve",
    "build_arch",
    "capture",
    "cka",
    "compare",
    "compare_refit",
    "envs",
    "erase",
    "evaluate",
    "fit_pca",
    "interrogate",
    "iter_activations",
    "keep_subspace",
    "load_policy",
    "mean_ablate",
    "minimal_subspace",
    "negate_sensors",
    "patch",
    "plots",
    "polarity_test",
    "probe",
    "probe_layers",
    "project_subspace",
    "protocol",
    "reflect",
    "routing_label",
    "stats",
    "wrappers",
    "__version__",
]
