"""The logistic probe's penalty search: scikit-learn's grid search, computed along warm-started paths.

A logistic probe chooses ``C`` by grouped inner cross-validation in every outer training
fold, and its controls (untrained networks, shuffled labels, the raw observation) repeat
the whole search: 96 fits per probe run with the default five penalties. On label-shuffled
targets lbfgs, scikit-learn's default solver, needed up to its 2,000-iteration limit per fit
(a MiniGrid probe with controls took 1,040 s under load), and stopped short of the optimum
on unscaled features (``standardize=False``, the default). Newton steps with a Cholesky
solve reach the optimum of the strictly convex L2-penalised objective in 5–25 steps, so a
tight tolerance is cheap; they form the (d+1)·classes square Hessian, so wider problems keep
lbfgs (:data:`NEWTON_MAX`). The warm-started paths save more steps
(``benchmarks/bench_probe_logistic.py``).

Example:
    >>> import numpy as np
    >>> from sklearn.model_selection import StratifiedKFold
    >>> x = np.random.default_rng(0).normal(size=(90, 2)); y = (x[:, 0] > 0).astype(int)
    >>> search = LogisticPath((10.0, 1.0), StratifiedKFold(3, shuffle=True, random_state=0)).fit(x, y)
    >>> search.best_estimator_.C, bool(np.mean(search.predict(x) == y) > 0.9)
    (10.0, True)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression

#: The largest number of coefficients ((features + 1) × classes) solved by Newton steps with a Cholesky solve; wider
#: problems use lbfgs (the Hessian has this many rows). Measured on the MiniGrid probe: 65 × 4 coefficients 5.2 s
#: CPU per probe run with Newton steps against 17.0 s with lbfgs; the 148 × 4 raw-observation control 16.1 s
#: against 3.0 s (its standardised pixels are well conditioned; Newton's d²-per-row Hessian dominates).
NEWTON_MAX = 512
#: The stopping tolerance of the Newton solver (largest gradient entry): its steps converge quadratically, so 1e-8
#: costs a few steps more than scikit-learn's 1e-4, and the fit is the optimum, whatever the start.
NEWTON_TOL = 1e-8
_MAX_ITER = 2000


def logistic(c: float, width: int, classes: int, warm_start: bool = False) -> LogisticRegression:
    """The logistic probe's model at penalty ``C = c`` for ``width`` features and ``classes`` classes."""
    size = (width + 1) * (1 if classes <= 2 else classes)
    if size <= NEWTON_MAX:
        return LogisticRegression(C=c, solver="newton-cholesky", tol=NEWTON_TOL, max_iter=_MAX_ITER,
                                  warm_start=warm_start)
    return LogisticRegression(C=c, max_iter=_MAX_ITER, warm_start=warm_start)


class LogisticPath(ClassifierMixin, BaseEstimator):
    """``GridSearchCV(logistic(c, ...), {"C": cs}, cv=cv)`` computed along warm-started regularisation paths.

    For each inner split the penalties are fitted from the strongest to the weakest, each
    starting from the previous solution (as ``LogisticRegressionCV`` does); the choice is
    GridSearchCV's: the highest mean held-out accuracy over the splits, ties to the first
    in ``cs``; the chosen C is then refitted on all rows from scratch, as GridSearchCV
    refits. Each fit converges to the same unique optimum from any start, so the choice
    and the final model are scikit-learn's (tests/test_ridge_speed_paths.py compares them
    with ``GridSearchCV(LogisticRegression())`` run to convergence); the warm starts only
    save iterations. ``best_estimator_`` is the refitted model.
    """

    def __init__(self, cs: tuple[float, ...] = (1.0,), cv: Any = 3) -> None:
        self.cs = cs
        self.cv = cv

    def fit(self, x: np.ndarray, y: np.ndarray) -> LogisticPath:
        from sklearn.model_selection import check_cv

        splits = list(check_cv(self.cv, y, classifier=True).split(x, y))
        scores = np.zeros((len(splits), len(self.cs)))
        shape = (x.shape[1], len(np.unique(y)))
        for s, (train, test) in enumerate(splits):
            model = logistic(1.0, *shape, warm_start=True)
            for i in sorted(range(len(self.cs)), key=self.cs.__getitem__):
                scores[s, i] = model.set_params(C=self.cs[i]).fit(x[train], y[train]).score(x[test], y[test])
        self.best_estimator_ = logistic(self.cs[int(np.argmax(scores.mean(axis=0)))], *shape).fit(x, y)
        self.classes_ = self.best_estimator_.classes_
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The refitted model's classes for ``x``."""
        return self.best_estimator_.predict(x)
