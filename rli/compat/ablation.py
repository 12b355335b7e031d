"""rl_interrogate's ``AblationHook`` (``rl_interrogate.ablation``) as an rli intervention.

``h ← h − h W Wᵀ + α h W Wᵀ`` on the output of ``model[layer_idx]``, active from
construction until :meth:`AblationHook.remove`. With orthonormal columns (a PCA basis, a
single direction — which is normalised) this is :func:`rli.ablate`, and that is what
runs. With a ``W`` whose columns are not orthonormal ``W Wᵀ`` is not a projector; the
reference applies the formula anyway, and so does this class (same numbers), through an
:class:`rli.Intervention` that says so in its description.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from rli.compat.engine import engine
from rli.errors import RliError
from rli.interventions import Intervention, ablate

__all__ = ["AblationHook"]

_ORTHONORMAL_ATOL = 1e-5


def _reference_basis(basis: Any) -> np.ndarray:
    """``basis`` as the reference holds it: float32 (d, k); a single direction scaled to unit norm unless ~0."""
    arr = np.asarray(basis, dtype=np.float32)
    if arr.ndim == 1:
        norm = float(np.linalg.norm(arr))
        if norm > 1e-9:
            arr = arr / norm
        arr = arr[:, None]
    return arr


def _is_orthonormal(basis: np.ndarray) -> bool:
    if basis.shape[1] > basis.shape[0]:
        return False
    gram = basis.T.astype(np.float64) @ basis.astype(np.float64)
    return bool(np.allclose(gram, np.eye(basis.shape[1]), atol=_ORTHONORMAL_ATOL))


class _FormulaEdit:
    """``rows − rows W Wᵀ + α rows W Wᵀ`` computed as the reference does (W cached per device and dtype)."""

    def __init__(self, basis: np.ndarray, alpha: float) -> None:
        self._basis, self._alpha = basis, alpha
        self._tensors: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        key = (rows.device, rows.dtype)
        if key not in self._tensors:
            self._tensors[key] = torch.as_tensor(self._basis, dtype=rows.dtype, device=rows.device)
        w = self._tensors[key]
        proj = rows @ w @ w.T
        return rows - proj + self._alpha * proj


class AblationHook:
    """Scale the component of ``model[layer_idx]``'s output in span(W) by ``alpha`` (0 removes it, 1 keeps it).

    Same signature and behaviour as ``rl_interrogate.AblationHook``: the hook is active as
    soon as the object exists (``alpha=0.0`` by default) and stays until :meth:`remove`;
    ``W`` is (d, k) with orthonormal columns, or a direction (d,) given as ``W`` or
    ``direction=`` (normalised). :meth:`apply` runs a block at another alpha and then puts
    the hook back at the constructor's alpha — even after :meth:`remove`, as the reference
    does. It acts on every forward pass of ``model``, ``rli.capture`` and ``policy.act``
    included.

    Rigorous equivalent: ``with rli.ablate(policy, layer, direction, alpha):`` inside
    ``rli.compare(policy, env, intervention, episodes, seed)`` — paired episodes, CI and p-value of the
    drop; ``rli.mean_ablate`` keeps the layer's mean and ``rli.erase`` (LEACE) removes all linear
    information about a concept, not just one direction.

    Example:
        >>> import numpy as np, torch, torch.nn as nn
        >>> from rli.compat import AblationHook
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
        >>> x = torch.ones(5, 3)
        >>> hook = AblationHook(net, 1, direction=np.array([1.0, 0.0, 0.0, 0.0]))
        >>> float(net[:2](x)[:, 0].detach().abs().max())
        0.0
        >>> with hook.apply(alpha=1.0):
        ...     kept = net[:2](x)[:, 0].detach()
        >>> bool(kept.abs().min() > 0)
        True
        >>> hook.remove()
    """

    def __init__(self, model: nn.Module, layer_idx: int, W: np.ndarray | None = None,  # noqa: N803 (reference API)
                 alpha: float = 0.0, *, direction: np.ndarray | None = None) -> None:
        given = W if W is not None else direction
        if given is None:
            raise ValueError("Provide either W (subspace basis) or direction (1-D vector).")
        self._model, self._layer_idx, self._alpha = model, layer_idx, alpha
        self._policy, self._layer = engine(model, layer_idx)
        self._W = _reference_basis(given)
        if self._W.ndim != 2 or self._W.shape[0] != self._layer.width:
            raise RliError(f"W has shape {np.shape(given)} but model[{layer_idx}] outputs {self._layer.width} values per "
                           f"sample; give a direction ({self._layer.width},) or a basis ({self._layer.width}, k)")
        self._orthonormal = _is_orthonormal(self._W)
        self._intervention: Intervention | None = None
        self._attach()

    def _attach(self) -> None:
        alpha = float(self._alpha)
        if self._orthonormal:
            intervention = ablate(self._policy, self._layer, self._W, alpha=alpha)
        else:
            where = self._layer.aliases[0] if self._layer.aliases else self._layer.name
            intervention = Intervention(
                self._policy, self._layer, "ablate", _FormulaEdit(self._W, alpha),
                f"scale h W Wᵀ by {alpha:g} at {where} with a {self._W.shape[0]}×{self._W.shape[1]} W whose columns "
                "are not orthonormal (rl_interrogate's formula; not a projection)",
                {"alpha": alpha, "rank": self._W.shape[1], "directions": "given, not orthonormal"})
        intervention.__enter__()
        self._intervention = intervention

    def _detach(self) -> None:
        if self._intervention is not None:
            self._intervention.__exit__(None, None, None)
            self._intervention = None

    def remove(self) -> None:
        """Take the hook off: forward passes are unchanged again (calling it twice is harmless)."""
        self._detach()

    @contextmanager
    def apply(self, alpha: float) -> Iterator[None]:
        """Inside the block the hook scales by ``alpha``; after it, the hook is back at the constructor's alpha."""
        self._detach()
        previous, self._alpha = self._alpha, alpha
        try:
            self._attach()
            yield
        finally:
            self._detach()
            self._alpha = previous
            self._attach()
