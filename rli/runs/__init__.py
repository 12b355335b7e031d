"""Training runs: analyses over many checkpoints and training seeds, a resumable result store, executors.

Example:
    >>> import rli.runs
    >>> spec = rli.runs.Profile(obs=rli.runs.Obs.rollouts("CartPole-v1", n=200, seed=0, episodes=5), target="obs[2]")
    >>> spec.name, spec == rli.runs.spec_from_dict(spec.to_dict())
    ('profile', True)
"""

from rli.runs.checkpoints import Checkpoint, discover
from rli.runs.executors import FuturesExecutor, InProcess, Processes, RayExecutor
from rli.runs.specs import CKA, Ablation, Custom, Interrogate, Obs, Polarity, Probe, Profile, Spec, spec_from_dict
from rli.runs.store import Store
from rli.runs.sweep import sweep
from rli.runs.table import COLUMNS, Failure, SweepTable, UnitCounts

__all__ = [
    "CKA",
    "COLUMNS",
    "Ablation",
    "Checkpoint",
    "Custom",
    "Failure",
    "FuturesExecutor",
    "InProcess",
    "Interrogate",
    "Obs",
    "Polarity",
    "Probe",
    "Processes",
    "Profile",
    "RayExecutor",
    "Spec",
    "Store",
    "SweepTable",
    "UnitCounts",
    "discover",
    "spec_from_dict",
    "sweep",
]
