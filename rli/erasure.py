"""LEACE: least-squares concept erasure (Belrose et al., 2023, arXiv:2306.03819).

The LEACE eraser is the affine map ``x ↦ x − W⁺ P W (x − μ)`` (``W`` the whitening
matrix of the activations, ``P`` the orthogonal projector onto the column space of
``W Σ_xz``). It makes the cross-covariance between the erased activations and the
concept exactly zero, so no linear predictor of the concept does better than a
constant on the data it was fit on, and among all maps that do so it moves the
activations least (in the mean-squared Mahalanobis sense).

Written here rather than taken from the ``concept-erasure`` package (which the tests
check it against): that package drops singular values below an absolute 0.01, so a
concept measured in small units (a label scaled by 1e-3) is left fully decodable, and
its default trace constraint blends in an orthogonal projection that no longer zeroes
the cross-covariance. Here the concept columns are standardised and the rank cut-off
is relative, so erasure does not depend on the units of the label.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rli.errors import RliError

_RANK_RTOL = 1e-8


@dataclass(frozen=True)
class LeaceFit:
    """A fitted LEACE eraser ``x ↦ x − (x − mean) @ proj_right.T @ proj_left.T`` (rank ``r`` edit)."""

    mean: np.ndarray
    proj_left: np.ndarray
    proj_right: np.ndarray

    @property
    def rank(self) -> int:
        """How many dimensions the eraser changes."""
        return int(self.proj_left.shape[1])

    def __call__(self, acts: Any) -> np.ndarray:
        """Erase the concept from activations (n, d)."""
        arr = np.asarray(acts, dtype=np.float64)
        return arr - ((arr - self.mean) @ self.proj_right.T) @ self.proj_left.T


def concept_matrix(concept: Any, obs: Any, n: int, *, categorical: bool | None = None) -> tuple[np.ndarray, str]:
    """The concept as a float matrix (n, k) and a short name for it.

    ``concept`` is a label name of the :class:`~rli.ObsSet` ``obs``, ``"obs[I]"``, an array (n,) /
    (n, k), or ``(name, array)`` (:func:`rli.targets.resolve_target`). Integer, boolean and string
    labels are one-hot encoded (so every linear function of the class is erased); ``categorical=False``
    treats integers as numbers, ``categorical=True`` one-hot encodes anything 1-D.

    Example:
        >>> import numpy as np
        >>> from rli.erasure import concept_matrix
        >>> matrix, name = concept_matrix(np.array(["a", "b", "a"]), None, 3)
        >>> matrix.tolist(), name
        ([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], 'a concept of 2 classes')
    """
    from rli.targets import DEFAULT_NAME, resolve_target

    values, name = resolve_target(obs, concept, what="concept")  # a label, "obs[I]", an array or (name, array)
    name = "" if name == DEFAULT_NAME and not isinstance(concept, (str, tuple)) else repr(name)
    label = f" {name}" if name else ""
    if values.ndim not in (1, 2) or values.shape[0] != n:
        raise RliError(f"the concept has shape {values.shape} for {n} observations; give one value (n,) "
                       "or one row (n, k) per observation")
    if values.dtype == object or values.dtype.kind == "c":
        raise RliError(f"the concept has mixed or object values, or complex ones (dtype {values.dtype}); give real "
                       "numbers or class labels")
    if categorical is None:
        categorical = values.dtype.kind in "biuUS"
    if categorical:
        if values.ndim != 1:
            raise RliError(f"a categorical concept is one column of classes, got shape {values.shape}; "
                           "one-hot encode it yourself and pass categorical=False")
        classes, codes = np.unique(values, return_inverse=True)
        if classes.size < 2:
            raise RliError(f"the concept{label} has a single class, so there is nothing to erase; "
                           "use observations where it varies")
        return np.eye(classes.size)[codes.ravel()], name or f"a concept of {classes.size} classes"
    matrix = values.astype(np.float64).reshape(n, -1)
    if not np.all(np.isfinite(matrix)):
        raise RliError(f"the concept contains {int((~np.isfinite(matrix)).sum())} NaN/inf values; "
                       "drop those observations or fill the values")
    if np.all(matrix.max(axis=0) == matrix.min(axis=0)):
        raise RliError(f"the concept{label} is constant over these observations, so there is nothing to erase; "
                       "use observations where it varies")
    return matrix, name or f"a concept of {matrix.shape[1]} column{'s' if matrix.shape[1] > 1 else ''}"


def fit_leace(acts: Any, concept: Any) -> LeaceFit:
    """Fit the LEACE eraser of ``concept`` (n, k) floats from activations (n, d).

    Directions in which the activations vary less than their own precision allows
    (eigenvalues of the covariance below ``d·eps·max``, with ``eps`` of the
    activations' dtype) are left alone: for float32 activations that is rounding
    noise, and whitening it would blow it up.

    Example:
        >>> import numpy as np
        >>> from rli.erasure import fit_leace
        >>> rng = np.random.default_rng(0)
        >>> acts = rng.normal(size=(1000, 8))
        >>> z = acts @ rng.normal(size=8)
        >>> eraser = fit_leace(acts, z)
        >>> erased = eraser(acts)
        >>> eraser.rank, bool(abs(np.corrcoef(erased @ rng.normal(size=8), z)[0, 1]) < 1e-6)
        (1, True)
    """
    given = np.asarray(acts)
    precision = np.finfo(given.dtype if given.dtype in (np.float16, np.float32) else np.float64).eps
    x = given.astype(np.float64)
    z = np.asarray(concept, dtype=np.float64).reshape(x.shape[0], -1)
    z = np.ldexp(z, -np.frexp(np.max(np.abs(z), axis=0))[1])  # exact per-column powers of two: no overflow below
    n, d = x.shape
    if n < 2:
        raise RliError("LEACE needs at least 2 observations to estimate covariances")
    mean = x.mean(axis=0)
    xc = x - mean
    zc = z - z.mean(axis=0)
    spread = zc.std(axis=0)
    zc = zc[:, spread > 0] / spread[spread > 0]
    eigval, eigvec = np.linalg.eigh(xc.T @ xc / n)
    usable = eigval > eigval[-1] * d * precision
    root = np.sqrt(np.where(usable, eigval, 1.0))
    whiten = (eigvec * np.where(usable, 1.0 / root, 0.0)) @ eigvec.T
    unwhiten = (eigvec * np.where(usable, root, 0.0)) @ eigvec.T
    u, singular, _ = np.linalg.svd(whiten @ (xc.T @ zc / n), full_matrices=False)
    u = u[:, singular > _RANK_RTOL * singular[0]] if singular.size and singular[0] > 0 else u[:, :0]
    return LeaceFit(mean=mean, proj_left=unwhiten @ u, proj_right=u.T @ whiten)
