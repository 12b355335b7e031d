"""Representation similarity: linear CKA (Kornblith et al., 2019)."""

from __future__ import annotations

from typing import Any

import numpy as np

from rli.errors import RliError


def _centred(values: Any, name: str) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    try:
        given = np.asarray(values)
    except (TypeError, ValueError):
        raise RliError(f"{name} must be an activation matrix (n × d), not a ragged {type(values).__name__}") from None
    if given.dtype.kind not in "biuf":
        raise RliError(f"{name} must be an activation matrix (n × d) of real numbers, got dtype {given.dtype}")
    arr = given.astype(np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] < 2 or arr.shape[1] < 1:
        raise RliError(f"{name} must be an activation matrix (n × d) of at least 2 observations, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise RliError(f"{name} contains NaN/inf values; capture activations from finite observations")
    if arr.size:  # an exact power of two: CKA ignores scale, and the products stay inside float64's range
        arr = np.ldexp(arr, -int(np.frexp(np.max(np.abs(arr)))[1]))
    centred = arr - arr.mean(axis=0)
    if not np.any(centred):
        raise RliError(f"{name} is constant over the observations, so its similarity to anything is undefined; "
                       "use observations that vary")
    return centred


def cka(a: Any, b: Any) -> float:
    """Linear centred kernel alignment between two activation sets on the same observations, in [0, 1].

    ``‖BᵀA‖²_F / (‖AᵀA‖_F ‖BᵀB‖_F)`` on column-centred ``a`` (n × d1) and ``b``
    (n × d2). Symmetric, 1 for identical representations, invariant to orthogonal
    transforms and isotropic scaling of either side (not to arbitrary linear maps),
    so it compares what two layers (or two training runs) represent regardless of
    how their units happen to be arranged. Computed in O(n·d1·d2) with d × d
    products, so millions of rows are fine.

    Example:
        >>> import numpy as np, rli
        >>> x = np.random.default_rng(0).normal(size=(500, 8))
        >>> rotation = np.linalg.qr(np.random.default_rng(1).normal(size=(8, 8)))[0]
        >>> round(rli.cka(x, 3.0 * x @ rotation), 6)
        1.0
        >>> rli.cka(x, np.random.default_rng(2).normal(size=(500, 8))) < 0.1
        True
    """
    x, y = _centred(a, "a"), _centred(b, "b")
    if x.shape[0] != y.shape[0]:
        raise RliError(f"a has {x.shape[0]} rows but b has {y.shape[0]}; CKA compares activations of the same "
                       "observations, row by row")
    cross = np.linalg.norm(y.T @ x) ** 2
    return float(cross / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))
