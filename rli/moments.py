"""Ridge regression from streamed sufficient statistics, per fold, accumulated on every core.

:class:`Moments` keeps, per fold, the sums ``Σx``, ``XᵀX``, ``Σy``, ``Σy²`` and ``Xᵀy``
(float64, in coordinates shifted by the first chunk's means, so centring loses no
digits); :class:`RidgeFit` solves ridge regression of a training set for any penalty
from one eigendecomposition of its Gram matrix and picks the penalty by GCV; :func:`r2_on`
scores a model on a fold from that fold's sums alone.

Example:
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(1000, 3)); y = x @ [[1.0], [2.0], [0.0]]
    >>> ids = np.arange(1000) % 5
    >>> order, bounds = fold_order(ids, 5)
    >>> m = Moments(5); m.add(x, y, order, bounds)
    >>> fit = RidgeFit(m.train(0), standardize=False)
    >>> w, c = fit.coef(1e-9, slice(0, 1))
    >>> np.round(w.ravel(), 6).tolist() == [1, 2, 0], float(np.round(r2_on(m.fold(0), w, c, slice(0, 1))[0], 6))
    (True, 1.0)
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import scipy.linalg

from rli.threads import one_blas_thread, run_all

RELATIVE_GRID = 10.0 ** np.linspace(-6, 4, 21)
_EPS = np.finfo(np.float64).eps


class Sums(NamedTuple):
    """Sums over a set of rows, in coordinates shifted by ``shift_x`` / ``shift_y``."""

    n: float
    x: np.ndarray
    xx: np.ndarray
    y: np.ndarray
    yy: np.ndarray
    xy: np.ndarray
    shift_x: np.ndarray
    shift_y: np.ndarray


class Moments:
    """Per-fold sufficient statistics of features x (n × d) and targets y (n × k), accumulated chunk by chunk."""

    def __init__(self, folds: int) -> None:
        self.folds = folds
        self.shift_x: np.ndarray | None = None

    def add(self, x: np.ndarray, y: np.ndarray, order: np.ndarray, bounds: np.ndarray) -> None:
        """Add rows already grouped by fold: rows ``order[bounds[f]:bounds[f+1]]`` belong to fold f."""
        accumulate([(self, x, y)], order, bounds)

    def _shifted(self, x: np.ndarray, y: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows sorted by fold, as float64, in the shifted coordinates (the shift is set by the first chunk)."""
        x = np.asarray(x).reshape(len(x), -1)[order].astype(np.float64)
        y = y[order]
        if self.shift_x is None:
            d, k = x.shape[1], y.shape[1]
            self.shift_x, self.shift_y = x.mean(axis=0), y.mean(axis=0)
            self.n = np.zeros(self.folds)
            self.x, self.y, self.yy = np.zeros((self.folds, d)), np.zeros((self.folds, k)), np.zeros((self.folds, k))
            self.xx, self.xy = np.zeros((self.folds, d, d)), np.zeros((self.folds, d, k))
        x -= self.shift_x
        return x, y - self.shift_y

    def _add_fold(self, f: int, xs: np.ndarray, ys: np.ndarray) -> None:
        self.n[f] += len(xs)
        self.x[f] += xs.sum(axis=0)
        self.xx[f] += xs.T @ xs
        self.y[f] += ys.sum(axis=0)
        self.yy[f] += np.einsum("ij,ij->j", ys, ys)
        self.xy[f] += xs.T @ ys

    def sums(self, rows: Sequence[int]) -> Sums:
        """Sums over the folds in ``rows``."""
        idx = list(rows)
        return Sums(self.n[idx].sum(), self.x[idx].sum(0), self.xx[idx].sum(0), self.y[idx].sum(0),
                     self.yy[idx].sum(0), self.xy[idx].sum(0), self.shift_x, self.shift_y)

    def fold(self, f: int) -> Sums:
        """Sums over fold ``f`` (its held-out rows)."""
        return self.sums([f])

    def train(self, f: int) -> Sums:
        """Sums over every fold but ``f`` (the training set of fold ``f``)."""
        return self.sums([g for g in range(self.folds) if g != f])

    def total(self) -> Sums:
        """Sums over all rows."""
        return self.sums(range(self.folds))


def fold_order(ids: np.ndarray, folds: int) -> tuple[np.ndarray, np.ndarray]:
    """A chunk's row order grouped by fold id, and the bounds of each fold's group in it (``folds + 1`` values)."""
    order = np.argsort(ids, kind="stable")
    return order, np.concatenate([[0], np.cumsum(np.bincount(ids, minlength=folds))])


def accumulate(jobs: Sequence[tuple[Moments, np.ndarray, np.ndarray]], order: np.ndarray, bounds: np.ndarray) -> None:
    """Add one chunk to several :class:`Moments` (``(moments, features, targets)`` each), using every core.

    The Gram updates are the cost of a ridge probe beyond the forward pass (``n·d²`` per
    layer), and they run on one BLAS thread (see :func:`rli.threads.one_blas_thread`); here
    independent updates run side by side (:func:`rli.threads.run_all`), one task per feature set (a
    single set stays in this thread: splitting its folds over threads measured 10% slower,
    the tasks being too small). Each set's sums are computed by the same operations
    whichever thread runs them, so the result is bit-identical to a serial run and does not
    depend on the number of cores.
    """
    folds = [(f, slice(bounds[f], bounds[f + 1])) for f in range(len(bounds) - 1) if bounds[f + 1] > bounds[f]]

    def add(job: tuple[Moments, np.ndarray, np.ndarray]) -> None:
        moments, x, y = job
        xs, ys = moments._shifted(x, y, order)
        for f, rows in folds:
            moments._add_fold(f, xs[rows], ys[rows])

    biggest_first = sorted(jobs, key=lambda job: -np.asarray(job[1]).size)
    with one_blas_thread():
        run_all([functools.partial(add, job) for job in biggest_first])


class RidgeFit:
    """Ridge regression of one training set for any penalty, from one eigendecomposition of its Gram matrix."""

    def __init__(self, s: Sums, standardize: bool) -> None:
        n = s.n
        mx, my = s.x / n, s.y / n
        cov = s.xx - n * np.outer(mx, mx)
        cxy = s.xy - n * np.outer(mx, my)
        self.cyy = np.maximum(s.yy - n * my**2, 0.0)
        var = np.maximum(np.diag(cov) / n, 0.0)
        mean = s.shift_x + mx
        # scikit-learn's bound on the rounding error of a variance: below it a feature is constant
        varying = var > n * _EPS * var + (n * mean * _EPS) ** 2
        self.scale = np.where(varying, np.sqrt(var), 1.0) if standardize else np.ones_like(var)
        gram = cov / np.outer(self.scale, self.scale)
        gram[~varying] = 0.0
        gram[:, ~varying] = 0.0
        lam, self.vec = scipy.linalg.eigh(gram, driver="evd")
        self.lam = np.clip(lam, 0.0, None)
        self.proj = self.vec.T @ np.where(varying[:, None], cxy / self.scale[:, None], 0.0)
        self.base = float(np.trace(gram)) / max(int(varying.sum()), 1) or 1.0
        self.n, self.mean_x, self.mean_y = n, mean, s.shift_y + my

    def choose(self, alphas: tuple[float, ...] | None, cols: slice) -> float:
        """The penalty minimising GCV on the training set (summed over outputs, each relative to its variance)."""
        grid = self.base * RELATIVE_GRID if alphas is None else np.asarray(alphas)
        if grid.size == 1:
            return float(grid[0])
        lam = self.lam[None, :]
        shrink = (lam + 2 * grid[:, None]) / (lam + grid[:, None]) ** 2
        rss = np.maximum(self.cyy[cols] - shrink @ self.proj[:, cols] ** 2, 0.0)
        relative_rss = (rss / np.maximum(self.cyy[cols], _EPS)).sum(axis=1)
        dof = (lam / (lam + grid[:, None])).sum(axis=1) + 1.0  # + 1 for the intercept
        gcv = np.full(grid.shape, np.inf)
        np.divide(relative_rss, (1.0 - dof / self.n) ** 2, out=gcv, where=dof < self.n)
        return float(grid[int(np.argmin(gcv))])

    def coef(self, alpha: float, cols: slice) -> tuple[np.ndarray, np.ndarray]:
        """Weights W (d × k) and intercept c (k) in the original coordinates: prediction = x @ W + c."""
        w = self.vec @ (self.proj[:, cols] / (self.lam + alpha)[:, None]) / self.scale[:, None]
        return w, self.mean_y[cols] - self.mean_x @ w


def r2_on(s: Sums, w: np.ndarray, c: np.ndarray, cols: slice) -> np.ndarray:
    """Held-out R² per output of the model ``x @ w + c`` on the rows summed in ``s`` (scikit-learn's r2_score)."""
    b = c + s.shift_x @ w - s.shift_y[cols]
    yy, ysum, xy = s.yy[cols], s.y[cols], s.xy[:, cols]
    sse = (yy - 2 * b * ysum + s.n * b**2 - 2 * np.einsum("dk,dk->k", xy, w) + 2 * b * (s.x @ w)
           + np.einsum("dk,dk->k", w, s.xx @ w))
    sse = np.maximum(sse, 0.0)
    sst = np.maximum(yy - ysum**2 / s.n, 0.0)
    safe = np.where(sst > 0, sst, 1.0)
    return np.where(sst > 0, 1.0 - sse / safe, np.where(sse > 0, 0.0, 1.0))
