"""The streamed ridge engine: held-out ridge scores from per-fold statistics, penalty chosen inside each fold.

:func:`rli.probe` (ridge kind) and :func:`rli.polarity_test` both fit through it. The
statistics (:class:`rli.moments.Moments`, or :class:`rli.moments.KernelMoments` for
features wider than the rows) are accumulated by the caller; :func:`ridge_outcomes`
turns them into the K held-out scores, the chosen penalties and the fit on all rows.

Example:
    >>> import numpy as np
    >>> from rli.moments import Moments, accumulate, fold_order
    >>> from rli.ridge import ridge_outcomes
    >>> class Settings:  # what the engine reads of a probe's options
    ...     folds, alphas, grouped = 5, None, False
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(300, 3)); y = x @ np.array([[1.0], [2.0], [3.0]])
    >>> m = Moments(5)
    >>> order, bounds = fold_order(np.arange(300) % 5, 5)
    >>> accumulate([(m, x, y)], order, bounds)
    >>> outcome = ridge_outcomes(m, [slice(0, 1)], Settings(), standardize=False)[0]
    >>> bool(outcome.fold_scores.min() > 0.99), outcome.coef.round(2).tolist()
    (True, [1.0, 2.0, 3.0])
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol

import numpy as np

from rli.errors import RliError
from rli.moments import RELATIVE_GRID, KernelFit, KernelMoments, Moments, RidgeFit
from rli.threads import one_blas_thread, run_all

if TYPE_CHECKING:
    from rli.capture import Pool
    from rli.policy import Layer

#: The widest ridge eigenproblem (d×d primal or n×n dual) a probe solves.
MAX_RIDGE_WIDTH = 4096


class RidgeOptions(Protocol):
    """What the engine reads of a probe's options (:class:`rli.probes.ProbeOptions` has them)."""

    @property
    def folds(self) -> int: ...

    @property
    def alphas(self) -> tuple[float, ...] | None: ...

    @property
    def grouped(self) -> bool: ...


class FitOutcome(NamedTuple):
    """The numbers of one probe fit (a layer, or one control run)."""

    fold_scores: np.ndarray
    output_scores: np.ndarray
    width: int
    coef: np.ndarray | None = None
    intercept: float | np.ndarray | None = None
    alpha: float | None = None
    fold_alphas: tuple[float, ...] = ()
    n_nonzero: int | None = None
    balanced: np.ndarray | None = None
    notes: tuple[str, ...] = ()
    transfer_scores: np.ndarray | None = None


def candidates(fit: RidgeFit | KernelFit, alphas: tuple[float, ...] | None) -> np.ndarray:
    """The penalties a fit chooses among: the relative grid times its Gram scale, or the user's."""
    return fit.base * RELATIVE_GRID if alphas is None else np.asarray(alphas, dtype=np.float64)


def grid_scores(m: Moments | KernelMoments, fit: RidgeFit | KernelFit, grid: np.ndarray, fold: int,
                 cols: slice) -> np.ndarray:
    """Held-out R² (mean over the outputs in ``cols``) on ``fold`` of ``fit`` at each penalty of ``grid``."""
    if isinstance(fit, KernelFit):  # one pass of the reflectors for every penalty at once
        dual = fit.dual[:, cols]
        stacked = np.hstack([dual / (fit.lam + a)[:, None] for a in grid])
        w_all = fit.z.T @ fit.tridiagonal.expand(stacked) / fit.scale[:, None]
        k = dual.shape[1]
        models = [(w_all[:, i * k:(i + 1) * k], fit.mean_y[cols] - fit.mean_x @ w_all[:, i * k:(i + 1) * k])
                  for i in range(len(grid))]
    else:
        models = [fit.coef(a, cols) for a in grid]
    return np.asarray([float(m.r2(fold, w, c, cols).mean()) for w, c in models])


def fit_without(m: Moments | KernelMoments, held: tuple[int, ...], folds: int,
                 standardize: bool) -> RidgeFit | KernelFit:
    """The ridge fit of every fold but those in ``held`` (the inner training sets of a grouped split)."""
    keep = [f for f in range(folds) if f not in held]
    if isinstance(m, KernelMoments):
        parts = [m.rows(f, held_out=True) for f in keep]
        return KernelFit(np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts]), standardize)
    return RidgeFit(m.sums(keep), standardize)


def inner_ridge_scores(m: Moments | KernelMoments, groups: Sequence[slice], opts: RidgeOptions,
                        standardize: bool) -> np.ndarray:
    """Grouped inner CV of the ridge penalty from the per-fold statistics: for outer fold f, each other fold g is
    held out of f's training folds in turn (one fit per pair of folds, shared by f and g). Scores are indexed by
    the candidate's position in its fit's grid (a penalty relative to the training Gram's scale, or the user's).

    Returns (column groups × folds × candidates) summed inner R²."""
    size = len(RELATIVE_GRID) if opts.alphas is None else len(opts.alphas)
    inner = np.zeros((len(groups), opts.folds, size))
    pairs = [(f, g) for f in range(opts.folds) for g in range(f + 1, opts.folds)]

    def score_pair(pair: tuple[int, int]) -> None:
        f, g = pair
        fit = fit_without(m, pair, opts.folds, standardize)
        grid = candidates(fit, opts.alphas)
        for i, cols in enumerate(groups):
            inner[i, f] += grid_scores(m, fit, grid, g, cols)
            inner[i, g] += grid_scores(m, fit, grid, f, cols)

    for pair in pairs:
        score_pair(pair)
    return inner


def ridge_outcomes(m: Moments | KernelMoments, groups: Sequence[slice], opts: RidgeOptions, standardize: bool,
                    transfer: Moments | KernelMoments | None = None, full: bool = True) -> list[FitOutcome]:
    """Held-out scores (penalty chosen inside each training fold) and the full fit, for each column group.

    With ``transfer``, each fold's model is also scored on that fold of ``transfer``
    (the same rows seen through other features, e.g. after a sensor inversion). With
    ``full=False`` the fit on all rows is skipped (controls need only their held-out scores):
    ``coef``, ``intercept`` and ``alpha`` are then None.

    Row-level folds choose the penalty by GCV (leave-one-out in closed form). Grouped folds
    choose it by grouped inner K-fold instead (GCV, a leave-one-*row*-out criterion,
    under-penalises when neighbouring rows are correlated): fold f's penalty by holding out
    each other fold of its training set in turn, the full fit's by the outer folds.
    """
    scores = [np.zeros((opts.folds, g.stop - g.start)) for g in groups]
    moved = [np.zeros((opts.folds, g.stop - g.start)) for g in groups]
    out = []
    fold_alphas = np.zeros((len(groups), opts.folds))
    inner_cv = opts.grouped and (opts.alphas is None or len(opts.alphas) > 1)
    size = len(RELATIVE_GRID) if opts.alphas is None else len(opts.alphas)
    inner = inner_ridge_scores(m, groups, opts, standardize) if inner_cv else None
    outer = np.zeros((len(groups), opts.folds, size))

    def score_fold(f: int) -> None:
        fit = m.fit(f, standardize)
        for g, cols in enumerate(groups):
            if inner is not None:
                grid = candidates(fit, opts.alphas)
                alpha = float(grid[int(np.argmax(inner[g, f]))])
                outer[g, f] = grid_scores(m, fit, grid, f, cols) if full else 0.0
            else:
                alpha = fit.choose(opts.alphas, cols)
            fold_alphas[g, f] = alpha
            model = fit.coef(alpha, cols)
            scores[g][f] = m.r2(f, *model, cols)
            if transfer is not None:
                moved[g][f] = transfer.r2(f, *model, cols)

    if m.width is None:
        raise RliError("the ridge statistics hold no observations; give at least one row per fold")
    width = int(m.width)
    dual = isinstance(m, KernelMoments)
    fits: dict[str, RidgeFit | KernelFit] = {}

    def fit_whole() -> None:
        fits["whole"] = m.fit(None, standardize)

    tasks = [functools.partial(score_fold, f) for f in range(opts.folds)] + ([fit_whole] if full else [])
    side_by_side = width <= 512 or dual  # else wide Gram matrices: one after another, each on every BLAS thread
    with one_blas_thread(side_by_side):
        if side_by_side:  # one BLAS thread each (threaded BLAS thrashed under load); every task computes the same
            run_all(tasks)  # numbers whichever thread runs it
        else:
            for task in tasks:
                task()
        alphas = [[float(a) for a in row] for row in fold_alphas]
        whole = fits.get("whole")
        for g, cols in enumerate(groups):
            coef: np.ndarray | None = None
            intercept: float | np.ndarray | None = None
            alpha: float | None = None
            if whole is not None:
                alpha = (whole.choose(opts.alphas, cols) if inner is None
                         else float(candidates(whole, opts.alphas)[int(np.argmax(outer[g].sum(axis=0)))]))
                w, c = whole.coef(alpha, cols)
                single = w.shape[1] == 1
                coef, intercept = (w[:, 0], float(c[0])) if single else (w, c)
            out.append(FitOutcome(scores[g].mean(axis=1), scores[g].mean(axis=0), width, coef, intercept, alpha,
                                  tuple(alphas[g]),
                                transfer_scores=moved[g].mean(axis=1) if transfer is not None else None))
    return out


def target_exponent(y: np.ndarray) -> int:
    """The power of two that brings ``max |y|`` into [0.5, 1).

    Ridge sums squares of the target, which overflow (or underflow to 0, faking a
    perfect fit) for targets near float64's limits; dividing by a power of two is
    exact, so R², the chosen penalty and the rescaled weights are bit-identical to
    the unscaled computation wherever that one stays in range.
    """
    return int(np.frexp(np.max(np.abs(y)))[1])


def check_ridge_width(layer: Layer, pool: Pool, rows: int | None = None) -> int | None:
    """The layer's ridge feature width; :class:`RliError` when its eigenproblem would exceed ``MAX_RIDGE_WIDTH``.

    A ridge probe solves a d×d problem (primal) or, for features wider than the ``rows``
    observations, an n×n one (dual, :func:`rli.moments.ridge_moments`): ``min(d, n)`` is
    what must stay within the limit. Without ``rows`` only the primal form counts.
    """
    shape = layer.shape
    pooled = pool == "channel" and shape is not None and len(shape) > 1
    width = shape[0] if pooled and shape is not None else layer.width
    if width is not None and min(width, rows if rows is not None else width) > MAX_RIDGE_WIDTH:
        dual = f" (or from at most {MAX_RIDGE_WIDTH} observations)" if rows is not None else ""
        raise RliError(f"layer {layer.name!r} has {width} features per observation; a ridge probe keeps d×d "
                       f"statistics and takes at most {MAX_RIDGE_WIDTH}{dual}: probe a narrower layer"
                       + (", use fewer observations" if rows is not None else "")
                       + (" or pass pool='channel'" if layer.shape and len(layer.shape) > 1 else ""))
    return width
