"""Representation similarity: linear CKA (Kornblith et al., 2019), debiased by default, with a CI and a null.

The debiased estimator replaces HSIC by its unbiased U-statistic (Song et al., 2012;
the "debiased CKA" of Kornblith et al., 2019 and Nguyen et al., 2021): the biased one
is pulled towards 1 by the diagonal of the Gram matrices (two independent random
representations, n = 100, d = 256, give 0.72), the debiased one is centred on 0 for
independent rows. The interval is a percentile bootstrap over groups (episodes) when
they are given, else over rows; the p-value comes from a permutation null that
moves whole groups of one side against the other (within-group correlation kept).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from rli import checks
from rli.errors import RliError

_GRAM_ROWS = 2048  # up to this many rows, the n × n Gram matrices are cheaper than the d1 × d2 cross products
MIN_GROUPS = 5  # a bootstrap / permutation over fewer groups cannot reach p < 0.05 honestly


def _centred(values: Any, name: str) -> np.ndarray:
    arr = checks.array(values, name, what="an activation matrix (n × d) of real numbers", dtype=np.float64,
                       fix="capture activations from finite observations")
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] < 2 or arr.shape[1] < 1:
        raise RliError(f"{name} must be an activation matrix (n × d) of at least 2 observations, got shape {arr.shape}")
    if arr.size:  # an exact power of two: CKA ignores scale, and the products stay inside float64's range
        arr = np.ldexp(arr, -int(np.frexp(np.max(np.abs(arr)))[1]))
    centred = arr - arr.mean(axis=0)
    if not np.any(centred):
        raise RliError(f"{name} is constant over the observations, so its similarity to anything is undefined; "
                       "use observations that vary")
    return centred


def _group_codes(groups: Any, n: int) -> np.ndarray:
    """Each row's group as a code 0..G-1 (in order of first appearance)."""
    try:
        arr = np.asarray(groups)
    except (TypeError, ValueError):
        raise RliError("groups must be one label per row (e.g. obs.labels['episode']), not a ragged sequence") from None
    if arr.ndim != 1 or arr.shape[0] != n:
        raise RliError(f"groups must be one label per row: {n} labels, got shape {arr.shape}; pass e.g. "
                       "groups=obs.labels['episode']")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise RliError("groups contains NaN/inf labels; give every row a group (e.g. its episode index)")
    _, first, codes = np.unique(arr, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # relabel by first appearance: deterministic whatever the labels' type
    return order[codes.ravel()]


class _Debiased:
    """Unbiased HSIC terms (Song et al., 2012) for one pair of sides, under row weights (bootstrap counts).

    With ``K̃``/``L̃`` the linear Gram matrices with zero diagonal and ``w`` the number of
    times each row is drawn, the statistic is that of the resampled data with pairs of
    copies of one row excluded (they are the diagonal, which the estimator leaves out):
    ``T1 + T2·T3/((N−1)(N−2)) − 2·T4/(N−2)`` with ``T1 = wᵀ(K̃∘L̃)w``, ``T2 = wᵀK̃w``,
    ``T3 = wᵀL̃w``, ``T4 = Σ w_i (K̃w)_i (L̃w)_i``, ``N = Σw`` (the common factor
    ``1/(N(N−3))`` cancels in CKA).
    """

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x, self.y = x, y
        n = x.shape[0]
        self.gram = n <= _GRAM_ROWS and n * n <= 4 * x.shape[1] * y.shape[1] + 4096
        self.kx, self.ky = np.einsum("ij,ij->i", x, x), np.einsum("ij,ij->i", y, y)
        self.k1, self.l1 = x @ x.sum(axis=0) - self.kx, y @ y.sum(axis=0) - self.ky  # K̃1, L̃1
        if self.gram:
            self.k, self.l = x @ x.T, y @ y.T
            np.fill_diagonal(self.k, 0.0)
            np.fill_diagonal(self.l, 0.0)
            self.kk, self.ll = float(np.sum(self.k**2)), float(np.sum(self.l**2))
        else:
            self.kk = float(np.sum((x.T @ x) ** 2) - np.sum(self.kx**2))
            self.ll = float(np.sum((y.T @ y) ** 2) - np.sum(self.ky**2))
        t2, t3 = float(self.k1.sum()), float(self.l1.sum())
        self.hkk = self._combine(self.kk, t2, t2, float(self.k1 @ self.k1), n)  # unchanged by permuting rows of b
        self.hll = self._combine(self.ll, t3, t3, float(self.l1 @ self.l1), n)

    @staticmethod
    def _combine(t1: Any, t2: Any, t3: Any, t4: Any, total: Any) -> Any:
        return t1 + t2 * t3 / ((total - 1) * (total - 2)) - 2 * t4 / (total - 2)

    def cka(self, weights: np.ndarray) -> np.ndarray:
        """Debiased CKA for each row of ``weights`` (R × n)."""
        w = np.atleast_2d(weights).astype(np.float64)
        total = w.sum(axis=1)
        if self.gram:
            kw, lw = w @ self.k, w @ self.l  # rows: K̃w, L̃w
            kl = np.sum((w @ (self.k * self.l)) * w, axis=1)
            kk = np.sum((w @ (self.k * self.k)) * w, axis=1)
            ll = np.sum((w @ (self.l * self.l)) * w, axis=1)
        else:
            kw = (w @ self.x) @ self.x.T - w * self.kx
            lw = (w @ self.y) @ self.y.T - w * self.ky
            kl, kk, ll = (np.empty(len(w)) for _ in range(3))
            if self.x.shape[0] * max(self.x.shape[1], self.y.shape[1]) ** 2 <= 2**24:  # vectorised: rows x_i ⊗ y_i
                n = self.x.shape[0]
                for out, (u, v, du, dv) in zip((kl, kk, ll), ((self.x, self.y, self.kx, self.ky),
                                                              (self.x, self.x, self.kx, self.kx),
                                                              (self.y, self.y, self.ky, self.ky))):
                    outer = (u[:, :, None] * v[:, None, :]).reshape(n, -1)
                    out[:] = np.sum((w @ outer) ** 2, axis=1) - (w**2) @ (du * dv)
                rows: Any = ()
            else:
                rows = enumerate(w)
            for r, row in rows:
                wx, wy = self.x * row[:, None], self.y * row[:, None]
                kl[r] = np.sum((wx.T @ self.y) ** 2) - np.sum(row**2 * self.kx * self.ky)
                kk[r] = np.sum((wx.T @ self.x) ** 2) - np.sum(row**2 * self.kx**2)
                ll[r] = np.sum((wy.T @ self.y) ** 2) - np.sum(row**2 * self.ky**2)
        t2, t3 = np.sum(kw * w, axis=1), np.sum(lw * w, axis=1)
        hkl = self._combine(kl, t2, t3, np.sum(w * kw * lw, axis=1), total)
        hkk = self._combine(kk, t2, t2, np.sum(w * kw * kw, axis=1), total)
        hll = self._combine(ll, t3, t3, np.sum(w * lw * lw, axis=1), total)
        with np.errstate(invalid="ignore", divide="ignore"):
            return hkl / np.sqrt(np.maximum(hkk, 0.0) * np.maximum(hll, 0.0))

    def permuted(self, order: np.ndarray) -> float:
        """Debiased CKA with the rows of the second side taken in ``order`` (all weights 1)."""
        n = self.x.shape[0]
        if self.hkk <= 0 or self.hll <= 0:
            return math.nan
        if self.gram:
            kl = float(np.sum(self.k * self.l[np.ix_(order, order)]))
        else:
            kl = float(np.sum((self.x.T @ self.y[order]) ** 2) - np.sum(self.kx * self.ky[order]))
        hkl = self._combine(kl, float(self.k1.sum()), float(self.l1.sum()), float(self.k1 @ self.l1[order]), n)
        return float(hkl / math.sqrt(self.hkk * self.hll))


def _biased(x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> float:
    """The biased (V-statistic) linear CKA of the rows of ``x``/``y`` drawn ``weights`` times."""
    if weights is not None:
        mean = weights @ x / weights.sum(), weights @ y / weights.sum()
        x, y = x - mean[0], y - mean[1]
        wx = x * weights[:, None]
        cross, xx, yy = wx.T @ y, wx.T @ x, (y * weights[:, None]).T @ y
    else:
        cross, xx, yy = x.T @ y, x.T @ x, y.T @ y
    denominator = np.linalg.norm(xx) * np.linalg.norm(yy)
    return float(np.linalg.norm(cross) ** 2 / denominator) if denominator > 0 else math.nan


@dataclass(frozen=True)
class CKAResult:
    """Linear CKA between two activation sets, with a confidence interval and a permutation p-value.

    ``value`` is the CKA (``float(result)`` gives it too): debiased (``debiased=True``,
    unbiased HSIC; in [−1, 1], about 0 for unrelated representations, negative values are
    noise around 0) or the biased estimator (in [0, 1], inflated at small n / large d).
    ``ci`` is a percentile bootstrap interval of ``value`` over ``resampled`` units
    (``"groups"``: whole groups, e.g. episodes, drawn with replacement; ``"rows"``); for
    the biased estimator, which rises on resamples that repeat rows, it is a
    delete-one-group (or delete-one-of-20-row-blocks) jackknife t-interval instead.
    ``interval`` names the method (``"bootstrap"`` or ``"jackknife"``). ``p_value`` is a
    one-sided Monte Carlo permutation p-value, ``(1 + #{null ≥ observed})
    / (1 + n_permutations)``, for "the two sides are unrelated": rows of ``b`` are permuted
    (``"rows"``) or whole groups of ``b`` are moved against the groups of ``a``
    (``"groups"``, each group cut to its first ``permutation_rows // n_groups`` rows so
    that groups align; ``permutation_rows`` rows enter the test). ``null_q95`` is the 95th
    percentile of the permutation null: a CKA that a representation unrelated to ``a``
    reaches one time in twenty.

    The interval and the p-value say how sure the value is, not that it is large: whether
    it is "similar enough" is the caller's threshold (see
    :func:`pytest_rli.assertions.assert_representation_similar`).
    """

    value: float
    ci: tuple[float, float]
    p_value: float
    null_q95: float
    debiased: bool
    n: int
    resampled: str
    interval: str
    n_groups: int | None
    permutation_rows: int
    confidence: float
    n_boot: int
    n_permutations: int
    seed: int

    def __float__(self) -> float:
        return float(self.value)

    def to_dict(self) -> dict[str, Any]:
        """Plain-python form (JSON-able)."""
        return {"value": self.value, "ci": list(self.ci), "p_value": self.p_value, "null_q95": self.null_q95,
                "debiased": self.debiased, "n": self.n, "resampled": self.resampled,
                "interval": self.interval, "n_groups": self.n_groups,
                "permutation_rows": self.permutation_rows, "confidence": self.confidence, "n_boot": self.n_boot,
                "n_permutations": self.n_permutations, "seed": self.seed}

    def __str__(self) -> str:
        unit = f"{self.n_groups} groups" if self.resampled == "groups" else f"{self.n} rows"
        return (f"{'debiased' if self.debiased else 'biased'} linear CKA {self.value:.4f} "
                f"({self.confidence:.0%} CI [{self.ci[0]:.4f}, {self.ci[1]:.4f}], {self.interval} over {unit}); "
                f"permutation p = {self.p_value:.4g} against unrelated {self.resampled} "
                f"(null 95th percentile {self.null_q95:.4f}), n = {self.n}")


def cka(a: Any, b: Any, *, debiased: bool = True, groups: Any = None, confidence: float = 0.95,
        n_boot: int = 1000, n_permutations: int = 1000, seed: int = 0) -> CKAResult:
    """Linear centred kernel alignment between two activation sets on the same observations.

    ``HSIC(K, L) / √(HSIC(K, K)·HSIC(L, L))`` for the linear Gram matrices of ``a``
    (n × d1) and ``b`` (n × d2). With ``debiased=True`` (default) HSIC is the unbiased
    U-statistic of Song et al. (2012) (Kornblith et al.'s debiased CKA): 1 for identical
    representations, about 0 for unrelated ones at any n and d. ``debiased=False`` gives
    the classic ``‖BᵀA‖²_F / (‖AᵀA‖_F ‖BᵀB‖_F)`` on column-centred data, biased upwards
    when d is large against n. Both are symmetric and invariant to orthogonal transforms,
    isotropic scaling and offsets of either side (not to arbitrary linear maps).

    ``groups`` (one label per row, e.g. ``obs.labels["episode"]``): rows of one group are
    correlated (consecutive states of an episode), so the bootstrap draws whole groups
    and the permutation null moves whole groups (at least 5 are needed); without it,
    rows are treated as independent. ``confidence`` sets the interval, ``n_boot`` and
    ``n_permutations`` the resampling sizes, ``seed`` makes them reproducible. Returns
    a :class:`CKAResult` (``float(result)`` is the CKA).

    Example:
        >>> import numpy as np, rli
        >>> x = np.random.default_rng(0).normal(size=(500, 8))
        >>> rotation = np.linalg.qr(np.random.default_rng(1).normal(size=(8, 8)))[0]
        >>> round(rli.cka(x, 3.0 * x @ rotation).value, 6)
        1.0
        >>> unrelated = rli.cka(x, np.random.default_rng(2).normal(size=(500, 8)))
        >>> abs(unrelated.value) < 0.05, unrelated.p_value > 0.05
        (True, True)
    """
    debiased = checks.flag(debiased, "debiased")
    confidence = checks.real(confidence, "confidence", minimum=0.5, maximum=0.999)
    n_boot = checks.count(n_boot, "n_boot", minimum=100, hint="; the percentile interval needs ≥ 100 resamples")
    n_permutations = checks.count(n_permutations, "n_permutations", minimum=19,
                                  hint="; a p-value below 0.05 needs ≥ 19 permutations")
    seed = checks.seed(seed)
    x, y = _centred(a, "a"), _centred(b, "b")
    n = x.shape[0]
    if y.shape[0] != n:
        raise RliError(f"a has {n} rows but b has {y.shape[0]}; CKA compares activations of the same "
                       "observations, row by row")
    if debiased and n < 4:
        raise RliError(f"debiased CKA needs at least 4 observations, got {n}; capture more, or pass debiased=False")
    codes = None if groups is None else _group_codes(groups, n)
    n_groups = None if codes is None else int(codes.max()) + 1
    if n_groups is not None and n_groups < MIN_GROUPS:
        raise RliError(f"groups has {n_groups} group(s) but the grouped bootstrap and permutation null need at "
                       f"least {MIN_GROUPS}; collect more episodes, or pass groups=None to treat rows as independent")
    engine = _Debiased(x, y) if debiased else None

    value = float(engine.cka(np.ones(n))[0]) if engine is not None else _biased(x, y)
    if not math.isfinite(value):
        raise RliError("CKA is undefined here: one side has no variation left once its diagonal is removed "
                       "(too few distinct observations); use more, varied observations")
    rng = np.random.default_rng(seed)
    tail = (1 - confidence) / 2
    if engine is None:  # the biased V-statistic rises on resamples with repeated rows: a jackknife, not a bootstrap
        blocks_of = codes if codes is not None else rng.permutation(n) % min(n, 20)
        count = int(blocks_of.max()) + 1
        leave_out = np.array([_biased(x, y, (blocks_of != j).astype(np.float64)) for j in range(count)])
        spread = math.sqrt((count - 1) / count * float(np.sum((leave_out - leave_out.mean()) ** 2)))
        from scipy import stats

        half = float(stats.t.ppf(1 - tail, count - 1)) * spread
        ci = (value - half, value + half)
    else:
        draws = []
        for start in range(0, n_boot, 256):  # bounded memory: 256 weight vectors at a time
            size = min(256, n_boot - start)
            if codes is None:
                counts = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(size)])
            else:
                assert n_groups is not None, "n_groups is set whenever codes are"
                counts = np.stack([np.bincount(rng.integers(0, n_groups, n_groups), minlength=n_groups)[codes]
                                   for _ in range(size)])
            draws.append(engine.cka(counts))
        boot = np.concatenate(draws)
        boot = boot[np.isfinite(boot)]
        if boot.size < n_boot // 2:
            raise RliError("most bootstrap resamples leave one side without variation; use more, varied observations")
        ci = (float(np.quantile(boot, tail)), float(np.quantile(boot, 1 - tail)))

    if codes is None:
        rows = np.arange(n)
        blocks = [rows]
    else:
        assert n_groups is not None, "n_groups is set whenever codes are"
        sizes = np.bincount(codes)
        m = int(sizes.min())
        blocks = [np.flatnonzero(codes == g)[:m] for g in range(n_groups)]
        rows = np.concatenate(blocks)
    xs, ys = x[rows] - x[rows].mean(axis=0), y[rows] - y[rows].mean(axis=0)
    if len(rows) < 4 or not np.any(xs) or not np.any(ys):
        raise RliError(f"the permutation null aligns groups on their first {len(rows) // max(len(blocks), 1)} rows, "
                       "which leaves too little variation; use groups of more similar length, or groups=None")
    null_engine = _Debiased(xs, ys) if debiased else None

    def permuted(order: np.ndarray) -> float:
        if null_engine is not None:
            return null_engine.permuted(order)
        return _biased(xs, ys[order])

    observed = permuted(np.arange(len(rows)))
    block = len(rows) // len(blocks)
    null = np.empty(n_permutations)
    for i in range(n_permutations):
        if codes is None:
            order = rng.permutation(n)
        else:
            order = (rng.permutation(len(blocks))[:, None] * block + np.arange(block)).ravel()
        null[i] = permuted(order)
    null = np.where(np.isfinite(null), null, -np.inf)
    p_value = float((1 + np.sum(null >= observed - 1e-12 * abs(observed))) / (1 + n_permutations))
    return CKAResult(value=value, ci=ci, p_value=p_value, null_q95=float(np.quantile(null, 0.95)), debiased=debiased,
                     n=n, resampled="rows" if codes is None else "groups", n_groups=n_groups,
                     interval="bootstrap" if debiased else "jackknife",
                     permutation_rows=len(rows), confidence=confidence, n_boot=n_boot,
                     n_permutations=n_permutations, seed=seed)
