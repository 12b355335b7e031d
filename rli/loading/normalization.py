"""Observation standardisation applied before the network: :class:`ObsNormalizer`, SB3 ``VecNormalize`` pickles
read without running code from them, and the rule for which pickle belongs to which checkpoint.
"""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rli import checks
from rli.errors import RliError
from rli.loading.safe_pickle import PickledRecord, UnsafePickleError, safe_loads

#: SB3's ``CheckpointCallback`` names: ``<prefix>_<N>_steps.zip`` beside ``<prefix>_vecnormalize_<N>_steps.pkl``.
_CALLBACK_STEM = re.compile(r"^(?P<prefix>.+)_(?P<step>\d+)_steps$")


@dataclass(frozen=True)
class ObsNormalizer:
    """``clip((obs - mean) / sqrt(var + epsilon), -clip, clip)``, exactly as SB3's ``VecNormalize``.

    Policies trained behind a running mean/variance standardiser only make sense on
    standardised inputs, so a :class:`~rli.Policy` applies its normaliser before the
    network: probes see what the actor sees.

    Example:
        >>> norm = ObsNormalizer(mean=[1.0, 0.0], var=[4.0, 1.0], clip=5.0)
        >>> norm([[3.0, 2.0]]).round(3).tolist()
        [[1.0, 2.0]]
    """

    mean: np.ndarray
    var: np.ndarray
    clip: float = 10.0
    epsilon: float = 1e-8
    source: str = field(default="given", compare=False)

    def __post_init__(self) -> None:
        try:
            mean = np.asarray(self.mean, dtype=np.float64)
            var = np.asarray(self.var, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise RliError(f"normaliser mean and var must be arrays of numbers ({err})") from None
        for name in ("clip", "epsilon"):
            value = getattr(self, name)
            checks.real(value, f"normaliser {name}", minimum=0.0)
        if mean.shape != var.shape:
            raise RliError(
                f"normaliser mean has shape {mean.shape} but var has shape {var.shape}; "
                "they must match the observation shape"
            )
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(var))) or np.any(var < 0):
            raise RliError("normaliser statistics contain NaN/inf or negative variances; the checkpoint is corrupt")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "var", var)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Standardise a batch of observations (float32 result, like SB3)."""
        scaled = (np.asarray(obs, dtype=np.float64) - self.mean) / np.sqrt(self.var + self.epsilon)
        return np.clip(scaled, -self.clip, self.clip).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """Plain-python form (for reports)."""
        return {"source": self.source, "clip": self.clip, "epsilon": self.epsilon, "dim": int(self.mean.size)}

    @classmethod
    def from_vecnormalize(cls, vec_normalize: Any, source: str = "VecNormalize") -> ObsNormalizer | None:
        """Build from a ``VecNormalize`` (object or unpickled state); ``None`` when it does not normalise observations."""
        state = vec_normalize if isinstance(vec_normalize, dict) else vars(vec_normalize)
        if not state.get("norm_obs", True):
            return None
        rms = state.get("obs_rms")
        if isinstance(rms, dict) and "mean" not in rms:
            raise RliError(
                "VecNormalize with dict observations is not supported: rli policies take array observations"
            )
        rms_state = rms if isinstance(rms, dict) else vars(rms)
        return cls(
            mean=rms_state["mean"],
            var=rms_state["var"],
            clip=float(state.get("clip_obs", 10.0)),
            epsilon=float(state.get("epsilon", 1e-8)),
            source=source,
        )


def read_vecnormalize(path: Path) -> ObsNormalizer | None:
    """Observation statistics from a ``VecNormalize.save`` pickle, read without running code from it
    (``None`` when it does not normalise observations); anything but VecNormalize statistics is refused."""
    replacements = {
        ("stable_baselines3.common.vec_env.vec_normalize", "VecNormalize"): PickledRecord,
        ("stable_baselines3.common.running_mean_std", "RunningMeanStd"): PickledRecord,
    }
    try:
        record = safe_loads(path.read_bytes(), replacements)
    except FileNotFoundError:
        raise RliError(f"no such VecNormalize file: {path}") from None
    except UnsafePickleError as err:
        raise RliError(f"{path} refers to {err.qualified_name}, which is not a VecNormalize statistic; "
                       "rli will not unpickle it") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise RliError(f"{path} is not a readable VecNormalize pickle ({err})") from None
    if not isinstance(record, PickledRecord) or not isinstance(record.state.get("obs_rms"), PickledRecord):
        raise RliError(f"{path} does not hold VecNormalize statistics")
    state = dict(record.state, obs_rms=record.state["obs_rms"].state)
    return ObsNormalizer.from_vecnormalize(state, source=f"VecNormalize ({path.name})")


def vecnormalize_beside(checkpoint: str | Path) -> Path | None:
    """The ``VecNormalize`` pickle saved with ``checkpoint``, found by its name; ``None`` when there is none.

    Names that belong to this checkpoint: ``<stem>_vecnormalize.pkl``, ``<stem>.vecnormalize.pkl``,
    ``<stem>/vecnormalize.pkl`` and, for SB3's ``CheckpointCallback(save_vecnormalize=True)`` files
    ``<prefix>_<N>_steps.zip``, ``<prefix>_vecnormalize_<N>_steps.pkl``. Two of those at once is an
    :class:`~rli.RliError` naming both; with none of them, a ``vecnormalize.pkl`` in the same directory
    (one file for the whole run) is the answer.

    Example:
        >>> import pathlib, tempfile
        >>> run = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (run / "rl_model_vecnormalize_1000_steps.pkl").write_bytes(b"")
        >>> vecnormalize_beside(run / "rl_model_1000_steps.zip").name
        'rl_model_vecnormalize_1000_steps.pkl'
    """
    path = Path(checkpoint)
    names = [path.with_name(f"{path.stem}_vecnormalize.pkl"), path.with_name(f"{path.stem}.vecnormalize.pkl"),
             path.with_suffix("") / "vecnormalize.pkl"]
    match = _CALLBACK_STEM.match(path.stem)
    if match:
        names.append(path.with_name(f"{match['prefix']}_vecnormalize_{match['step']}_steps.pkl"))
    found = [name for name in names if name.is_file()]
    if len(found) > 1:
        raise RliError(f"{path.name} has {len(found)} VecNormalize files beside it ({' and '.join(map(str, found))}); "
                       "pass normalizer= the one saved with this checkpoint (or normalizer=False), or remove the other")
    if found:
        return found[0]
    shared = path.with_name("vecnormalize.pkl")
    return shared if shared.is_file() else None
