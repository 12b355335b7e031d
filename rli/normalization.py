"""Observation standardisation applied before the network (SB3 ``VecNormalize`` and friends)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rli.errors import RliError


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
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or \
                    not value >= 0 or not np.isfinite(value):
                raise RliError(f"normaliser {name} must be a finite non-negative number, got {value!r}")
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
