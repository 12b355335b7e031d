"""rl_interrogate's PCA helpers (``rl_interrogate.pca_utils``) on :func:`rli.fit_pca` and :func:`rli.project_subspace`.

Bases come out with scikit-learn's sign convention (each column's largest-magnitude
entry positive) and in the input's precision (float32 activations give float32
results, as scikit-learn's ``PCA`` does); rli computes them in float64 from a full SVD,
so they agree with the reference's float32 PCA to float32 rounding.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rli import subspace

__all__ = ["fit_pca", "project_subspace"]


def _is_float32(values: Any) -> bool:
    dtype = getattr(values, "dtype", None)
    return dtype == torch.float32 if isinstance(dtype, torch.dtype) else np.asarray(values).dtype == np.float32


def _precision(*arrays: Any) -> np.dtype:
    """float32 when every input is float32 (numpy or torch), else float64 — what scikit-learn and numpy return."""
    return np.dtype(np.float32 if all(_is_float32(a) for a in arrays) else np.float64)


def fit_pca(activations: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` principal directions of activations (N, d) → ``(eigenvectors (d, k), explained_variance_ratios (k,))``.

    Rigorous equivalent: ``rli.fit_pca(acts, k)`` (the same basis) used through
    ``rli.ablate(policy, layer, "pc1")`` / ``rli.minimal_subspace(...)``, which judge directions by
    paired episodes with a CI rather than by variance.

    Example:
        >>> import numpy as np
        >>> from rli.compat import fit_pca
        >>> acts = (np.random.default_rng(0).normal(size=(500, 4)) * [5.0, 1.0, 0.5, 0.1]).astype(np.float32)
        >>> basis, ratio = fit_pca(acts, 2)
        >>> basis.shape, basis.dtype, [round(float(r), 2) for r in ratio]
        ((4, 2), dtype('float32'), [0.96, 0.03])
    """
    basis, ratio = subspace.fit_pca(activations, k)
    dtype = _precision(activations)
    return basis.astype(dtype), ratio.astype(dtype)


def project_subspace(activations: np.ndarray, eigenvectors: np.ndarray) -> np.ndarray:
    """Coordinates of activations (N, d) in the basis (d, k): ``activations @ eigenvectors``, uncentred → (N, k).

    A single direction (d,) gives (N,), as the matrix product does.

    Rigorous equivalent: ``rli.project_subspace(acts, basis)``; to test whether the subspace is what
    the policy uses, ``rli.keep_subspace`` inside ``rli.compare`` (paired episodes).

    Example:
        >>> import numpy as np
        >>> from rli.compat import fit_pca, project_subspace
        >>> acts = np.random.default_rng(0).normal(size=(100, 6)).astype(np.float32)
        >>> basis, _ = fit_pca(acts, 2)
        >>> coords = project_subspace(acts, basis)
        >>> coords.shape, coords.dtype, project_subspace(acts, basis[:, 0]).shape
        ((100, 2), dtype('float32'), (100,))
    """
    coords = subspace.project_subspace(activations, eigenvectors).astype(_precision(activations, eigenvectors))
    return coords[:, 0] if np.ndim(eigenvectors) == 1 else coords
