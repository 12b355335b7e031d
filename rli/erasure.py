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

Exact on float32 activations: a float32 value is an exact float64 number, so the
statistics are taken in float64 and the only rounding is theirs; directions are left
out of the whitening only below ``d·eps64·λmax`` (the cut-off of ``numpy.linalg.pinv``
and of concept-erasure in float64), never below float32's ``d·eps32·λmax``, which on a
smooth 2-D grid of a 128-unit layer dropped 72 real directions.

The guarantee is in-sample and linear: on the observations the eraser was fit on, no
linear read-out beats a constant. It says nothing about new observations (the eraser's
covariances are estimates) or about nonlinear read-outs; :func:`erasure_report`
measures both, with grouped (per-episode) splits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rli import checks, defaults
from rli.errors import RliError

_RANK_RTOL = 1e-8


@dataclass(frozen=True)
class LeaceFit:
    """A fitted LEACE eraser ``x ↦ x − (x − mean) @ proj_right.T @ proj_left.T`` (rank ``r`` edit)."""

    mean: np.ndarray
    proj_left: np.ndarray
    proj_right: np.ndarray
    whitened: int = -1  # covariance directions used in the whitening (the rest are zero to float64 precision)
    shrinkage: bool = False  # whitened with :func:`linear_shrinkage` instead of the sample covariance

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


def linear_shrinkage(cov: Any, n: int) -> np.ndarray:
    """Optimal linear shrinkage of a sample covariance (n observations) towards ``tr(S)/d · I``.

    The estimator concept-erasure's ``LeaceFitter`` uses by default
    (``optimal_linear_shrinkage``, arXiv:1308.2608), in float64, with the weight of the
    sample covariance clipped to [0, 1] (the formula leaves the positive semi-definite
    cone for a nearly isotropic ``S``).

    Example:
        >>> import numpy as np
        >>> from rli.erasure import linear_shrinkage
        >>> cov = np.diag([4.0, 1.0, 0.01])
        >>> shrunk = linear_shrinkage(cov, n=20)
        >>> bool(np.isclose(np.trace(shrunk), np.trace(cov))), bool(np.linalg.eigvalsh(shrunk)[0] > 0.01)
        (True, True)
    """
    s = np.asarray(cov, dtype=np.float64)
    d = s.shape[-1]
    eps = np.finfo(np.float64).eps
    trace = float(np.trace(s))
    target_norm = trace * trace / d  # ||tr(S)/d · I||_F²
    product = trace * trace / d  # tr(S · tr(S)/d · I)
    top = trace * trace * target_norm / n
    bottom = float(np.sum(s * s)) * target_norm - product * product
    alpha = min(max(1.0 - (top + eps) / (bottom + eps), 0.0), 1.0)
    beta = (1.0 - alpha) * (product + eps) / (target_norm + eps)
    return alpha * s + beta * (trace / d) * np.eye(d)


def fit_leace(acts: Any, concept: Any, *, shrinkage: bool = False) -> LeaceFit:
    """Fit the LEACE eraser of ``concept`` (n, k) floats from activations (n, d).

    Statistics are float64 whatever the activations' dtype (float32 values are exact
    float64 numbers). Directions whose covariance eigenvalue is zero to float64
    precision (below ``d·eps64·max``, the cut-off of ``numpy.linalg.pinv``) are left
    alone. ``shrinkage=True`` whitens with concept-erasure's default covariance
    estimate (:func:`linear_shrinkage`) instead of the sample covariance; the erased
    data still has exactly zero cross-covariance with the concept (any invertible
    whitening does that), the edit is just smallest in the shrunk metric.

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
    checks.flag(shrinkage, "shrinkage")
    x = np.asarray(acts).astype(np.float64)
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
    cov = xc.T @ xc / n
    cov = (cov + cov.T) / 2
    if shrinkage:
        cov = linear_shrinkage(cov, n)
    eigval, eigvec = np.linalg.eigh(cov)
    usable = eigval > eigval[-1] * d * np.finfo(np.float64).eps
    root = np.sqrt(np.where(usable, eigval, 1.0))
    whiten = (eigvec * np.where(usable, 1.0 / root, 0.0)) @ eigvec.T
    unwhiten = (eigvec * np.where(usable, root, 0.0)) @ eigvec.T
    u, singular, _ = np.linalg.svd(whiten @ (xc.T @ zc / n), full_matrices=False)
    u = u[:, singular > _RANK_RTOL * singular[0]] if singular.size and singular[0] > 0 else u[:, :0]
    return LeaceFit(mean=mean, proj_left=unwhiten @ u, proj_right=u.T @ whiten, whitened=int(usable.sum()),
                    shrinkage=bool(shrinkage))


@dataclass(frozen=True)
class RecoveryScore:
    """How well a probe recovers a concept: mean held-out R² over grouped folds, its 95% CI and the fold scores.

    ``recovered`` is the decision: the CI lies above 0 (the concept is decodable better
    than each test fold's own mean).
    """

    r2: float
    ci: tuple[float, float]
    folds: tuple[float, ...]
    kind: str

    @property
    def recovered(self) -> bool:
        """The 95% CI of the held-out R² excludes 0 from below."""
        return bool(self.ci[0] > 0.0)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for reports."""
        return {"r2": self.r2, "ci": list(self.ci), "folds": list(self.folds), "kind": self.kind,
                "recovered": self.recovered}

    def __str__(self) -> str:
        return f"{self.r2:.3f} [{self.ci[0]:.3f}, {self.ci[1]:.3f}]"


_RIDGE_ALPHAS = np.logspace(-4, 4, 17)  # times the training rows and the mean feature variance


def _ridge_predictions(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                       alphas: np.ndarray) -> np.ndarray:
    """Ridge predictions (len(alphas), n_test, k) for every penalty at once, from one SVD.

    On the activations as they are (centred, not standardised), the penalties relative to
    their mean variance: what erasure leaves along an erased direction is rounding noise,
    and standardising would scale it up to unit variance and read the concept from it (an
    erased unit's residual of 1e-16 correlates with the concept; measured R² 0.99 on it).
    """
    mean = x_train.mean(axis=0)
    xt, xs = x_train - mean, x_test - mean
    level = float(np.mean(xt**2)) or 1.0
    offset = y_train.mean(axis=0)
    u, singular, vt = np.linalg.svd(xt, full_matrices=False)
    projected = u.T @ (y_train - offset)  # (r, k)
    shrink = singular[None, :] / (singular[None, :] ** 2 + alphas[:, None] * level * len(xt))  # (a, r)
    return np.einsum("nr,ar,rk->ank", xs @ vt.T, shrink, projected) + offset


def _ridge_fit_predict(x_train: np.ndarray, y_train: np.ndarray, groups: np.ndarray,
                       x_test: np.ndarray) -> np.ndarray:
    """Ridge predictions for ``x_test``, the penalty chosen by grouped CV (3 folds, or 2) on the training rows."""
    from sklearn.model_selection import GroupKFold

    names = np.unique(groups)
    if names.size < 2:
        return _ridge_predictions(x_train, y_train, x_test, _RIDGE_ALPHAS[8:9])[0]
    errors = np.zeros(_RIDGE_ALPHAS.size)
    for inner_train, inner_test in GroupKFold(n_splits=min(3, names.size)).split(x_train, groups=groups):
        guess = _ridge_predictions(x_train[inner_train], y_train[inner_train], x_train[inner_test], _RIDGE_ALPHAS)
        errors += ((guess - y_train[inner_test][None]) ** 2).sum(axis=(1, 2))
    best = _RIDGE_ALPHAS[int(np.argmin(errors))]
    return _ridge_predictions(x_train, y_train, x_test, np.array([best]))[0]


def _mlp_fit_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, seed: int) -> np.ndarray:
    """One hidden layer of 64 ReLU units on centred, uniformly scaled inputs and standardised targets: 400 Adam steps."""
    from rli.threads import one_torch_thread

    with one_torch_thread():  # tiny matrices: extra threads only spin-wait
        return _mlp_steps(x_train, y_train, x_test, seed)


def _mlp_steps(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, seed: int) -> np.ndarray:
    import torch

    mean = x_train.mean(axis=0)  # one scale for all units, as for ridge: per-unit scaling would amplify rounding noise
    scale = float(np.sqrt(np.mean((x_train - mean) ** 2))) or 1.0
    y = y_train.reshape(len(y_train), -1)
    y_mean, y_scale = y.mean(axis=0), y.std(axis=0)
    y_scale[y_scale == 0] = 1.0
    generator = torch.Generator().manual_seed(seed)
    d, k = x_train.shape[1], y.shape[1]
    w1 = (torch.rand(d, 64, generator=generator, dtype=torch.float64) * 2 - 1) / d ** 0.5
    w2 = (torch.rand(64, k, generator=generator, dtype=torch.float64) * 2 - 1) / 8.0
    params = [w1.requires_grad_(), torch.zeros(64, dtype=torch.float64, requires_grad=True),
              w2.requires_grad_(), torch.zeros(k, dtype=torch.float64, requires_grad=True)]
    xt = torch.as_tensor((x_train - mean) / scale)
    yt = torch.as_tensor((y - y_mean) / y_scale)
    optimiser = torch.optim.Adam(params, lr=1e-2, weight_decay=1e-4)
    for _ in range(400):
        optimiser.zero_grad()
        loss = ((torch.relu(xt @ params[0] + params[1]) @ params[2] + params[3] - yt) ** 2).mean()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        xs = torch.as_tensor((x_test - mean) / scale)
        out = (torch.relu(xs @ params[0] + params[1]) @ params[2] + params[3]).numpy()
    return out * y_scale + y_mean


def grouped_r2(acts: Any, target: Any, groups: Any, *, kind: str = "ridge", folds: int = defaults.FOLDS,
               seed: int = 0) -> RecoveryScore:
    """Held-out R² of ``target`` from ``acts`` with folds of whole groups (episodes, blocks), and its 95% CI.

    ``kind="ridge"``: ridge on the centred activations (not standardised: see
    ``_ridge_predictions``), penalty chosen by an inner grouped 3-fold CV
    (or 2-fold) inside each training fold. ``kind="mlp"``: one hidden layer of 64 ReLU
    units on centred inputs (one scale for all units) and standardised targets, a fixed 400 full-batch Adam steps (no
    early stopping, whose validation split would be row-level). No group is ever in both the
    training and the test rows of a fold, at any level. The CI is Nadeau–Bengio's over
    the fold scores (:func:`rli.stats.cv_interval`).

    Example:
        >>> import numpy as np
        >>> from rli.erasure import grouped_r2
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(400, 5))
        >>> score = grouped_r2(x, x[:, 0] + 0.1 * rng.normal(size=400), np.repeat(np.arange(10), 40))
        >>> score.r2 > 0.95, score.recovered
        (True, True)
    """
    from sklearn.metrics import r2_score
    from sklearn.model_selection import GroupKFold

    from rli.stats import cv_interval

    if kind not in ("ridge", "mlp"):
        raise RliError(f"kind must be 'ridge' or 'mlp', not {kind!r}")
    x = np.asarray(acts, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    y = y.reshape(len(y), -1) if y.ndim > 1 else y
    ids = np.asarray(groups)
    if x.ndim != 2 or len(y) != len(x) or ids.shape != (len(x),):
        raise RliError(f"grouped_r2 needs activations (n, d), a target (n,) or (n, k) and groups (n,); got "
                       f"{x.shape}, {y.shape} and {ids.shape}")
    n_groups = np.unique(ids).size
    checks.count(folds, "folds", minimum=2, maximum=n_groups, hint=f" (at most the number of groups, {n_groups}; "
                 "collect more groups (episodes) or pass a smaller folds=)")
    y2 = y.reshape(len(y), -1)
    scores = []
    for train, test in GroupKFold(n_splits=int(folds), shuffle=True, random_state=seed).split(x, y2, ids):
        guess = (_ridge_fit_predict(x[train], y2[train], ids[train], x[test]) if kind == "ridge"
                 else _mlp_fit_predict(x[train], y2[train], x[test], seed))
        scores.append(float(r2_score(y2[test], guess)))
    low, high = cv_interval(scores)
    return RecoveryScore(r2=float(np.mean(scores)), ci=(float(low), float(high)), folds=tuple(scores), kind=kind)


@dataclass(frozen=True)
class ErasureReport:
    """What a LEACE erasure removes: the in-sample guarantee, held-out erasure and nonlinear recovery.

    ``in_sample``: ridge R² (grouped CV) on the erased activations of the groups the
    eraser was fit on, and ``max_correlation`` there (the largest |correlation| between
    an erased unit and a concept column: the guarantee makes it zero to rounding).
    ``before`` / ``held_out``: ridge R² on the other groups before erasure and after
    erasure with the eraser fit on the first ones (new episodes). ``nonlinear``: an MLP
    on the erased fit activations (``None`` if not asked). LEACE promises nothing about
    new observations or nonlinear read-outs; these scores say what happened.
    """

    concept: str
    layer: str
    rank: int
    shrinkage: bool
    split: str
    n_fit: int
    n_held_out: int
    groups_fit: int
    groups_held_out: int
    max_correlation: float
    in_sample: RecoveryScore
    before: RecoveryScore
    held_out: RecoveryScore
    nonlinear: RecoveryScore | None

    def to_dict(self) -> dict[str, Any]:
        """Plain data for reports."""
        return {"concept": self.concept, "layer": self.layer, "method": "LEACE", "rank": self.rank,
                "shrinkage": self.shrinkage, "split": self.split, "n_fit": self.n_fit,
                "n_held_out": self.n_held_out, "groups_fit": self.groups_fit,
                "groups_held_out": self.groups_held_out, "max_correlation": self.max_correlation,
                "in_sample": self.in_sample.to_dict(), "before": self.before.to_dict(),
                "held_out": self.held_out.to_dict(),
                "nonlinear": None if self.nonlinear is None else self.nonlinear.to_dict(),
                "guarantee": "in-sample, linear"}

    def __str__(self) -> str:
        lines = [
            f"LEACE erasure of {self.concept} at {self.layer} (rank {self.rank}"
            f"{', shrunk covariance' if self.shrinkage else ''}; split {self.split})",
            f"  in-sample (the guarantee): on the {self.n_fit} fit observations ({self.groups_fit} groups) the largest "
            f"|correlation| of an erased unit with the concept is {self.max_correlation:.1e}; grouped-CV ridge R² "
            f"{self.in_sample}",
            f"  held out: on {self.groups_held_out} other groups ({self.n_held_out} observations) ridge R² "
            f"{self.before} before erasure, {self.held_out} after (eraser fit on the {self.groups_fit} fit groups): "
            + ("the CI excludes 0, so linear information about the concept remains on new data"
               if self.held_out.recovered else
               "the CI reaches 0: no linear recovery detected on new data (which does not prove there is none)"),
        ]
        if self.nonlinear is not None:
            lines.append(
                f"  nonlinear: an MLP (64 ReLU units) on the erased fit activations, grouped-CV R² {self.nonlinear}: "
                + ("the CI excludes 0, so the concept is still decodable nonlinearly"
                   if self.nonlinear.recovered else "no nonlinear recovery detected by this probe")
                + "; LEACE promises nothing about nonlinear read-outs")
        return "\n".join(lines)


def _groups(obs: Any, groups: Any, n: int) -> tuple[np.ndarray, str]:
    """Group ids (n,) and how they were chosen: ``groups=`` (array or label name), the ``episode`` label, or rows."""
    from rli.observations import ObsSet

    if isinstance(groups, str):
        if not isinstance(obs, ObsSet) or groups not in obs.labels:
            raise RliError(f"groups={groups!r} is not a label of the observations; pass an rli.ObsSet with that "
                           "label, or the group of each observation as an array")
        return np.asarray(obs.labels[groups]), f"by {groups!r}"
    if groups is None:
        if isinstance(obs, ObsSet) and "episode" in obs.labels:
            return np.asarray(obs.labels["episode"]), "by 'episode'"
        return np.arange(n), "by row (no groups: rows assumed independent, which rollouts are not)"
    ids = np.asarray(groups)
    if ids.shape != (n,):
        raise RliError(f"groups has shape {ids.shape} for {n} observations; give one group id per observation")
    return ids, "by the given groups"


def assess_erasure(acts: Any, concept: Any, groups: Any, *, held_out: float = 0.5, folds: int = defaults.FOLDS, seed: int = 0,
                   shrinkage: bool = False, nonlinear: bool = True, concept_name: str = "the concept",
                   layer: str = "the layer", split: str = "by the given groups") -> ErasureReport:
    """:class:`ErasureReport` of LEACE on activations (n, d) against a concept matrix (n, k), split by ``groups``.

    A ``held_out`` share of the groups (drawn with ``seed``) is set aside; the eraser is
    fit on the rest. Every probe is :func:`grouped_r2` with ``folds`` folds, so each
    side needs at least ``folds`` groups.

    Example:
        >>> import numpy as np
        >>> from rli.erasure import assess_erasure
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(800, 6))
        >>> report = assess_erasure(x, x[:, 0], np.repeat(np.arange(20), 40), nonlinear=False)
        >>> report.before.recovered, report.held_out.recovered, report.max_correlation < 1e-12
        (True, False, True)
    """
    if not (isinstance(held_out, float) and 0.0 < held_out < 1.0):
        raise RliError(f"held_out must be a fraction of the groups between 0 and 1 (e.g. 0.5), not {held_out!r}")
    checks.count(folds, "folds", minimum=2)
    checks.flag(nonlinear, "nonlinear")
    x = np.asarray(acts)
    z = np.asarray(concept, dtype=np.float64).reshape(len(x), -1)
    ids = np.asarray(groups)
    names = np.unique(ids)
    n_held = round(float(names.size * held_out))
    if min(n_held, names.size - n_held) < folds:
        raise RliError(f"the observations hold {names.size} groups ({split}), too few to fit the eraser on some and "
                       f"probe {folds}-fold on others (held_out={held_out}: at least {folds} groups each side); "
                       "collect more episodes (a larger n in ObsSet.from_rollouts) or pass a smaller folds= (≥ 2)")
    held_names = np.random.default_rng(seed).permutation(names)[:n_held]
    is_held = np.isin(ids, held_names)
    x_fit, z_fit, g_fit = x[~is_held], z[~is_held], ids[~is_held]
    x_new, z_new, g_new = x[is_held], z[is_held], ids[is_held]
    eraser = fit_leace(x_fit, z_fit, shrinkage=shrinkage)
    erased = eraser(x_fit)
    centred = erased - erased.mean(axis=0)
    zc = z_fit - z_fit.mean(axis=0)
    spread_x, spread_z = np.asarray(x_fit, dtype=np.float64).std(axis=0), zc.std(axis=0)
    keep_x, keep_z = spread_x > 0, spread_z > 0
    corr = (centred[:, keep_x].T @ zc[:, keep_z] / len(zc)) / np.outer(spread_x[keep_x], spread_z[keep_z])
    single = z.shape[1] == 1
    y_fit, y_new = (z_fit[:, 0], z_new[:, 0]) if single else (z_fit, z_new)
    return ErasureReport(
        concept=concept_name, layer=layer, rank=eraser.rank, shrinkage=eraser.shrinkage, split=split,
        n_fit=len(x_fit), n_held_out=len(x_new), groups_fit=names.size - n_held, groups_held_out=n_held,
        max_correlation=float(np.abs(corr).max()) if corr.size else 0.0,
        in_sample=grouped_r2(erased, y_fit, g_fit, folds=folds, seed=seed),
        before=grouped_r2(x_new, y_new, g_new, folds=folds, seed=seed),
        held_out=grouped_r2(eraser(x_new), y_new, g_new, folds=folds, seed=seed),
        nonlinear=grouped_r2(erased, y_fit, g_fit, kind="mlp", folds=folds, seed=seed) if nonlinear else None)


def erasure_report(policy: Any, layer: Any, obs: Any, concept: Any, *, groups: Any = None, held_out: float = 0.5,
                   folds: int = defaults.FOLDS, seed: int = 0, categorical: bool | None = None, shrinkage: bool = False,
                   nonlinear: bool = True, recurrent_state: Any = None) -> ErasureReport:
    """How far LEACE erasure of ``concept`` from ``layer`` goes: in-sample, on held-out episodes, nonlinearly.

    Captures ``layer`` on ``obs`` and runs :func:`assess_erasure`. Groups: ``groups=``
    (an array or a label name), else the ``episode`` label that
    :meth:`rli.ObsSet.from_rollouts` records, else rows (said so in ``split``).
    ``concept``, ``categorical`` and ``shrinkage`` as in :func:`rli.erase`.

    Example:
        >>> import numpy as np, torch, torch.nn as nn, rli
        >>> _ = torch.manual_seed(0)
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 2)))
        >>> x = np.random.default_rng(0).normal(size=(600, 3))
        >>> obs = rli.ObsSet(x, labels={"first": x[:, 0], "episode": np.repeat(np.arange(12), 50)})
        >>> report = rli.erasure.erasure_report(policy, 1, obs, "first", folds=3, nonlinear=False)
        >>> report.split, report.groups_fit, report.before.recovered, report.max_correlation < 1e-9
        ("by 'episode'", 6, True, True)
    """
    from rli.capture import capture

    layer_info = policy.layer(layer)
    ids, split = _groups(obs, groups, _length(obs))
    acts = capture(policy, obs, layers=[layer], recurrent_state=recurrent_state)[layer]
    matrix, name = concept_matrix(concept, obs, acts.shape[0], categorical=categorical)
    where = layer_info.aliases[0] if layer_info.aliases else layer_info.name
    return assess_erasure(acts, matrix, ids, held_out=held_out, folds=folds, seed=seed, shrinkage=shrinkage,
                          nonlinear=nonlinear, concept_name=name, layer=where, split=split)


def _length(obs: Any) -> int:
    try:
        return len(obs)
    except TypeError:
        raise RliError(f"erasure_report needs observations with a length (an array or an rli.ObsSet), not "
                       f"{type(obs).__name__}") from None
