"""Ridge regression from streamed, centred per-fold statistics, accumulated on every core.

:class:`Moments` keeps, per fold, the row count, the means of the features x and targets y
and their centred scatter ``Σ(x−x̄)(x−x̄)ᵀ``, ``Σ(x−x̄)(y−ȳ)``, ``Σ(y−ȳ)²`` (float64).
Each chunk is centred on its own means before its products are taken, and chunks and
folds are merged with the exact pairwise formula of Chan, Golub & LeVeque (1979), so a
feature that is constant over a set of rows has a variance of rounding size there, whatever
the other rows hold (a one-pass ``Σx² − n·x̄²`` is off by up to ``n·ε·x̄²``, which made
constant features look like tiny varying ones and got them huge weights).
:class:`RidgeFit` solves ridge regression of a training set for any penalty from one
eigendecomposition of its Gram matrix and picks the penalty by GCV; :func:`r2_on` scores a
model on a fold from that fold's statistics alone.

Features wider than the rows are many (an image's pixels) are solved in the dual form
instead, as scikit-learn's ``Ridge`` / ``RidgeCV`` do: :class:`KernelMoments` keeps the rows
and :class:`KernelFit` eigendecomposes the n×n kernel of the training rows instead of the
d×d Gram matrix (same penalties, same GCV, the same model up to rounding).
:func:`ridge_moments` picks the form.

Example:
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(1000, 3)); y = x @ [[1.0], [2.0], [0.0]]
    >>> ids = np.arange(1000) % 5
    >>> order, bounds = fold_order(ids, 5)
    >>> m = Moments(5); m.add(x, y, order, bounds)
    >>> fit = m.fit(0, standardize=False)
    >>> w, c = fit.coef(1e-9, slice(0, 1))
    >>> np.round(w.ravel(), 6).tolist() == [1, 2, 0], float(np.round(m.r2(0, w, c, slice(0, 1))[0], 6))
    (True, 1.0)
"""

from __future__ import annotations

import abc
import functools
import threading
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import scipy.linalg

from rli.errors import RliError
from rli.threads import one_blas_thread, run_all

RELATIVE_GRID = 10.0 ** np.linspace(-6, 4, 21)
_EPS = np.finfo(np.float64).eps


def check_finite_sums(*parts: np.ndarray) -> None:
    """Refuse statistics that overflowed (sums of squares beyond float64's range): they would give NaN scores.

    Example:
        >>> check_finite_sums(np.array([1.0, np.inf]))
        Traceback (most recent call last):
        rli.errors.RliError: the ridge statistics overflow float64: ...
    """
    if not all(np.isfinite(part).all() for part in parts):
        raise RliError("the ridge statistics overflow float64: a feature reaches about ±1e154 (the observations, for "
                       "the raw-observation control, or a layer's activations); rescale them")


class Sums(NamedTuple):
    """Statistics of a set of rows: count, means and centred scatter (sums of products of deviations)."""

    n: float
    mean_x: np.ndarray
    cxx: np.ndarray
    mean_y: np.ndarray
    cyy: np.ndarray
    cxy: np.ndarray

    @property
    def x(self) -> np.ndarray:
        """``Σx`` (uncentred, for callers that centre themselves; ``cxx`` is the exact centred scatter)."""
        return self.n * self.mean_x

    @property
    def xx(self) -> np.ndarray:
        """``Σxxᵀ`` (uncentred: ``cxx + n·x̄x̄ᵀ``; centring it again loses digits, use ``cxx``)."""
        return self.cxx + self.n * np.outer(self.mean_x, self.mean_x)


def constant_features(var: np.ndarray, mean: np.ndarray, n: float) -> np.ndarray:
    """Which features are constant: a variance within the rounding error of a centred two-pass computation.

    scikit-learn's bound (``StandardScaler``): ``var ≤ n·ε·var + (n·ε·mean)²``. A variance
    computed from deviations about a computed mean carries a relative error of up to ``n·ε``
    plus the square of the mean's own error, ``n·ε·|mean|``; the statistics here are
    computed that way (chunks centred on their own means, merged exactly), so the bound
    holds for them too.

    Example:
        >>> constant_features(np.array([1e-35, 1.0]), np.array([0.1, 0.1]), 1000).tolist()
        [True, False]
    """
    return var <= n * _EPS * var + (n * np.abs(mean) * _EPS) ** 2


class _Accumulator(abc.ABC):
    """A chunk's rows, fold by fold (shared by the primal and the dual statistics)."""

    def __init__(self, folds: int) -> None:
        self.folds = folds
        self.width: int | None = None

    def add(self, x: np.ndarray, y: np.ndarray, order: np.ndarray, bounds: np.ndarray) -> None:
        """Add rows already grouped by fold: rows ``order[bounds[f]:bounds[f+1]]`` belong to fold f."""
        accumulate([(self, x, y)], order, bounds)

    def _prepared(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A chunk's features as rows (n × d) and its targets; the statistics are allocated on the first chunk."""
        x = np.asarray(x).reshape(len(x), -1)
        y = np.asarray(y)
        if self.width is None:
            self.width = x.shape[1]
            self._start(x.shape[1], y.shape[1])
        return x, y

    def _add_rows(self, x: np.ndarray, y: np.ndarray, order: np.ndarray,
                  folds: Sequence[tuple[int, slice]]) -> None:
        """Add a prepared chunk's rows to folds: ``order[rows]`` are fold f's rows for each ``(f, rows)`` in ``folds``.

        Each fold's rows are gathered in their own dtype (activations are float32) and become float64 only
        in :meth:`_add_fold`, in the first pass over them it makes anyway.
        """
        for f, rows in folds:
            self._add_fold(f, x[order[rows]], y[order[rows]])

    @abc.abstractmethod
    def _start(self, d: int, k: int) -> None:
        """Allocate the statistics for ``d`` features and ``k`` targets (on the first chunk)."""

    @abc.abstractmethod
    def _add_fold(self, f: int, xs: np.ndarray, ys: np.ndarray) -> None:
        """Add the rows ``xs``, ``ys`` (any real dtype) of fold ``f``; the statistics are float64."""


class Moments(_Accumulator):
    """Per-fold centred statistics of features x (n × d) and targets y (n × k), accumulated chunk by chunk."""

    def _start(self, d: int, k: int) -> None:
        self.n = np.zeros(self.folds)
        self.mean_x, self.mean_y = np.zeros((self.folds, d)), np.zeros((self.folds, k))
        self.cxx, self.cxy, self.cyy = np.zeros((self.folds, d, d)), np.zeros((self.folds, d, k)), np.zeros((self.folds, k))

    def _add_fold(self, f: int, xs: np.ndarray, ys: np.ndarray) -> None:
        """Merge rows into fold ``f``: the chunk centred on its own means, plus Chan's correction row.

        The correction ``n₀·m/(n₀+m)·δδᵀ`` (δ = chunk mean − fold mean) is appended to the
        centred rows as one more row scaled by its square root, so one product adds both.
        """
        m, n0 = len(xs), self.n[f]
        n = n0 + m
        mx, my = xs.mean(axis=0, dtype=np.float64), ys.mean(axis=0, dtype=np.float64)
        dx, dy = mx - self.mean_x[f], my - self.mean_y[f]
        root = np.sqrt(n0 * m / n)
        xa, ya = np.empty((m + 1, xs.shape[1])), np.empty((m + 1, ys.shape[1]))
        np.subtract(xs, mx, out=xa[:m])  # cast to float64 and centred in one pass (exact: a float32 is a float64)
        np.subtract(ys, my, out=ya[:m])
        xa[m], ya[m] = root * dx, root * dy
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused where the sums are used
            self.cxx[f] += xa.T @ xa  # (check_finite_sums), with a message instead of warnings
            self.cxy[f] += xa.T @ ya
            self.cyy[f] += np.einsum("ij,ij->j", ya, ya)
        self.mean_x[f] += dx * (m / n)
        self.mean_y[f] += dy * (m / n)
        self.n[f] = n

    def sums(self, rows: Sequence[int]) -> Sums:
        """Statistics over the folds in ``rows`` (exact merge: pooled scatter plus the between-fold term)."""
        idx = [f for f in rows if self.n[f] > 0]
        n = self.n[idx]
        total = n.sum()
        mean_x = (n[:, None] * self.mean_x[idx]).sum(axis=0) / total
        mean_y = (n[:, None] * self.mean_y[idx]).sum(axis=0) / total
        dx, dy = self.mean_x[idx] - mean_x, self.mean_y[idx] - mean_y
        with np.errstate(over="ignore", invalid="ignore"):  # refused by the fit (check_finite_sums)
            cxx = self.cxx[idx].sum(axis=0) + (dx * n[:, None]).T @ dx
            cxy = self.cxy[idx].sum(axis=0) + (dx * n[:, None]).T @ dy
            cyy = self.cyy[idx].sum(axis=0) + (dy**2 * n[:, None]).sum(axis=0)
        return Sums(float(total), mean_x, cxx, mean_y, cyy, cxy)

    def fold(self, f: int) -> Sums:
        """Statistics over fold ``f`` (its held-out rows)."""
        return self.sums([f])

    def train(self, f: int) -> Sums:
        """Statistics over every fold but ``f`` (the training set of fold ``f``)."""
        return self.sums([g for g in range(self.folds) if g != f])

    def total(self) -> Sums:
        """Statistics over all rows."""
        return self.sums(range(self.folds))

    def fit(self, f: int | None, standardize: bool) -> RidgeFit:
        """The ridge fit of the training set of fold ``f`` (all rows for ``None``)."""
        return RidgeFit(self.total() if f is None else self.train(f), standardize)

    def r2(self, f: int, w: np.ndarray, c: np.ndarray, cols: slice) -> np.ndarray:
        """Held-out R² per output of ``x @ w + c`` on fold ``f``."""
        return r2_on(self.fold(f), w, c, cols)


class KernelMoments(_Accumulator):
    """The rows themselves, per fold, for features wider than the rows are many (solved in the dual form).

    Holds ``n × d`` float64 (:func:`kept_bytes`; a fit needs :func:`fit_bytes` more).
    """

    def _start(self, d: int, k: int) -> None:
        self._parts: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in range(self.folds)]
        self._joined: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._lock = threading.Lock()  # the folds' fits run on several threads and join the rows on first use

    def _add_fold(self, f: int, xs: np.ndarray, ys: np.ndarray) -> None:
        self._parts[f].append((np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)))  # gathered copies
        self._joined = None

    def _all(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All rows sorted by fold, and each fold's bounds."""
        with self._lock:
            return self._join()

    def _join(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._joined is None:
            xs = [x for part in self._parts for x, _ in part]
            ys = [y for part in self._parts for _, y in part]
            sizes = [sum(len(x) for x, _ in part) for part in self._parts]
            self._joined = (np.concatenate(xs), np.concatenate(ys), np.concatenate([[0], np.cumsum(sizes)]))
            self._parts = [[(self._joined[0][a:b], self._joined[1][a:b])] for a, b in
                           zip(self._joined[2][:-1], self._joined[2][1:])]
        return self._joined

    def rows(self, f: int | None, held_out: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Features and targets of the training set of fold ``f`` (all rows for ``None``), or of fold ``f`` itself."""
        x, y, bounds = self._all()
        if f is None:
            return x, y
        a, b = bounds[f], bounds[f + 1]
        if held_out:
            return x[a:b], y[a:b]
        return np.concatenate([x[:a], x[b:]]), np.concatenate([y[:a], y[b:]])

    def fit(self, f: int | None, standardize: bool) -> KernelFit:
        """The dual-form ridge fit of the training set of fold ``f`` (all rows for ``None``)."""
        x, y = self.rows(f)
        return KernelFit(x.copy() if f is None else x, y, standardize)

    def r2(self, f: int, w: np.ndarray, c: np.ndarray, cols: slice) -> np.ndarray:
        """Held-out R² per output of ``x @ w + c`` on fold ``f`` (from its rows)."""
        x, y = self.rows(f, held_out=True)
        return r2_score(y[:, cols], x @ w + c)


def ridge_moments(folds: int, width: int | None, rows: int) -> Moments | KernelMoments:
    """The statistics a ridge probe of ``width`` features from ``rows`` observations keeps.

    The primal form (d×d Gram matrices, streamed, memory independent of ``rows``) when
    ``width ≤ rows``; the dual form (the rows kept, n×n kernels) when the features are wider
    than the rows are many, as scikit-learn's ``RidgeCV`` chooses (its ``gcv_mode="auto"``).

    Example:
        >>> type(ridge_moments(5, 3888, 2000)).__name__, type(ridge_moments(5, 256, 2000)).__name__
        ('KernelMoments', 'Moments')
    """
    return KernelMoments(folds) if width is not None and width > rows else Moments(folds)


def kept_bytes(folds: int, width: int, rows: int, outputs: int = 1) -> int:
    """Bytes a ridge probe's statistics of ``width`` features from ``rows`` observations keep (float64).

    Primal: per fold a d×d scatter, a d×k cross-scatter and the means; dual: the rows.
    """
    if width > rows:
        return 8 * rows * (width + outputs)
    return 8 * folds * (width * (width + outputs) + width + 2 * outputs)


def fit_bytes(width: int, rows: int) -> int:
    """Peak extra bytes of one fit: the training Gram, its scaled copy and eigenvectors (primal), or a training
    copy of the rows, its kernel and eigenvectors (dual)."""
    if width > rows:
        return 8 * (rows * width + 3 * rows * rows)
    return 8 * 3 * width * width


def fold_order(ids: np.ndarray, folds: int) -> tuple[np.ndarray, np.ndarray]:
    """A chunk's row order grouped by fold id, and the bounds of each fold's group in it (``folds + 1`` values)."""
    order = np.argsort(ids, kind="stable")
    return order, np.concatenate([[0], np.cumsum(np.bincount(ids, minlength=folds))])


def accumulate(jobs: Sequence[tuple[_Accumulator, np.ndarray, np.ndarray]], order: np.ndarray,
               bounds: np.ndarray) -> None:
    """Add one chunk to several :class:`Moments` (``(moments, features, targets)`` each), using every core.

    The Gram updates are the cost of a ridge probe beyond the forward pass (``n·d²`` per
    layer), and they run on one BLAS thread (see :func:`rli.threads.one_blas_thread`); here
    independent updates run side by side (:func:`rli.threads.run_all`), one task per feature set (a
    single set stays in this thread: splitting its folds over threads made its updates 25% faster
    alone but the probe no faster, 0.187 s against 0.184 s for ``bench_probe.py``'s one layer). Each
    set's statistics are computed by the same operations whichever thread runs them, so the result
    is bit-identical to a serial run and does not depend on the number of cores.
    :class:`KernelMoments` take their rows the same way.
    """
    folds = [(f, slice(bounds[f], bounds[f + 1])) for f in range(len(bounds) - 1) if bounds[f + 1] > bounds[f]]
    prepared = [(moments, *moments._prepared(x, y)) for moments, x, y in jobs]  # allocated before any task starts
    with one_blas_thread():
        run_all([functools.partial(moments._add_rows, x, y, order, folds)
                 for moments, x, y in sorted(prepared, key=lambda job: -job[1].size)])


class _Spectral:
    """Penalty choice by GCV from the spectrum of a training set (shared by the primal and the dual fit).

    Needs ``lam`` (the spectrum of the centred, scaled training design's Gram matrix, zeros
    allowed), ``width`` (the number of features), ``sq`` (the squared projections ``(uⱼ·y)²`` of the centred targets on its
    left singular vectors, one row per eigenvalue), ``cyy``, ``base`` and ``n``.

    The residual is summed from nonnegative terms, ``RSS(α) = RSS_out + Σ (α/(λⱼ+α))² (uⱼ·y)²``
    (``RSS_out``: the part of y outside the features' span), and so is ``n − dof``: the
    usual ``Σy² − Σ shrinkⱼ·projⱼ²`` cancels to rounding noise when the training rows are
    interpolated (d ≥ n), where GCV would then pick the smallest penalty for no reason.
    """

    lam: np.ndarray
    sq: np.ndarray
    cyy: np.ndarray
    base: float
    n: float
    width: int

    def _kept(self) -> np.ndarray:
        """Eigenvalues above the rounding level of the spectrum (the rest are zeros of a rank-deficient design)."""
        return self.lam > self.lam.max(initial=0.0) * _EPS * max(self.width, self.n)

    def choose(self, alphas: tuple[float, ...] | None, cols: slice) -> float:
        """The penalty minimising GCV on the training set (summed over outputs, each relative to its variance)."""
        grid = self.base * RELATIVE_GRID if alphas is None else np.asarray(alphas)
        if grid.size == 1:
            return float(grid[0])
        return float(grid[int(np.argmin(self.gcv(grid, cols)))])

    def gcv(self, grid: np.ndarray, cols: slice) -> np.ndarray:
        """GCV of each penalty in ``grid`` (inf where the fit would use every degree of freedom)."""
        grid = np.asarray(grid, dtype=np.float64)
        kept = self._kept()
        lam, sq = self.lam[kept], self.sq[kept, cols]
        outside = np.maximum(self.cyy[cols] - sq.sum(axis=0), 0.0)
        shrunk = grid[:, None] / (lam[None, :] + grid[:, None])  # α/(λ+α): 1 − each direction's share of dof
        rss = outside + shrunk**2 @ sq
        relative_rss = (rss / np.maximum(self.cyy[cols], _EPS)).sum(axis=1)
        residual_dof = (self.n - 1.0 - kept.sum()) + shrunk.sum(axis=1)  # n − (Σ λ/(λ+α) + 1 for the intercept)
        gcv = np.full(grid.shape, np.inf)
        np.divide(relative_rss, (residual_dof / self.n) ** 2, out=gcv, where=residual_dof > 0)
        return gcv


class RidgeFit(_Spectral):
    """Ridge regression of one training set for any penalty, from one eigendecomposition of its Gram matrix."""

    def __init__(self, s: Sums, standardize: bool) -> None:
        check_finite_sums(s.cxx, s.cxy)
        n = s.n
        var = np.maximum(np.diag(s.cxx) / n, 0.0)
        varying = ~constant_features(var, s.mean_x, n)
        self.scale = np.where(varying, np.sqrt(var), 1.0) if standardize else np.ones_like(var)
        gram = s.cxx / np.outer(self.scale, self.scale)
        gram[~varying] = 0.0
        gram[:, ~varying] = 0.0
        # LAPACK's divide-and-conquer dsyevd, the routine of scipy.linalg.eigh(driver="evd") (bit-identical results on
        # the 14 matrices tried, d 4–512, full and half rank), but numpy's wrapper releases the GIL, so the folds'
        # fits run side by side (rli.ridge.ridge_outcomes): 36 fits of the profile's widths took 0.062 s, not 0.110.
        lam, self.vec = np.linalg.eigh(gram)
        self.lam = np.clip(lam, 0.0, None)
        self.proj = self.vec.T @ np.where(varying[:, None], s.cxy / self.scale[:, None], 0.0)
        self.cyy = np.maximum(s.cyy, 0.0)
        self.base = float(np.trace(gram)) / max(int(varying.sum()), 1) or 1.0
        self.n, self.mean_x, self.mean_y, self.width = n, s.mean_x, s.mean_y, len(var)
        kept = self._kept()
        self.sq = np.where(kept[:, None], self.proj**2 / np.where(kept, self.lam, 1.0)[:, None], 0.0)

    def coef(self, alpha: float, cols: slice) -> tuple[np.ndarray, np.ndarray]:
        """Weights W (d × k) and intercept c (k) in the original coordinates: prediction = x @ W + c."""
        w = self.vec @ (self.proj[:, cols] / (self.lam + alpha)[:, None]) / self.scale[:, None]
        return w, self.mean_y[cols] - self.mean_x @ w


class KernelFit(_Spectral):
    """Ridge regression of one training set (rows in memory) for any penalty, from its n×n kernel (the dual form).

    ``x`` is overwritten (centred and scaled in place). The kernel ``K = ZZᵀ`` of the centred
    (and, with ``standardize``, unit-variance) rows ``Z`` has the same nonzero eigenvalues as
    the Gram matrix ``ZᵀZ`` of the primal form, and ``Zᵀuᵢ = √λᵢ vᵢ``, so GCV and the
    weights ``Zᵀ U (Λ+α)⁻¹ Uᵀ y`` are the primal ones.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, standardize: bool) -> None:
        n = len(x)
        mean = x.mean(axis=0)
        x -= mean
        with np.errstate(over="ignore"):
            var = np.einsum("ij,ij->j", x, x) / n
        check_finite_sums(var)
        varying = ~constant_features(var, mean, n)
        self.scale = np.where(varying, np.sqrt(var), 1.0) if standardize else np.ones_like(var)
        x /= self.scale
        x[:, ~varying] = 0.0
        self.mean_x, self.mean_y = mean, y.mean(axis=0)
        yc = y - self.mean_y
        kernel = x @ x.T
        self.base = float(np.trace(kernel)) / max(int(varying.sum()), 1) or 1.0
        self.tridiagonal = TridiagonalEigen(kernel)
        self.lam = np.clip(self.tridiagonal.lam, 0.0, None)
        self.dual = self.tridiagonal.project(yc)
        self.cyy = np.einsum("ij,ij->j", yc, yc)
        self.n, self.z, self.width = n, x, x.shape[1]
        self.sq = np.where(self._kept()[:, None], self.dual**2, 0.0)

    def coef(self, alpha: float, cols: slice) -> tuple[np.ndarray, np.ndarray]:
        """Weights W (d × k) and intercept c (k) in the original coordinates: prediction = x @ W + c."""
        a = self.tridiagonal.expand(self.dual[:, cols] / (self.lam + alpha)[:, None])
        w = self.z.T @ a / self.scale[:, None]
        return w, self.mean_y[cols] - self.mean_x @ w


class TridiagonalEigen:
    """``K = U Λ Uᵀ`` of a symmetric matrix kept as ``U = Q Z``: Householder reflectors Q (LAPACK ``dsytrd``)
    and the eigenvectors Z of the tridiagonal ``T = QᵀKQ`` (MRRR, ``dstemr``).

    The full eigendecomposition spends most of its time forming U = QZ (``2n³``); ridge
    needs only ``Uᵀy`` and ``U b`` for a few columns, which the reflectors give in ``O(n²)``
    each. On a 1600×1600 kernel this measured ~6× faster than ``scipy.linalg.eigh`` with
    vectors, with the same eigenvalues and projections to rounding.

    Example:
        >>> k = np.random.default_rng(0).normal(size=(6, 6)); k = k @ k.T
        >>> e = TridiagonalEigen(k); y = np.arange(6.0)[:, None]
        >>> bool(np.allclose(e.expand(e.lam[:, None] * e.project(y)), k @ y))
        True
    """

    def __init__(self, matrix: np.ndarray) -> None:
        n = len(matrix)
        lwork = int(scipy.linalg.lapack.dsytrd_lwork(n, lower=1)[0]) if n > 1 else 1
        packed, diag, off, self._tau, info = scipy.linalg.lapack.dsytrd(matrix, lower=1, lwork=max(lwork, 1))
        if info != 0:
            raise np.linalg.LinAlgError(f"dsytrd failed (info {info})")
        self._packed = np.asfortranarray(packed)
        self.lam: np.ndarray
        self._z: np.ndarray
        self.lam, self._z = (scipy.linalg.eigh_tridiagonal(diag, off) if n > 1
                             else (diag.copy(), np.ones((1, 1))))

    def _reflect(self, b: np.ndarray, reverse: bool) -> np.ndarray:
        b = np.array(b, dtype=np.float64, copy=True)
        steps = range(len(self._tau))
        for i in reversed(steps) if reverse else steps:
            tau = self._tau[i]
            if tau == 0.0:
                continue
            v = self._packed[i + 1:, i].copy()
            v[0] = 1.0
            part = b[i + 1:]
            part -= np.outer(tau * v, v @ part)
        return b

    def project(self, y: np.ndarray) -> np.ndarray:
        """``Uᵀ y`` (n × k)."""
        return self._z.T @ self._reflect(y, reverse=False)

    def expand(self, b: np.ndarray) -> np.ndarray:
        """``U b`` (n × k)."""
        return self._reflect(self._z @ b, reverse=True)


def r2_on(s: Sums, w: np.ndarray, c: np.ndarray, cols: slice) -> np.ndarray:
    """Held-out R² per output of the model ``x @ w + c`` on the rows summarised in ``s`` (scikit-learn's r2_score)."""
    bias = s.mean_y[cols] - s.mean_x @ w - c  # mean residual
    sse = (s.cyy[cols] - 2 * np.einsum("dk,dk->k", s.cxy[:, cols], w) + np.einsum("dk,dk->k", w, s.cxx @ w)
           + s.n * bias**2)
    return _r2(np.maximum(sse, 0.0), np.maximum(s.cyy[cols], 0.0))


def r2_score(y: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """R² per output column of ``predicted`` against ``y`` (n × k each), as :func:`r2_on` defines it."""
    sst = np.einsum("ij,ij->j", y - y.mean(axis=0), y - y.mean(axis=0))
    residual = y - predicted
    return _r2(np.einsum("ij,ij->j", residual, residual), sst)


def _r2(sse: np.ndarray, sst: np.ndarray) -> np.ndarray:
    safe = np.where(sst > 0, sst, 1.0)
    return np.where(sst > 0, 1.0 - sse / safe, np.where(sse > 0, 0.0, 1.0))
