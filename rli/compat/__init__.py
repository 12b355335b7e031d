"""rl_interrogate 0.1.0's public API on rli's engine: migrate a script by changing one import.

``import rli.compat as rl_interrogate`` (or ``from rli.compat.probing import LinearProbe``,
and so on for ``ablation``, ``patching``, ``polarity``, ``pca_utils``, ``visualization``
and ``env_wrappers``) gives the reference toolkit's names with the same signatures,
defaults, return types and numbers: on the same network, data and seed every probe
returns the reference's R² (one seeded 80/20 split, ``Ridge(alpha=1)`` / ``LassoCV`` /
``MLPRegressor(128)``). Activations come from :func:`rli.capture`, ablations run as
:func:`rli.ablate` interventions. Nothing here warns at run time; every public docstring
names the rigorous rli call ("Rigorous equivalent: ..."), and docs/migration.md maps
every reference call to it and says what the rli version adds.

Example:
    >>> import numpy as np, torch, torch.nn as nn
    >>> import rli.compat as rl_interrogate
    >>> _ = torch.manual_seed(0)
    >>> net = nn.Sequential(nn.Linear(4, 16), nn.ELU(), nn.Linear(16, 2))
    >>> obs = np.random.default_rng(0).normal(size=(400, 4)).astype(np.float32)
    >>> probe = rl_interrogate.LinearProbe().fit(net, 1, obs, obs[:, 2])
    >>> probe.score() > 0.95
    True
"""

from rli.compat.ablation import AblationHook
from rli.compat.env_wrappers import NoisyObservationWrapper
from rli.compat.patching import ActivationPatcher
from rli.compat.pca_utils import fit_pca, project_subspace
from rli.compat.polarity import PolarityTest
from rli.compat.probing import LassoProbe, LinearProbe, MLPProbe, UntrainedBaseline
from rli.compat.visualization import plot_ablation_curve, plot_pca_scatter, plot_probe_heatmap

__all__ = [  # noqa: RUF022 — the reference toolkit's order, which test_compat checks name for name
    "LinearProbe",
    "MLPProbe",
    "LassoProbe",
    "UntrainedBaseline",
    "AblationHook",
    "ActivationPatcher",
    "PolarityTest",
    "fit_pca",
    "project_subspace",
    "plot_probe_heatmap",
    "plot_ablation_curve",
    "plot_pca_scatter",
    "NoisyObservationWrapper",
]
