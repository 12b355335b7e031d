"""The structured null of a probe: surrogate targets with the real target's structure but no tie to the observations.

A probe can decode a target because the layer encodes it, or merely because the target is
smooth in time or space and the layer is a rich function of the state: a random smooth
field over a grid, or a per-episode constant, is decodable from most networks (the audit of
issue #17 found random smooth fields over the formation grid as "selective" as the upwash).
In the spirit of Hewitt & Liang's control tasks, the structured null scores the same probe
(same kind, same folds, same penalty search) on ``N`` surrogate targets that keep the real
target's structure but are drawn independently of the observations, and gives the p-value
``(1 + #{surrogate score ≥ real score}) / (1 + N)`` for "this layer encodes *this* target
better than targets shaped like it".

Surrogates (:func:`surrogates`):

- **episodes / groups** (continuous target): per group, the within-group deviations are
  phase-randomised in the real, mirror-symmetric form of Fourier phase randomisation
  (Theiler et al. 1992): the signs of their orthonormal DCT-II coefficients are drawn at
  random. The DCT is the Fourier transform of the mirror-extended sequence, so the ends do
  not wrap (plain FFT phase randomisation treats an episode as periodic and turns the jump
  from its last to its first value into spurious high-frequency power), and it nearly
  diagonalises the covariance of a stationary (e.g. AR(1)) sequence, so sign flips give draws
  distributed like the original. Each group keeps its DCT power spectrum, mean and variance
  exactly; the group means are then permuted between groups, so a per-episode-constant target
  gets a fair null (its exact distribution of episode means).
- **grids** (``ObsSet.grid``'s ``meta["grid_shape"]``): the N-d DCT of the field with random
  signs on every coefficient but the mean: the same spatial power spectrum, mean and variance,
  another field.
- **class labels** (logistic probes): whole groups' label sequences permuted between groups,
  each circularly shifted by a random offset (runs within an episode kept); on a grid the label
  field rolled by a random offset along each axis and randomly mirrored; otherwise the rows
  permuted.
- **no structure known** (plain arrays, exchangeable rows): the rows permuted.

Columns of a multi-output target share the random phases (their cross-spectra are kept).

Example:
    >>> import numpy as np
    >>> y = np.repeat(np.arange(6.0), 20)          # per-episode constant
    >>> s = surrogates(y, groups=np.repeat(np.arange(6), 20), samples=3, seed=0)
    >>> s.shape, sorted(set(np.round(s[0], 9))) == list(np.arange(6.0))
    ((3, 120), True)
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import scipy.fft

from rli import checks
from rli.errors import RliError
from rli.moments import RELATIVE_GRID, KernelMoments, Moments, r2_on
from rli.observations import ObsSet
from rli.ridge import RidgeOptions, candidates, fit_without, ridge_outcomes
from rli.threads import one_blas_thread

NULLS = ("structured",)
DEFAULT_SAMPLES = {"ridge": 99}
DEFAULT_SAMPLES_SK = 19  # lasso, mlp, logistic: each surrogate is a full refit of the probe
MAX_SAMPLES = 9999
_STREAM = 1017  # the surrogates' random stream: default_rng([seed, 1017])


@dataclass(frozen=True)
class StructuredNull:
    """The structured null of one probe: surrogate scores, the p-value and how the surrogates were made.

    ``score`` is the probe's held-out score on the real target, ``scores`` the same probe's
    held-out score (mean over the same folds) on each of the ``samples`` surrogates, and
    ``p_value = (1 + #{scores ≥ score}) / (1 + samples)``, exact under exchangeability of
    the real target with its surrogates (the null: the target is no more tied to the layer than
    a random target of the same structure). The smallest possible p-value is ``1 / (1 + samples)``.
    """

    method: str
    samples: int
    score: float
    scores: tuple[float, ...]
    p_value: float

    @classmethod
    def from_scores(cls, score: float, scores: Any, method: str) -> StructuredNull:
        """The null from the real score and the surrogate scores."""
        values = np.asarray(scores, dtype=np.float64)
        p = (1 + int(np.sum(values >= score))) / (1 + values.size)
        return cls(method, int(values.size), float(score), tuple(map(float, values)), float(p))

    def to_dict(self) -> dict[str, Any]:
        """Plain-python form (JSON-able)."""
        return {"method": self.method, "samples": self.samples, "score": self.score, "scores": list(self.scores),
                "p_value": self.p_value}

    @property
    def details(self) -> str:
        """How many surrogates, how made, and where their scores lie (one line, without the p-value)."""
        q = np.quantile(self.scores, [0.5, 0.95])
        return (f"{self.samples} surrogates ({self.method}); their scores: median {q[0]:.3f}, 95th percentile "
                f"{q[1]:.3f}, max {max(self.scores):.3f}")

    def __str__(self) -> str:
        return f"structured null p = {self.p_value:.3g}: score {self.score:.3f} vs {self.details}"


def check_null(null: Any, samples: Any, kind: str) -> dict[str, Any]:
    """Validated ``null`` / ``null_samples`` of a probe → ``{"null": ..., "null_samples": ...}``.

    Example:
        >>> check_null("structured", None, "ridge"), check_null(None, None, "mlp")
        ({'null': 'structured', 'null_samples': 99}, {'null': None, 'null_samples': 0})
    """
    if null is not None and (not isinstance(null, str) or null not in NULLS):
        raise RliError(f"null must be None or 'structured' (surrogate targets of the same structure), not {null!r}")
    if null is None:
        if samples is not None:
            raise RliError("null_samples is set but null is None; pass null='structured' as well")
        return {"null": None, "null_samples": 0}
    if samples is None:
        return {"null": null, "null_samples": DEFAULT_SAMPLES.get(kind, DEFAULT_SAMPLES_SK)}
    checks.count(samples, "null_samples", maximum=MAX_SAMPLES, hint=" (surrogate targets of the structured null)")
    return {"null": null, "null_samples": int(samples)}


def method(*, groups: bool, grid: bool, classes: bool) -> str:
    """One line naming how the surrogates are made (see :func:`surrogates`)."""
    if classes:
        if groups:
            return "class sequences permuted between groups, each circularly shifted"
        return "label field rolled and mirrored at random" if grid else "labels permuted between rows"
    if groups:
        return "per-group DCT phase randomisation (spectrum kept) + group means permuted between groups"
    return "N-d DCT phase-randomised field (spatial spectrum kept)" if grid else "rows permuted"


def surrogates(y: Any, *, groups: Any = None, grid_shape: Any = None, samples: int = 99, seed: int = 0,
               classes: bool = False) -> np.ndarray:
    """``samples`` surrogate targets of ``y`` (n,) or (n, k) → array (samples, n) or (samples, n, k).

    ``groups`` (one id per row: episodes) or ``grid_shape`` (rows in ``ObsSet.grid``'s order)
    give the structure to keep (module docstring); with neither the rows are permuted.
    ``classes=True`` treats ``y`` as class labels. Deterministic for a ``seed``.

    Example:
        >>> field = np.add.outer(np.sin(np.linspace(0, 3, 8)), np.cos(np.linspace(0, 2, 6))).ravel()
        >>> s = surrogates(field, grid_shape=(8, 6), samples=2, seed=1)
        >>> s.shape, bool(np.allclose(s.mean(axis=1), field.mean())), bool(np.allclose(s.std(axis=1), field.std()))
        ((2, 48), True, True)
    """
    checks.count(samples, "samples", maximum=MAX_SAMPLES)
    checks.seed(seed)
    values = np.asarray(y)
    if values.ndim not in (1, 2) or len(values) < 2:
        raise RliError(f"y must have one value (or one row of outputs) per observation, at least 2; got shape "
                       f"{values.shape}")
    n = len(values)
    codes = _codes(groups, n) if groups is not None else None
    shape = _shape(grid_shape, n) if grid_shape is not None and codes is None else None
    if not classes:
        if not np.issubdtype(values.dtype, np.number) or not np.all(np.isfinite(values)):
            raise RliError("y must be finite numbers (or pass classes=True for class labels)")
        values = values.astype(np.float64)
    rng = np.random.default_rng([seed, _STREAM])
    make = _class_surrogate if classes else _surrogate
    return np.stack([make(values, codes, shape, rng) for _ in range(int(samples))])


def for_probe(obs: Any, y: np.ndarray, groups: np.ndarray | None, samples: int, seed: int,
              classes: bool) -> tuple[list[np.ndarray], str]:
    """A probe's surrogate targets and their method: by the split's ``groups`` (group codes) when the split is
    grouped, else along the grid of an ``ObsSet.grid``, else by the ``episode`` label, else rows permuted."""
    grid = None
    if groups is None and isinstance(obs, ObsSet):
        shape = obs.meta.get("grid_shape")
        if shape and int(np.prod(shape)) == len(y):
            grid = tuple(int(s) for s in shape)
        elif "episode" in obs.labels:
            groups = np.asarray(obs.labels["episode"])
    target = y[:, 0] if not classes and y.shape[1] == 1 else y
    out = surrogates(target, groups=groups, grid_shape=grid, samples=samples, seed=seed, classes=classes)
    parts = [s if classes else s.reshape(len(y), -1) for s in out]
    return parts, method(groups=groups is not None, grid=grid is not None, classes=classes)


def ridge_scores(m: Moments | KernelMoments, start: int, k: int, opts: RidgeOptions,
                 standardize: bool) -> np.ndarray:
    """Held-out ridge score (mean over the folds) of each surrogate: the columns ``start:`` of ``m``, ``k`` per
    surrogate, each surrogate with its own penalty search, exactly as :func:`rli.ridge.ridge_outcomes` scores a
    column group (grouped inner K-fold for grouped splits, GCV for rows).

    ``ridge_outcomes`` scores one column group at a time; here every single-column surrogate is scored at
    once per fit and candidate penalty (one R² per column from the fold's statistics), so 99
    surrogates cost about as much as one target. Wide layers (the dual form) and multi-output
    targets go through ``ridge_outcomes`` itself, one column group per surrogate.
    """
    if isinstance(m, KernelMoments) or k != 1:
        total = int(m.rows(None)[1].shape[1]) if isinstance(m, KernelMoments) else int(m.cyy.shape[1])
        groups = [slice(a, a + k) for a in range(start, total, k)]
        return np.asarray([o.fold_scores.mean() for o in ridge_outcomes(m, groups, opts, standardize, full=False)])
    stop, folds = int(m.cyy.shape[1]), opts.folds
    cols, width = slice(start, stop), stop - start
    held = [m.fold(f) for f in range(folds)]
    single = opts.alphas is not None and len(opts.alphas) == 1
    with one_blas_thread(int(m.width or 0) <= 512):
        inner = None
        if opts.grouped and not single:  # grouped inner K-fold: one fit per pair of outer folds, as the engine
            inner = np.zeros((folds, len(RELATIVE_GRID) if opts.alphas is None else len(opts.alphas), width))
            for f in range(folds):
                for g in range(f + 1, folds):
                    fit = fit_without(m, (f, g), folds, standardize)
                    grid = candidates(fit, opts.alphas)
                    inner[f] += _grid_r2(fit, grid, held[g], cols)
                    inner[g] += _grid_r2(fit, grid, held[f], cols)
        scores = np.zeros((folds, width))
        for f in range(folds):
            fit = m.fit(f, standardize)
            grid = candidates(fit, opts.alphas)
            if single:
                pick = np.zeros(width, dtype=np.int64)
            elif inner is not None:
                pick = np.argmax(inner[f], axis=0)
            else:  # GCV per column, as RidgeFit.choose
                pick = np.asarray([int(np.argmin(fit.gcv(grid, slice(j, j + 1)))) for j in range(start, stop)])
            scores[f] = _grid_r2(fit, grid, held[f], cols)[pick, np.arange(width)]
    return scores.mean(axis=0)


# ------------------------------------------------------------------------------------------ helpers
def _grid_r2(fit: Any, grid: np.ndarray, held: Any, cols: slice) -> np.ndarray:
    """Held-out R² of every column in ``cols`` at each penalty of ``grid`` → (penalties, columns)."""
    scores = []
    for a in grid:
        w, c = fit.coef(float(a), cols)
        scores.append(r2_on(held, w, c, cols))
    return np.stack(scores)


def _codes(groups: Any, n: int) -> np.ndarray:
    values = np.asarray(groups)
    if values.ndim != 1 or len(values) != n:
        raise RliError(f"groups must give one group id per row ({n}); got shape {values.shape}")
    if values.dtype == object or (values.dtype.kind == "f" and not np.all(np.isfinite(values))):
        raise RliError("groups must be integers or strings without NaN (one id per row)")
    codes = np.unique(values, return_inverse=True)[1].ravel()
    if codes.max() < 1:
        raise RliError("groups holds a single group; a structured null needs at least 2 groups to permute between")
    return codes


def _shape(grid_shape: Any, n: int) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in grid_shape)
    except (TypeError, ValueError):
        raise RliError(f"grid_shape must be a tuple of axis lengths, not {grid_shape!r}") from None
    if not shape or min(shape) < 1 or int(np.prod(shape)) != n:
        raise RliError(f"grid_shape {shape} does not hold the {n} rows of y (their product must be {n})")
    return shape


def _members(codes: np.ndarray) -> list[np.ndarray]:
    """Rows of each group, in their order."""
    order = np.argsort(codes, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(codes))])
    return [order[a:b] for a, b in pairwise(bounds)]


def _phase_randomised(x: np.ndarray, axes: int, rng: np.random.Generator) -> np.ndarray:
    """``x`` (its first ``axes`` axes temporal/spatial; columns after them share the draw) with random signs on its
    orthonormal DCT-II coefficients, the mean's kept: the same DCT power spectrum, mean and variance."""
    spatial = tuple(range(axes))
    coefficients = scipy.fft.dctn(x, axes=spatial, norm="ortho")
    signs = rng.choice(np.array([-1.0, 1.0]), size=x.shape[:axes])
    signs.flat[0] = 1.0
    return scipy.fft.idctn(coefficients * signs.reshape(signs.shape + (1,) * (x.ndim - axes)), axes=spatial,
                           norm="ortho")


def _surrogate(y: np.ndarray, codes: np.ndarray | None, shape: tuple[int, ...] | None,
               rng: np.random.Generator) -> np.ndarray:
    cols = y.reshape(len(y), -1)
    if shape is not None:
        return _phase_randomised(cols.reshape(*shape, cols.shape[1]), len(shape), rng).reshape(y.shape)
    if codes is None:
        return y[rng.permutation(len(y))]
    members = _members(codes)
    means = np.stack([cols[rows].mean(axis=0) for rows in members])
    out = np.empty_like(cols)
    for rows, mean in zip(members, means[rng.permutation(len(members))]):
        part = cols[rows] - cols[rows].mean(axis=0)
        out[rows] = (_phase_randomised(part, 1, rng) if len(rows) > 1 else part) + mean
    return out.reshape(y.shape)


def _class_surrogate(y: np.ndarray, codes: np.ndarray | None, shape: tuple[int, ...] | None,
                     rng: np.random.Generator) -> np.ndarray:
    if shape is not None:
        field = y.reshape(shape + y.shape[1:])
        for axis, size in enumerate(shape):
            field = np.roll(field, int(rng.integers(size)), axis=axis)
            if rng.random() < 0.5:
                field = np.flip(field, axis=axis)
        return field.reshape(y.shape)
    if codes is None:
        return y[rng.permutation(len(y))]
    members = _members(codes)
    out = np.empty_like(y)
    for rows, source in zip(members, (members[g] for g in rng.permutation(len(members)))):
        shift = int(rng.integers(len(source)))
        out[rows] = y[source[(np.arange(len(rows)) + shift) % len(source)]]
    return out
