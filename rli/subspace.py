"""Subspaces of a layer's activation space: orthonormal bases, PCA, coordinates, complements.

A subspace is always held as a ``d × k`` float64 array with orthonormal columns.
:func:`fit_pca` finds the top principal directions of captured activations,
:func:`project_subspace` gives coordinates in a basis, :func:`orthonormalize` turns
any direction or set of directions into a basis (refusing zero, NaN and
rank-deficient input) and :func:`complement` spans what a basis leaves out.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import numpy as np
import scipy.linalg

from rli import checks
from rli.deprecation import renamed_arguments
from rli.errors import RliError
from rli.threads import one_blas_thread, run_all

_RANK_RTOL = 1e-8
_BLOCK_VALUES = 2**18  # values per centred block of fit_pca (2 MiB of float64: stays in cache)


def as_matrix(values: Any, name: str) -> np.ndarray:
    """``values`` (array or tensor) as a checked 2-D float64 matrix, or an RliError naming ``name``; shared with plots."""
    # callers never write into it: no copy of float64 input
    return checks.array(values, name, dtype=np.float64, fix="clean it before using it")


def _exponents(arr: np.ndarray, axis: int | None = 0) -> np.ndarray:
    """Per column (or overall, ``axis=None``) the power of two that brings the largest magnitude into [0.5, 1)."""
    return np.frexp(np.max(np.abs(arr), axis=axis))[1]


def orthonormalize(basis: Any, *, width: int | None = None) -> np.ndarray:
    """Orthonormal columns spanning the same subspace as ``basis``: a direction (d,) or directions (d, k).

    Columns are orthonormalised in order (Gram–Schmidt), so the first column is the
    first given direction scaled to unit length. Zero, NaN and (numerically)
    linearly dependent directions raise :class:`~rli.RliError`, and so does a ``d``
    other than ``width`` when it is given.

    Example:
        >>> import numpy as np, rli.subspace as sub
        >>> sub.orthonormalize([3.0, 4.0]).ravel().tolist()
        [0.6, 0.8]
        >>> basis = sub.orthonormalize(np.array([[1.0, 1.0], [0.0, 1.0], [0.0, 0.0]]))
        >>> np.allclose(basis.T @ basis, np.eye(2)), (basis[:, 1].round(6) + 0.0).tolist()
        (True, [0.0, 1.0, 0.0])
    """
    arr = as_matrix(basis, "the direction")
    given = arr.shape
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.size == 0:
        raise RliError(f"a direction is a vector (d,) and a subspace a matrix (d, k) of column directions; "
                       f"got shape {arr.shape}")
    if width is not None and arr.shape[0] != width:
        hint = f"; it looks transposed: pass its transpose {arr.shape[::-1]}" if len(given) == 2 and arr.shape[1] == width else ""
        raise RliError(f"the direction has shape {given} but the layer's activations have {width} dimensions"
                       f"{hint}; give directions (d,) or (d, k) in the layer's activation space")
    arr = np.ldexp(arr, -_exponents(arr))  # exact powers of two: norms neither overflow nor underflow
    norms = np.linalg.norm(arr, axis=0)
    if np.any(norms == 0):
        which = "the direction" if arr.shape[1] == 1 else f"column {int(np.argmin(norms))} of the basis"
        raise RliError(f"{which} is the zero vector, which spans nothing; give a non-zero direction")
    d, k = arr.shape
    if k > d:
        raise RliError(f"{k} directions cannot be independent in a {d}-dimensional space; give at most {d} columns")
    unit = arr / norms
    if k == 1:
        return unit
    singular = np.linalg.svd(unit, compute_uv=False)
    if singular[-1] < _RANK_RTOL * singular[0]:
        rank = int(np.sum(singular >= _RANK_RTOL * singular[0]))
        raise RliError(f"the {k} directions are linearly dependent (rank {rank}); drop the redundant ones "
                       "or pass an orthonormal basis")
    q, r = np.linalg.qr(unit)
    return q * np.where(np.diag(r) < 0, -1.0, 1.0)


def complement(basis: Any) -> np.ndarray:
    """An orthonormal basis (d, d − k) of the orthogonal complement of ``basis`` (d, k).

    Example:
        >>> import numpy as np, rli.subspace as sub
        >>> rest = sub.complement(np.eye(3)[:, :1])
        >>> rest.shape, np.allclose(rest[0], 0)
        ((3, 2), True)
    """
    q = orthonormalize(basis)
    u = np.linalg.svd(q, full_matrices=True)[0]
    return np.ascontiguousarray(u[:, q.shape[1]:])


def fit_pca(acts: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` principal directions of activations (n, d) → ``(basis d×k, explained_variance_ratio k)``.

    The basis has orthonormal columns, ordered by decreasing variance. Signs are
    deterministic: each column's largest-magnitude entry is positive (the
    convention of scikit-learn's PCA, so numbers match the reference toolkit).

    Example:
        >>> import numpy as np, rli
        >>> acts = np.random.default_rng(0).normal(size=(500, 4)) * [5.0, 1.0, 0.5, 0.1]
        >>> basis, ratio = rli.fit_pca(acts, 2)
        >>> basis.shape, int(np.abs(basis[:, 0]).argmax()), ratio.round(2).tolist()
        ((4, 2), 0, [0.96, 0.03])
    """
    arr = as_matrix(acts, "activations")
    if arr.ndim != 2:
        raise RliError(f"activations must be a matrix (n, d); got shape {arr.shape}")
    n, d = arr.shape
    k = checks.count(k, "k", maximum=min(n, d),
                     hint=f" (a whole number of principal components between 1 and min(n, d) = {min(n, d)})")
    if n < 2:
        raise RliError("PCA needs at least 2 observations")
    with one_blas_thread(n >= d or arr.size < 2e7):  # tall data: small per-block products, one thread each
        variance, vt = _principal_axes(arr, int(_exponents(arr, axis=None)))
    if variance.sum() == 0:
        raise RliError("the activations are constant (zero variance), so their principal directions are undefined; "
                       "use observations that vary, or another layer")
    components = vt[:k]
    signs = np.sign(components[np.arange(k), np.abs(components).argmax(axis=1)])
    return np.ascontiguousarray((components * signs[:, None]).T), variance[:k] / variance.sum()


def _principal_axes(arr: np.ndarray, exponent: int) -> tuple[np.ndarray, np.ndarray]:
    """Variances (descending, unnormalised) and principal axes (rows) of data (n, d), centred here.

    The data are divided by ``2**exponent`` first (exact: squares neither overflow nor
    underflow). Tall data (n ≥ d, the usual case for activations) go through the
    eigendecomposition of the d×d scatter matrix, as scikit-learn's ``PCA`` does for tall
    data (its ``covariance_eigh`` solver), instead of an SVD of the n×d matrix (100,000 ×
    128: 69 ms against 1.4 s, ``benchmarks/bench_pca.py``). The scatter matrix is summed from
    centred blocks of :data:`_BLOCK_VALUES` values (no n×d copy), over the two halves of
    the rows side by side (:func:`rli.threads.run_all`, one BLAS thread each; the same sums
    whatever the number of threads). An axis differs from the SVD's by about 1e-16 ·
    (largest variance) / (gap to the neighbouring variance), so well-separated components
    agree to ~1e-12. Wide data keep the SVD.
    """
    n, d = arr.shape
    if n < d:
        centred = np.ldexp(arr, -exponent)
        centred -= centred.mean(axis=0)
        _, singular, vt = np.linalg.svd(centred, full_matrices=False)
        return singular**2, vt
    rows = max(1, _BLOCK_VALUES // d)
    halves = [(0, n // 2), (n // 2, n)]

    def blocks(half: int) -> Iterator[np.ndarray]:
        lo, hi = halves[half]
        for start in range(lo, hi, rows):
            yield np.ldexp(arr[start:min(start + rows, hi)], -exponent)

    sums, scatters = np.zeros((2, d)), np.zeros((2, d, d))

    def add_sums(half: int) -> None:
        for block in blocks(half):
            sums[half] += block.sum(axis=0)

    def add_scatter(half: int) -> None:
        for block in blocks(half):
            block -= mean
            scatters[half] += block.T @ block

    run_all([functools.partial(add_sums, 0), functools.partial(add_sums, 1)])
    mean = (sums[0] + sums[1]) / n
    run_all([functools.partial(add_scatter, 0), functools.partial(add_scatter, 1)])
    variance, vectors = scipy.linalg.eigh(scatters[0] + scatters[1], driver="evd")
    return np.clip(variance[::-1], 0.0, None), vectors[:, ::-1].T


@renamed_arguments(basis="direction")
def project_subspace(acts: Any, direction: Any) -> np.ndarray:
    """Coordinates (n, k) of activations (n, d) in a basis (d, k): ``acts @ direction``, uncentred, as the reference does.

    ``direction`` is a basis (d, k) (e.g. from :func:`fit_pca`) or one direction (d,),
    as interventions take it (``basis=`` before, deprecated); it is used as given, not
    orthonormalised.

    Example:
        >>> import numpy as np, rli
        >>> acts = np.random.default_rng(0).normal(size=(100, 6))
        >>> basis, _ = rli.fit_pca(acts, 2)
        >>> rli.project_subspace(acts, basis).shape
        (100, 2)
    """
    arr = as_matrix(acts, "activations")
    base = as_matrix(direction, "direction")
    if base.ndim == 1:
        base = base[:, None]
    if arr.ndim != 2 or base.ndim != 2 or arr.shape[1] != base.shape[0]:
        raise RliError(f"activations {arr.shape} and direction {base.shape} do not fit: activations are (n, d) "
                       "and direction a basis (d, k) with the same d")
    coordinates = arr @ base
    if not np.all(np.isfinite(coordinates)):
        raise RliError("the coordinates overflow float64 (activations and direction reach "
                       f"{np.abs(arr).max():.3g} and {np.abs(base).max():.3g}); rescale them")
    return coordinates
