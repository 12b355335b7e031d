"""Sensor polarity inversion: does the probe still decode the target when the sensor is negated?

The interrogation protocol's second step (paper §3.3): a probe fitted on normal
observations is scored on observations whose sensor columns are negated. If the layer
encodes the target *because it reads the sensor*, the score collapses (the drop is
large), and a probe refitted on the inverted observations points the other way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from rli import checks, defaults, stats
from rli.capture import DEFAULT_CHUNK, Pool, capture, iter_activations
from rli.deprecation import renamed_arguments
from rli.errors import RliError
from rli.moments import Moments, accumulate, fold_order
from rli.observations import ObsSet, obs_length
from rli.policy import LayerSpec, Policy
from rli.probes import fold_split, probe_options, probe_target
from rli.recurrent import RecurrentState, check_mode
from rli.ridge import check_ridge_width, ridge_outcomes, target_exponent
from rli.tensors import to_numpy


@renamed_arguments(indices="sensors")
def negate_sensors(obs: Any, sensors: int | Sequence[int] | np.ndarray) -> Any:
    """A copy of ``obs`` with the observation entries at ``sensors`` negated.

    ``sensors`` (``indices=`` before, deprecated) index one flattened observation; each
    listed entry is negated once.
    An :class:`~rli.ObsSet` gives an ObsSet with the same labels (the true quantities,
    which the inversion does not change); an array gives an array.

    Example:
        >>> import numpy as np, rli
        >>> rli.negate_sensors(np.array([[1.0, 2.0, 3.0]]), [0, 2]).tolist()
        [[-1.0, 2.0, -3.0]]
        >>> obs = rli.ObsSet(np.ones((2, 3)), labels={"upwash": [0.1, 0.2]})
        >>> rli.negate_sensors(obs, 1).obs[:, 1].tolist(), obs.obs[:, 1].tolist()
        ([-1.0, -1.0], [1.0, 1.0])
    """
    arr = to_numpy(obs.obs if isinstance(obs, ObsSet) else obs)
    try:
        arr = np.array(arr, copy=True)
    except (TypeError, ValueError):
        raise RliError(f"observations must be an array (n, *obs_shape), not a ragged {type(arr).__name__}") from None
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.signedinteger)):
        raise RliError(f"cannot negate observations of dtype {arr.dtype}; negate_sensors needs signed numbers")
    if arr.size == 0:
        raise RliError(f"no observations to negate (shape {arr.shape})")
    flat = arr.reshape(len(arr), -1) if arr.ndim > 1 else arr.reshape(1, -1)
    flat[:, _sensor_indices(sensors, flat.shape[1])] *= -1
    if isinstance(obs, ObsSet):
        return ObsSet(arr, dict(obs.labels), meta=obs.meta)
    return arr


def _sensor_indices(sensors: Any, size: int) -> np.ndarray:
    try:
        raw = np.atleast_1d(np.asarray(sensors))
    except (TypeError, ValueError):
        raw = np.zeros(0)
    if raw.size == 0 or raw.ndim != 1 or not np.issubdtype(raw.dtype, np.integer):
        raise RliError(f"sensors must be an observation index or a list of them, got {sensors!r}")
    bad = raw[(raw < -size) | (raw >= size)]
    if bad.size:
        raise RliError(f"sensor index {int(bad[0])} is outside the observation (indices 0..{size - 1})")
    return np.unique(raw % size)


_READINGS = {"opposite": "flipped: the CI lies below 0", "same": "not flipped: the CI lies above 0",
             "undetermined": "undetermined: the CI contains 0 or a probe's R² CI reaches 0"}


@dataclass(frozen=True)
class PolarityResult:
    """Outcome of :func:`polarity_test`.

    ``r2_normal`` is the probe's held-out R² on normal observations; ``r2_inverted``
    scores the same fold models on the same held-out rows with the sensors negated;
    ``drop = r2_normal - r2_inverted`` with a 95% CI over the paired fold drops
    (:func:`rli.stats.cv_interval`). ``r2_refit`` is the held-out R² of a probe refitted
    on inverted observations and ``cosine`` the cosine between the two probes' weight
    vectors. ``readout_correlation`` is the correlation of the two probes' outputs over
    the normal observations: the cosine measured in the activations' covariance,
    which ignores weight components along directions the layer barely uses (ridge
    leaves those loosely determined, so the plain cosine can be small either way).
    ``readout_ci`` is a 95% CI of that correlation over the folds: in each fold, the two
    probes fitted on the other folds are compared in the covariance of its held-out
    normal activations (:func:`rli.stats.cv_interval` over the fold correlations).
    ``r2_normal_ci`` and ``r2_refit_ci`` are the 95% CIs of the two probes' held-out R².
    ``flipped`` is decided on intervals, not on point values: it is true when both probes
    decode the target (each R² CI lies above 0) and the whole readout CI lies below 0 (the
    refitted probe reads the target the opposite way, i.e. the representation flips with
    the sensor). Two probes that decode nothing can still mirror each other (both fit the
    same noise); that is no flip of the target's representation. :attr:`reading` says
    ``"opposite"`` (:attr:`flipped`), ``"same"`` (both decode, readout CI above 0) or
    ``"undetermined"`` (a probe's R² CI reaches 0, or the readout CI contains 0).
    """

    layer: str
    layer_index: int | None
    target: str
    sensors: tuple[int, ...]
    r2_normal: float
    r2_inverted: float
    drop: float
    drop_ci: tuple[float, float]
    r2_refit: float
    cosine: float
    readout_correlation: float
    flipped: bool
    alpha: float
    n: int
    folds: int
    seed: int
    readout_ci: tuple[float, float] = (float("nan"), float("nan"))
    r2_normal_ci: tuple[float, float] = (float("nan"), float("nan"))
    r2_refit_ci: tuple[float, float] = (float("nan"), float("nan"))

    @property
    def reading(self) -> str:
        """How the refitted probe reads the target, by the CI of the readout correlation.

        ``"opposite"`` (:attr:`flipped`), ``"same"`` (both probes decode the target and the
        readout CI lies above 0) or ``"undetermined"``.
        """
        if not (self.r2_normal_ci[0] > 0 and self.r2_refit_ci[0] > 0):
            return "undetermined"
        if self.readout_ci[1] < 0:
            return "opposite"
        if self.readout_ci[0] > 0:
            return "same"
        return "undetermined"

    def to_dict(self) -> dict[str, Any]:
        """Plain-python form (JSON-able)."""
        out = asdict(self)
        out["sensors"], out["drop_ci"] = list(self.sensors), list(self.drop_ci)
        out["readout_ci"], out["reading"] = list(self.readout_ci), self.reading
        out["r2_normal_ci"], out["r2_refit_ci"] = list(self.r2_normal_ci), list(self.r2_refit_ci)
        return out

    def __str__(self) -> str:
        layer = str(self.layer_index) if self.layer_index is not None else repr(self.layer)
        return "\n".join([
            f"polarity test of {self.target!r} at layer {layer}, sensors {list(self.sensors)} negated: "
            f"n = {self.n}, {self.folds}-fold CV, seed {self.seed}",
            f"  held-out R², normal observations    {self.r2_normal:.3f}",
            f"  same probe, sensors negated          {self.r2_inverted:.3f}",
            f"  drop                                 {self.drop:+.3f}  95% CI [{self.drop_ci[0]:+.3f}, "
            f"{self.drop_ci[1]:+.3f}]",
            f"  probe refitted on negated sensors    {self.r2_refit:.3f}, readouts correlate "
            f"{self.readout_correlation:+.3f}  95% CI [{self.readout_ci[0]:+.3f}, {self.readout_ci[1]:+.3f}] "
            f"({_READINGS[self.reading]}), weight cosine {self.cosine:+.3f}",
        ])


def polarity_test(
    policy: Policy,
    obs: Any,
    target: Any,
    sensors: int | Sequence[int],
    layer: LayerSpec,
    *,
    folds: int = defaults.FOLDS,
    seed: int = 0,
    alphas: float | Sequence[float] | None = None,
    standardize: bool = False,
    chunk_size: int = DEFAULT_CHUNK,
    pool: Pool = "flatten",
    recurrent_state: RecurrentState | None = None,
    groups: Any = None,
    split: str = "auto",
) -> PolarityResult:
    """Fit a ridge probe on normal observations, score it with ``sensors`` negated → :class:`PolarityResult`.

    The folds (grouped by ``groups`` / the ``episode`` label by default, ``split`` as in
    :func:`rli.probe`), penalty choice and keywords are those of :func:`rli.probe` (ridge, no
    controls). Normal and inverted activations stream through together, so memory
    stays bounded. The policy's fingerprint is checked before and after: the test
    never changes it.

    A recurrent policy runs the normal observations from their recorded hidden states
    (``recurrent_state`` as in :func:`rli.capture`), and the inverted ones along the
    same episodes with the sensors inverted at every step, its state recomputed
    (``"replay"``: ``obs`` needs whole episodes, as :meth:`rli.ObsSet.from_rollouts`
    gives), so its memory sees the inversion too; with ``"fresh"`` both start every
    observation from the initial state.

    Example:
        >>> import numpy as np, torch.nn as nn, rli
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(3, 16), nn.Tanh()))
        >>> x = np.random.default_rng(0).normal(size=(500, 3))
        >>> result = rli.polarity_test(policy, x, x[:, 0], sensors=[0], layer=1)
        >>> result.r2_normal > 0.95, result.r2_inverted < 0, result.flipped
        (True, True, True)
    """
    opts = probe_options(kind="ridge", controls=False, folds=folds, seed=seed, alphas=alphas, standardize=standardize,
                         control_seeds=1, chunk_size=chunk_size, pool=pool, groups=groups, split=split)
    checks.policy(policy)
    y, name = probe_target(obs, target, "ridge")
    if y.shape[1] != 1:
        raise RliError(f"polarity_test takes one target column; target {name!r} has {y.shape[1]}")
    y = np.ldexp(y, -target_exponent(y))  # exact rescaling; only scale-free numbers come out
    n = len(y)
    length = obs_length(obs)
    if length is not None and length != n:
        raise RliError(f"target {name!r} has {n} values but obs has {length} observations; give one target value "
                       "per observation")
    resolved = policy.layer(layer)
    check_ridge_width(resolved, pool)
    idx = _sensor_indices(sensors, int(np.prod(policy.obs_shape)))
    split_by = fold_split(obs, y, opts.folds, opts.seed, groups=groups, split=split)
    opts = replace(opts, fold_split=split_by)
    ids = split_by.ids
    before = policy.fingerprint
    normal, inverted = Moments(opts.folds), Moments(opts.folds)
    seen = 0
    replayed = None
    if policy.is_recurrent and check_mode(recurrent_state) != "fresh" and isinstance(obs, ObsSet):
        replayed = iter_activations(policy, negate_sensors(obs, idx), [resolved.name], chunk_size=chunk_size,
                                    pool=pool, recurrent_state="replay")
    for chunk in iter_activations(policy, obs, [resolved.name], chunk_size=chunk_size, pool=pool,
                                  recurrent_state=recurrent_state):
        if chunk.stop > n:
            raise RliError(f"obs has more observations than the target's {n} values")
        order, bounds = fold_order(ids[chunk.start:chunk.stop], opts.folds)
        rows = y[chunk.start:chunk.stop]
        negated: Mapping[str, np.ndarray]
        if replayed is not None:
            negated = next(replayed).activations
        else:
            negated = capture(policy, negate_sensors(chunk.obs, idx), [resolved.name], chunk_size=len(chunk.obs),
                              pool=pool, recurrent_state=chunk.recurrent_state)
        accumulate([(normal, chunk.activations[resolved.name], rows), (inverted, negated[resolved.name], rows)],
                   order, bounds)
        seen = chunk.stop
    if seen != n:
        raise RliError(f"obs has {seen} observations but the target has {n} values")
    if policy.fingerprint != before:
        raise RuntimeError("the policy's parameters changed during the polarity test; something else modified it "
                           "concurrently, so the result is void")
    cols = [slice(0, 1)]
    fit = ridge_outcomes(normal, cols, opts, opts.standardize, transfer=inverted)[0]
    refit = ridge_outcomes(inverted, cols, opts, opts.standardize)[0]
    if fit.coef is None or refit.coef is None or fit.transfer_scores is None or fit.alpha is None:
        raise RuntimeError("ridge_outcomes with full=True and transfer= gave no full fit or transfer scores")
    drops = fit.fold_scores - fit.transfer_scores
    s = normal.total()
    mean = s.x / s.n
    cov = s.xx - s.n * np.outer(mean, mean)
    correlation = _cosine(fit.coef, refit.coef, cov)
    readout_ci = stats.cv_interval(fold_readout_correlations(normal, inverted, opts.alphas, opts.standardize))
    normal_ci, refit_ci = stats.cv_interval(fit.fold_scores), stats.cv_interval(refit.fold_scores)
    return PolarityResult(
        layer=resolved.name, layer_index=resolved.index, target=name, sensors=tuple(int(i) for i in idx),
        r2_normal=float(fit.fold_scores.mean()), r2_inverted=float(fit.transfer_scores.mean()),
        drop=float(drops.mean()), drop_ci=stats.cv_interval(drops), r2_refit=float(refit.fold_scores.mean()),
        cosine=_cosine(fit.coef, refit.coef, np.eye(len(cov))), readout_correlation=correlation,
        flipped=bool(readout_ci[1] < 0 and normal_ci[0] > 0 and refit_ci[0] > 0), alpha=float(fit.alpha), n=n,
        folds=opts.folds, seed=opts.seed, readout_ci=readout_ci, r2_normal_ci=normal_ci, r2_refit_ci=refit_ci)


def fold_readout_correlations(normal: Moments, inverted: Moments, alphas: tuple[float, ...] | None,
                              standardize: bool) -> np.ndarray:
    """Per fold: the correlation, over that fold's held-out normal activations, of two probes fit on the other folds.

    One probe is fit on ``normal`` (the activations of the normal observations), the
    other on ``inverted`` (the same rows with the sensors negated), each with its penalty
    chosen on its training folds as :func:`rli.probe` does. The correlation is measured in
    the held-out fold's covariance, so no number reuses the rows it was fit on; the
    K values give the CI behind :attr:`PolarityResult.flipped`.

    Example:
        >>> import numpy as np, rli
        >>> from rli.moments import Moments, accumulate, fold_order
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(200, 3)); y = x[:, :1]
        >>> normal, inverted = Moments(5), Moments(5)
        >>> order, bounds = fold_order(np.arange(200) % 5, 5)
        >>> accumulate([(normal, x, y), (inverted, -x, y)], order, bounds)
        >>> bool((rli.polarity.fold_readout_correlations(normal, inverted, None, False) < -0.99).all())
        True
    """
    cols = slice(0, 1)
    out = np.empty(normal.folds)
    for f in range(normal.folds):
        weights = []
        for m in (normal, inverted):
            fit = m.fit(f, standardize)
            weights.append(fit.coef(fit.choose(alphas, cols), cols)[0][:, 0])
        out[f] = _cosine(weights[0], weights[1], normal.fold(f).cxx)
    return out


def _cosine(a: np.ndarray, b: np.ndarray, metric: np.ndarray) -> float:
    norms = float(np.sqrt((a @ metric @ a) * (b @ metric @ b)))
    return float(a @ metric @ b) / norms if norms > 0 else 0.0
