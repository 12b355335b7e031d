"""Interventions: reusable context managers that rewrite one layer's output while they are active.

Each builder validates everything when it is called (layer, width, NaN, zero or
dependent directions) and returns an :class:`Intervention`; its forward hook exists
only inside ``with``. With ``h`` one sample's output flattened to the layer's width
and ``P`` the orthogonal projector on the given direction or subspace:

=====================================  ==============================================
``ablate(policy, layer, d, alpha)``    ``h ← h − P h + α P h``
``reflect(policy, layer, w)``          ``h ← h − 2 P h`` (Householder for one direction)
``mean_ablate(policy, layer, d, obs)`` ``h ← h − P (h − μ)``, μ the mean activation on ``obs``
``keep_subspace(policy, layer, d)``    ``h ← P h``; with ``reference_obs``: ``h ← μ + P (h − μ)``
``erase(policy, layer, obs, concept)`` LEACE: ``h ← h − W⁺ Q W (h − μ)`` (see :mod:`rli.erasure`)
``patch(policy, layer, source_obs)``   ``h_i ←`` the layer's output on ``source_obs[i]``
=====================================  ==============================================

Directions are arrays (d,) or (d, k) (orthonormalised), ``"pcK"`` (the K-th principal
direction) or ``"pcI-J"`` (principal directions I to J) of the layer's activations on
the observations given, or any fitted probe (an object with ``.direction``).

``with a, b:`` composes interventions (on the same layer ``a`` edits first); an
intervention can be entered again and again, but not while it is already active.
Only the tensor the layer passes on is edited: an ``nn.LSTM`` keeps its output
structure ``(output, (h, c))`` and the carried state ``(h, c)`` is left as computed,
so a recurrent policy's memory is not edited, only what its later layers read.
Parameters are never touched. Everything an edit needs (bases, means, LEACE factors,
source activations) is computed once, when the intervention is built, from the policy
as it is then (interventions active at that moment apply; in ``with a, b:`` both are
built first, so neither sees the other). Each forward pass then costs one ``addmm``
through the smaller of the edited subspace and its complement.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from rli import checks
from rli.capture import capture
from rli.erasure import concept_matrix, fit_leace
from rli.errors import RliError
from rli.network import first_tensor
from rli.policy import Layer, LayerSpec, Policy
from rli.subspace import complement, fit_pca, orthonormalize

_PCS = re.compile(r"pc(\d+)(?:-(\d+))?", re.IGNORECASE)
_Edit = Callable[[torch.Tensor], torch.Tensor]


class Intervention:
    """One layer edit, applied while the object is active as a context manager.

    Built by :func:`ablate`, :func:`mean_ablate`, :func:`keep_subspace`,
    :func:`reflect`, :func:`erase` and :func:`patch`. ``describe()`` says what it
    does, ``to_dict()`` gives the same as plain data for reports.

    Example:
        >>> import numpy as np, torch.nn as nn, rli
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)))
        >>> cut = rli.ablate(policy, 1, [1.0, 0.0, 0.0, 0.0])
        >>> cut
        Intervention(ablate: zero 1 direction at actor.1)
        >>> with cut:
        ...     acts = rli.capture(policy, np.ones((5, 3)), layers=[1])[1]
        >>> bool(np.all(acts[:, 0] == 0)), cut.active
        (True, False)
    """

    def __init__(self, policy: Policy, layer: Layer, kind: str, edit: _Edit, description: str,
                 details: dict[str, Any]) -> None:
        self.policy = policy
        self.layer = layer
        self.kind = kind
        self._edit = edit
        self._description = description
        self._details = details
        self._sample_shape = torch.Size(layer.shape)
        self._handle: Any = None

    @property
    def active(self) -> bool:
        """Whether the hook is in place (inside a ``with`` block)."""
        return self._handle is not None

    def describe(self) -> str:
        """One line saying what the intervention does, e.g. ``"zero 1 direction at actor.5 (pc1)"``."""
        return self._description

    def to_dict(self) -> dict[str, Any]:
        """Plain-python form (for reports and JSON)."""
        return {"kind": self.kind, "layer": _where(self.layer), "module": self.layer.name,
                "description": self._description, **self._details}

    def __repr__(self) -> str:
        return f"Intervention({self.kind}: {self._description}{', active' if self.active else ''})"

    def __str__(self) -> str:
        return self._description

    def __enter__(self) -> Intervention:
        if self._handle is not None:
            raise RliError(f"this intervention ({self._description}) is already active; exit its `with` block "
                           "before entering it again, or build a second one")
        self._handle = self.policy.module.get_submodule(self.layer.name).register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc_info: object) -> None:
        handle, self._handle = self._handle, None
        handle.remove()

    def _hook(self, _module: nn.Module, _inputs: Any, output: Any) -> Any:
        tensor = output if isinstance(output, torch.Tensor) else first_tensor(output)
        if tensor.shape[-len(self._sample_shape):] != self._sample_shape or not tensor.is_floating_point():
            raise RliError(f"layer {_where(self.layer)} produced a {tensor.dtype} output of shape "
                           f"{tuple(tensor.shape)}, not float samples of shape {tuple(self._sample_shape)}; "
                           f"the intervention ({self._description}) does not fit it")
        if tensor.dim() == 2 and len(self._sample_shape) == 1:
            edited = self._edit(tensor)
        else:
            edited = self._edit(tensor.reshape(-1, self.layer.width)).reshape(tensor.shape)
        return edited if output is tensor else _replace_first(output, edited)


def _replace_first(output: Any, tensor: torch.Tensor) -> Any:
    """``output`` with its first tensor (as found by ``first_tensor``) replaced: the module's structure is kept."""
    if isinstance(output, torch.Tensor):
        return tensor
    first = _replace_first(output[0], tensor)
    if hasattr(output, "_fields"):
        return output._replace(**{output._fields[0]: first})
    return type(output)([first, *output[1:]])


class _Cached:
    """numpy arrays turned into tensors once per (device, dtype) the layer produces."""

    def __init__(self, *arrays: np.ndarray | None) -> None:
        self._arrays = arrays
        self._tensors: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor | None, ...]] = {}

    def like(self, rows: torch.Tensor) -> tuple[Any, ...]:
        key = (rows.device, rows.dtype)
        if key not in self._tensors:
            self._tensors[key] = tuple(None if array is None else
                                       torch.as_tensor(array, dtype=rows.dtype, device=rows.device)
                                       for array in self._arrays)
        return self._tensors[key]


class _LowRankEdit:
    """``rows ↦ beta·rows + gamma·(rows @ left) @ right + shift`` in one ``addmm``; ``left`` is (d, m), ``right`` (m, d)."""

    def __init__(self, left: np.ndarray, right: np.ndarray, *, beta: float, gamma: float,
                 shift: np.ndarray | None = None) -> None:
        self._factors = _Cached(np.ascontiguousarray(left), np.ascontiguousarray(right), shift)
        self._beta, self._gamma = beta, gamma

    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        left, right, shift = self._factors.like(rows)
        out = torch.addmm(rows, rows @ left, right, beta=self._beta, alpha=self._gamma)
        return out.add_(shift) if shift is not None else out


class _ReplaceEdit:
    """Rows replaced by stored source rows (one source row broadcasts to any batch)."""

    def __init__(self, source: np.ndarray, where: str) -> None:
        self._source = _Cached(source)
        self._n = source.shape[0]
        self._where = where

    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        if self._n != 1 and rows.shape[0] != self._n:
            raise RliError(f"the patch at {self._where} holds {self._n} source activations but the layer ran on a "
                           f"batch of {rows.shape[0]}; run the policy on exactly {self._n} observations at a time "
                           f"(e.g. chunk_size={self._n} in rli.capture or policy.act), or patch from one source "
                           "observation")
        (source,) = self._source.like(rows)
        return source.expand(rows.shape[0], -1).clone()


def _projection(basis: np.ndarray, *, alpha: float, center: np.ndarray | None = None,
                complement_of: bool = False) -> _LowRankEdit:
    """``h ← h + (α − 1) P (h − center)`` with ``P`` the projector on span(basis), or on its complement.

    Works through whichever of the edited subspace and its complement has fewer
    dimensions, so the cost is ``2·n·d·min(m, d − m)`` for an ``m``-dimensional edit.
    """
    d, k = basis.shape
    edited_dims = d - k if complement_of else k
    if edited_dims <= d - edited_dims:
        edited = complement(basis) if complement_of else basis
        edit = dict(left=edited, right=edited.T, beta=1.0, gamma=alpha - 1.0)
        along = (edited @ (edited.T @ center)) if center is not None else None
    else:
        kept = basis if complement_of else complement(basis)
        edit = dict(left=kept, right=kept.T, beta=alpha, gamma=1.0 - alpha)
        along = (center - kept @ (kept.T @ center)) if center is not None else None
    return _LowRankEdit(**edit, shift=None if along is None else (1.0 - alpha) * along)


def _target(policy: Policy, spec: LayerSpec) -> Layer:
    layer = checks.policy(policy).layer(spec)
    if layer.width is None:
        raise RliError(f"layer {layer.name!r} does not run when the policy acts, so there is nothing to intervene on; "
                       "see `policy.layers` for the layers with a width")
    return layer


def _where(layer: Layer) -> str:
    return layer.aliases[0] if layer.aliases else layer.name


def _activations(policy: Policy, layer: Layer, obs: Any) -> np.ndarray:
    return capture(policy, obs, layers=[layer])[layer.name]


def _finite(value: Any, name: str) -> float:
    return checks.real(value, name)


def _basis(policy: Policy, layer: Layer, direction: Any, acts: np.ndarray | None,
           argument: str) -> tuple[np.ndarray, str]:
    """(orthonormal basis d×k, how it was named: "pc1", "pc1-3", "probe of 'upwash'" or "")."""
    if isinstance(direction, str):
        match = _PCS.fullmatch(direction.strip())
        if match is None:
            raise RliError(f"unknown direction {direction!r}; give 'pcK' (the K-th principal direction), 'pcI-J' "
                           "(principal directions I to J), an array (d,) or (d, k), or a fitted probe")
        first, last = int(match.group(1)), int(match.group(2) or match.group(1))
        if not 1 <= first <= last:
            raise RliError(f"direction {direction!r}: principal directions are numbered from 1, "
                           "as 'pcK' or 'pcI-J' with I ≤ J")
        if acts is None:
            raise RliError(f"direction {direction!r} needs observations to fit PCA on; pass {argument}=... "
                           "(the layer's activations on them define the principal directions)")
        return fit_pca(acts, last)[0][:, first - 1:last], f"pc{first}" if first == last else f"pc{first}-{last}"
    label = ""
    if hasattr(direction, "direction"):
        direction, label = _probe_direction(policy, layer, direction)
    return orthonormalize(direction, width=layer.width), label


def _probe_direction(policy: Policy, layer: Layer, probe: Any) -> tuple[Any, str]:
    """A fitted probe's direction, checked against the layer it was fit at when the probe says which."""
    kind = type(probe).__name__
    fitted_at = getattr(probe, "layer", None)
    if isinstance(fitted_at, str):
        try:
            same = policy.layer(fitted_at).name == layer.name
        except RliError:
            same = False
        if not same:
            raise RliError(f"the {kind} was fit at layer {fitted_at!r} but the intervention is at {layer.name!r}; "
                           "its direction lives in another activation space: fit the probe at this layer")
    if probe.direction is None:
        raise RliError(f"this {kind} has no direction (only linear probes have one); "
                       "use a ridge or lasso probe, or give the direction as an array")
    target = getattr(probe, "target", None)
    return probe.direction, f"probe of {target!r}" if isinstance(target, str) else f"{kind} direction"


def _count(basis: np.ndarray) -> str:
    return f"{basis.shape[1]} direction{'s' if basis.shape[1] > 1 else ''}"


def _named(label: str) -> str:
    return f" ({label})" if label else ""


def ablate(policy: Policy, layer: LayerSpec, direction: Any, alpha: float = 0.0, *, obs: Any = None) -> Intervention:
    """Scale the component of ``layer``'s output along a direction or subspace by ``alpha``: ``h ← h − P h + α P h``.

    ``alpha=0`` removes the component (zeroing, not mean-ablation: see
    :func:`mean_ablate`), ``alpha=1`` changes nothing, ``alpha=-1`` reflects.
    ``direction`` is an array (d,) or (d, k), ``"pcK"`` / ``"pcI-J"`` (principal
    directions of the layer's activations on ``obs``; ``obs`` is used for nothing
    else) or a fitted probe.

    Example:
        >>> import numpy as np, torch.nn as nn, rli
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2)))
        >>> obs = np.random.default_rng(0).normal(size=(200, 3))
        >>> cut = rli.ablate(policy, 1, "pc1", obs=obs)
        >>> cut.describe()
        'zero 1 direction at actor.1 (pc1)'
        >>> with cut:
        ...     ablated = policy.act(obs)
        >>> bool(np.abs(ablated - policy.act(obs)).max() > 0)
        True
    """
    target = _target(policy, layer)
    alpha = _finite(alpha, "alpha")
    acts = _activations(policy, target, obs) if isinstance(direction, str) and obs is not None else None
    basis, label = _basis(policy, target, direction, acts, "obs")
    verb = f"zero {_count(basis)}" if alpha == 0 else f"scale {_count(basis)} by {alpha:g}"
    description = f"{verb} at {_where(target)}{_named(label)}"
    return Intervention(policy, target, "ablate", _projection(basis, alpha=alpha), description,
                        {"alpha": alpha, "rank": basis.shape[1], "directions": label or "given"})


def reflect(policy: Policy, layer: LayerSpec, w: Any, *, obs: Any = None) -> Intervention:
    """Householder reflection of ``layer``'s output: ``h ← h − 2 (h·ŵ) ŵ`` (for a subspace, ``h − 2 P h``).

    ``w`` is given as for :func:`ablate`; the reflection is its own inverse and
    preserves norms.

    Example:
        >>> import numpy as np, torch.nn as nn, rli
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(2, 2)))
        >>> with rli.reflect(policy, 0, [0.0, 1.0]) as flip:
        ...     flipped = rli.capture(policy, np.ones((1, 2)), layers=[0])[0]
        >>> flip.describe(), bool(np.allclose(flipped * [1, -1], rli.capture(policy, np.ones((1, 2)), layers=[0])[0]))
        ('reflect 1 direction at actor.0', True)
    """
    target = _target(policy, layer)
    acts = _activations(policy, target, obs) if isinstance(w, str) and obs is not None else None
    basis, label = _basis(policy, target, w, acts, "obs")
    description = f"reflect {_count(basis)} at {_where(target)}{_named(label)}"
    return Intervention(policy, target, "reflect", _projection(basis, alpha=-1.0), description,
                        {"rank": basis.shape[1], "directions": label or "given"})


def mean_ablate(policy: Policy, layer: LayerSpec, basis: Any, reference_obs: Any) -> Intervention:
    """Replace the component of ``layer``'s output in a subspace by its mean: ``h ← h − P (h − μ)``.

    μ is the mean activation over ``reference_obs`` (which also defines ``"pcK"``
    directions). Unlike zeroing, this keeps the layer's average output, so it
    removes the variation along the subspace and nothing else.

    Example:
        >>> import numpy as np, torch.nn as nn, rli
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2)))
        >>> obs = np.random.default_rng(0).normal(size=(300, 3))
        >>> with rli.mean_ablate(policy, 1, "pc1-2", obs) as flat:
        ...     acts = rli.capture(policy, obs, layers=[1])[1]
        >>> flat.describe()
        'set 2 directions to their mean over 300 observations at actor.1 (pc1-2)'
        >>> basis, _ = rli.fit_pca(rli.capture(policy, obs, layers=[1])[1], 2)
        >>> bool(np.ptp(acts @ basis, axis=0).max() < 1e-5)
        True
    """
    target = _target(policy, layer)
    acts = _activations(policy, target, reference_obs)
    space, label = _basis(policy, target, basis, acts, "reference_obs")
    its = "its" if space.shape[1] == 1 else "their"
    description = (f"set {_count(space)} to {its} mean over {acts.shape[0]} observations "
                   f"at {_where(target)}{_named(label)}")
    edit = _projection(space, alpha=0.0, center=acts.mean(axis=0, dtype=np.float64))
    return Intervention(policy, target, "mean_ablate", edit, description,
                        {"rank": space.shape[1], "directions": label or "given", "n_reference": acts.shape[0]})


def keep_subspace(policy: Policy, layer: LayerSpec, basis: Any, reference_obs: Any = None) -> Intervention:
    """Keep only the component of ``layer``'s output in a subspace; the rest is set to its mean, or zeroed.

    With ``reference_obs`` (recommended for PCA subspaces, and what a minimal-subspace
    search uses) the orthogonal complement is replaced by its mean over those
    observations: ``h ← μ + P (h − μ)``, i.e. :func:`mean_ablate` of the complement.
    Without, it is zeroed: ``h ← P h``, i.e. :func:`ablate` of the complement.
    ``"pcK"`` / ``"pcI-J"`` directions are fitted on ``reference_obs``.

    Example:
        >>> import numpy as np, torch.nn as nn, rli
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2)))
        >>> obs = np.random.default_rng(0).normal(size=(300, 3))
        >>> keep = rli.keep_subspace(policy, 1, "pc1-3", reference_obs=obs)
        >>> keep.describe()
        'keep only 3 directions at actor.1 (pc1-3), the rest set to its mean over 300 observations'
        >>> with keep:
        ...     kept = policy.act(obs)
        >>> bool(np.abs(kept - policy.act(obs)).mean() < np.abs(policy.act(obs)).mean())
        True
    """
    target = _target(policy, layer)
    acts = _activations(policy, target, reference_obs) if reference_obs is not None else None
    space, label = _basis(policy, target, basis, acts, "reference_obs")
    center = acts.mean(axis=0, dtype=np.float64) if acts is not None else None
    rest = f"the rest set to its mean over {acts.shape[0]} observations" if acts is not None else "the rest zeroed"
    description = f"keep only {_count(space)} at {_where(target)}{_named(label)}, {rest}"
    edit = _projection(space, alpha=0.0, center=center, complement_of=True)
    return Intervention(policy, target, "keep_subspace", edit, description,
                        {"rank": space.shape[1], "directions": label or "given", "rest": "zero" if acts is None else "mean",
                         "n_reference": None if acts is None else acts.shape[0]})


def erase(policy: Policy, layer: LayerSpec, obs: Any, concept: Any, *, categorical: bool | None = None) -> Intervention:
    """LEACE erasure of ``concept`` from ``layer``'s output, fitted on the activations of ``obs``.

    After it, no linear predictor recovers the concept from the layer's activations
    on ``obs`` better than a constant, with the smallest possible change to them
    (Belrose et al., 2023). ``concept`` is a label name of the ObsSet ``obs`` or an
    array (n,) / (n, k); integer, boolean and string concepts are one-hot encoded
    (``categorical=`` overrides the guess).

    Example:
        >>> import numpy as np, torch.nn as nn, rli
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2)))
        >>> x = np.random.default_rng(0).normal(size=(500, 3))
        >>> obs = rli.ObsSet(x, labels={"first": x[:, 0]})
        >>> with rli.erase(policy, 1, obs, "first") as leace:
        ...     acts = rli.capture(policy, obs, layers=[1])[1]
        >>> leace.describe()
        "LEACE erasure of 'first' at actor.1 (rank 1, fit on 500 observations)"
        >>> from sklearn.linear_model import RidgeCV
        >>> from sklearn.model_selection import cross_val_score
        >>> bool(cross_val_score(RidgeCV(), acts, x[:, 0], cv=5).mean() < 0.01)
        True
    """
    target = _target(policy, layer)
    if not (categorical is None or isinstance(categorical, (bool, np.bool_))):
        raise RliError(f"categorical must be True, False or None (guess from the dtype), not {categorical!r}")
    acts = _activations(policy, target, obs)
    matrix, name = concept_matrix(concept, obs, acts.shape[0], categorical=categorical)
    fit = fit_leace(acts, matrix)
    shift = (fit.mean @ fit.proj_right.T) @ fit.proj_left.T
    edit = _LowRankEdit(fit.proj_right.T, fit.proj_left.T, beta=1.0, gamma=-1.0, shift=shift)
    description = f"LEACE erasure of {name} at {_where(target)} (rank {fit.rank}, fit on {acts.shape[0]} observations)"
    return Intervention(policy, target, "erase", edit, description,
                        {"method": "LEACE", "concept": name, "concept_columns": matrix.shape[1], "rank": fit.rank,
                         "n_fit": acts.shape[0]})


def patch(policy: Policy, layer: LayerSpec, source_obs: Any) -> Intervention:
    """Activation patching: ``layer``'s output for the i-th input becomes its output on ``source_obs[i]``.

    The source activations are captured once, here (with the policy as it is now),
    and reused on every forward pass and every entry. A single source observation
    broadcasts to any batch; otherwise every batch must have ``len(source_obs)`` rows.

    Example:
        >>> import numpy as np, torch.nn as nn, rli
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2)))
        >>> clean, counterfactual = np.zeros((4, 3)), np.ones((4, 3))
        >>> with rli.patch(policy, 1, counterfactual) as swap:
        ...     patched = policy.act(clean)
        >>> swap.describe(), bool(np.allclose(patched, policy.act(counterfactual)))
        ('patch actor.1 with its activations on 4 source observations', True)
    """
    target = _target(policy, layer)
    source = capture(policy, source_obs, layers=[target])[target.name]
    n = source.shape[0]
    description = f"patch {_where(target)} with its activations on {n} source observation{'s' if n > 1 else ''}"
    return Intervention(policy, target, "patch", _ReplaceEdit(source, _where(target)), description, {"n_source": n})
