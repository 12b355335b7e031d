"""Steering vectors: a direction at one layer, found from contrasting observations, added as an intervention.

:func:`steering_vector` fits a direction at ``layer`` that separates the activations
on ``positive_obs`` from those on ``negative_obs`` (Turner et al.'s activation addition;
the "cheese vector" of a maze policy is one): the difference of their means
(``"mean"``), the first principal direction of the paired differences (``"pca"``,
representation engineering), or a logistic-regression normal (``"logistic"``). The
last two are scaled to the mean difference's length along them, so every method's
vector moves an average negative activation to an average positive one.
:func:`steer` adds ``coeff · vector`` to the layer's output, an :class:`rli.Intervention`
like :func:`rli.ablate` (composable, reusable, bound to the network it was built from).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from rli import checks, recurrent
from rli.capture import capture
from rli.errors import RliError
from rli.interventions import Intervention
from rli.policy import Layer, LayerSpec, Policy
from rli.recurrent import RecurrentState

METHODS = ("mean", "pca", "logistic")


@dataclass(frozen=True)
class SteeringVector:
    """A steering direction at one layer: ``vector`` (width,), how it was fit, its norm and the observations used."""

    vector: np.ndarray
    layer: str
    method: str
    norm: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        """Plain-python form (JSON-able)."""
        return {"layer": self.layer, "method": self.method, "norm": self.norm, "n": self.n,
                "vector": self.vector.tolist()}

    def __repr__(self) -> str:
        return f"SteeringVector({self.method} at {self.layer}, norm {self.norm:.4g}, from {self.n} observations)"


def _where(layer: Layer) -> str:
    return layer.aliases[0] if layer.aliases else layer.name


def _layer(policy: Policy, layer: LayerSpec) -> Layer:
    found = checks.policy(policy).layer(layer)
    if not found.width:
        raise RliError(f"layer {found.name!r} does not run when the policy acts; see policy.layers")
    return found


def steering_vector(policy: Policy, layer: LayerSpec, positive_obs: Any, negative_obs: Any, *,
                    method: str = "mean", recurrent_state: RecurrentState | None = None) -> SteeringVector:
    """The direction at ``layer`` from activations on ``negative_obs`` to those on ``positive_obs``.

    ``method`` is ``"mean"`` (difference of means), ``"pca"`` (first principal direction
    of the paired differences ``positive[i] − negative[i]``, oriented and scaled like the
    mean difference; both sets must have the same length) or ``"logistic"`` (the normal
    of a logistic regression between the two sets, scaled alike). A recurrent policy
    runs both sets from the hidden states ``recurrent_state`` chooses (as in :func:`rli.capture`).

    Example:
        >>> import numpy as np, torch.nn as nn, rli
        >>> from rli.steering import steering_vector
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(2, 2)))
        >>> import torch
        >>> with torch.no_grad():
        ...     _ = policy.module[0].weight.copy_(torch.eye(2)); _ = policy.module[0].bias.zero_()
        >>> v = steering_vector(policy, 0, np.array([[1.0, 0.0], [3.0, 0.0]]), np.zeros((2, 2)))
        >>> v.vector.tolist(), v.norm
        ([2.0, 0.0], 2.0)
    """
    target = _layer(policy, layer)
    if not isinstance(method, str) or method not in METHODS:
        raise RliError(f"method must be one of {', '.join(map(repr, METHODS))}, not {method!r}")
    recurrent.check_mode(recurrent_state)
    for name, obs in (("positive_obs", positive_obs), ("negative_obs", negative_obs)):
        if len(obs) < 2:
            raise RliError(f"{name} needs at least 2 observations, got {len(obs)}")
    if method == "pca" and len(positive_obs) != len(negative_obs):
        raise RliError(f"method='pca' works on paired differences: positive_obs ({len(positive_obs)}) and "
                       f"negative_obs ({len(negative_obs)}) must have the same length; or use method='mean'")
    pos = capture(policy, positive_obs, layers=[target], recurrent_state=recurrent_state)[target.name]
    neg = capture(policy, negative_obs, layers=[target], recurrent_state=recurrent_state)[target.name]
    diff = pos.mean(axis=0, dtype=np.float64) - neg.mean(axis=0, dtype=np.float64)
    if method == "mean":
        vector = diff
    else:
        if method == "pca":
            unit = np.linalg.svd(pos.astype(np.float64) - neg, full_matrices=False)[2][0]  # uncentred, as RepE
        else:
            x = np.concatenate([pos, neg]).astype(np.float64)
            y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
            scale = x.std(axis=0)
            scale[scale == 0] = 1.0
            fit = LogisticRegression(max_iter=2000).fit((x - x.mean(axis=0)) / scale, y)
            unit = fit.coef_[0] / scale
            if not np.any(unit):
                raise RliError("the logistic fit found no direction (the two sets are not separable at this layer "
                               "in any way it can use); try method='mean'")
            unit = unit / np.linalg.norm(unit)
        along = float(diff @ unit)
        vector = along * unit if along != 0 else unit * 0.0
    norm = float(np.linalg.norm(vector))
    if not norm > 0:
        raise RliError(f"the {method} steering vector at {_where(target)} is zero: the two sets have the same "
                       "activations there; choose contrasting observations or another layer")
    return SteeringVector(vector=vector.astype(np.float64), layer=target.name, method=method, norm=norm,
                          n=len(pos) + len(neg))


class _AddEdit:
    """``rows ↦ rows + coeff·v`` (the identity, exactly, for ``coeff == 0``)."""

    def __init__(self, vector: np.ndarray, coeff: float) -> None:
        self._vector, self._coeff = vector, coeff
        self._tensors: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        if self._coeff == 0:
            return rows
        key = (rows.device, rows.dtype)
        if key not in self._tensors:
            self._tensors[key] = torch.as_tensor(self._coeff * self._vector, dtype=rows.dtype, device=rows.device)
        return rows + self._tensors[key]


def steer(policy: Policy, layer: LayerSpec, vector: Any, coeff: float = 1.0) -> Intervention:
    """Add ``coeff · vector`` to ``layer``'s output while active: ``h ← h + coeff·v``.

    ``vector`` is a :class:`SteeringVector` (fit at this layer) or an array of the
    layer's width. ``coeff=0`` is the identity (bit-identical outputs). Like every
    rli intervention it composes (``with steer(...), rli.ablate(...):``), can be entered
    again and again, and goes to :func:`rli.compare` for paired rollouts.

    Example:
        >>> import numpy as np, torch.nn as nn, rli
        >>> from rli.steering import steer
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(2, 3), nn.Tanh()))
        >>> push = steer(policy, 0, [1.0, 0.0, 0.0], coeff=2.0)
        >>> with push:
        ...     moved = rli.capture(policy, np.zeros((1, 2)), layers=[0])[0]
        >>> push.describe(), round(float(moved[0, 0] - rli.capture(policy, np.zeros((1, 2)), layers=[0])[0][0, 0]), 4)
        ('add 2 × a vector of norm 1 at actor.0', 2.0)
    """
    target = _layer(policy, layer)
    coeff = checks.real(coeff, "coeff")
    label = "a vector"
    if isinstance(vector, SteeringVector):
        if vector.layer != target.name:
            raise RliError(f"this steering vector was fit at layer {vector.layer!r} but steer() is asked for "
                           f"{target.name!r}: it lives in another activation space; fit it at this layer")
        label = f"a {vector.method} steering vector"
        vector = vector.vector
    try:
        arr = np.asarray(vector, dtype=np.float64)
    except (TypeError, ValueError):
        raise RliError(f"vector must be a SteeringVector or an array of {target.width} numbers, "
                       f"not {type(vector).__name__}") from None
    if arr.shape != (target.width,):
        raise RliError(f"vector has shape {arr.shape} but layer {_where(target)} has width {target.width}; "
                       f"give ({target.width},)")
    if not np.all(np.isfinite(arr)):
        raise RliError("vector contains NaN or inf; give finite numbers")
    norm = float(np.linalg.norm(arr))
    description = f"add {coeff:g} × {label} of norm {norm:.4g} at {_where(target)}"
    return Intervention(policy, target, "steer", _AddEdit(arr, coeff), description,
                        {"coeff": coeff, "norm": norm})
