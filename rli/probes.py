"""Probes: how well a target can be decoded from a layer's activations, held out and against controls.

Every score is held out (K-fold, seeded) and comes with a 95% confidence interval and
controls computed with the same probe and the same folds: the untrained
(re-initialised) network, shuffled labels, and the raw observation.

Ridge probes never hold the activations in memory. They stream through
:func:`rli.iter_activations` and keep, per fold, the means and centred scatter matrices
(float64, each chunk centred on its own means and merged exactly, so a feature constant
over a training set has no variance there; :mod:`rli.moments`, which spreads the updates
over the cores). Features wider than the rows are many (raw pixels) are kept as rows and
solved in the dual, n×n kernel form instead, as scikit-learn does.
Each training set is the sum of the other folds; one eigendecomposition of its Gram
matrix gives the ridge solution for every candidate penalty, the penalty is chosen by
generalised cross-validation (GCV: the rotation-invariant closed form of leave-one-out,
Golub, Heath & Wahba 1979) on the training folds only, and the held-out error of the
fold comes from that fold's statistics. The cost is one forward pass plus ``n·d²`` for
the Gram matrices, whatever the number of penalties, and the answer does not depend on
the chunk size (up to rounding). Lasso, MLP and logistic probes use scikit-learn on
activations held in memory.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from rli import checks, defaults, recurrent, stats
from rli.capture import DEFAULT_CHUNK, ActivationChunk, Pool, capture, iter_activations
from rli.deprecation import warn_deprecated
from rli.errors import RliError
from rli.moments import (
    accumulate,
    fit_bytes,
    fold_order,
    kept_bytes,
    ridge_moments,
)
from rli.observations import ObsSet, obs_length
from rli.policy import Layer, LayerSpec, Policy
from rli.recurrent import RecurrentState
from rli.ridge import MAX_RIDGE_WIDTH, FitOutcome, check_ridge_width, ridge_outcomes, target_exponent
from rli.structured_null import StructuredNull, check_null, for_probe, ridge_scores
from rli.targets import resolve_target
from rli.threads import WORKERS, one_blas_thread
from rli.untrained import UntrainedInit, check_init, untrained_copy

KINDS = ("ridge", "lasso", "mlp", "logistic")
MAX_CONTROL_SEEDS = 100
_SK_RANGE = (1e-100, 1e100)
_LOGISTIC_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)
_MLP_HIDDEN = (64,)


# ------------------------------------------------------------------------------------------ results
@dataclass(frozen=True, eq=False)
class ProbeResult:
    """A held-out probe score with its confidence interval and controls.

    ``score`` is the mean held-out score over the K folds, named by ``metric``: R²
    (``"r2"``, averaged over outputs for a multi-output target) or, for
    ``kind="logistic"``, accuracy (``"accuracy"``; ``balanced_accuracy`` and the
    majority-class ``chance`` level sit beside it). It is never a training score.
    ``r2`` is the same number when it is an R²; on a logistic probe it still gives the
    accuracy, with a ``DeprecationWarning`` (use ``score``: ``r2`` will mean R² only).
    ``to_dict()`` has both keys, ``"score"`` and ``"r2"`` (the one stored baselines read).
    ``ci`` is a 95% corrected resampled t-interval over the fold scores
    (:func:`rli.stats.cv_interval`), clipped to the score's range: it covers the
    expected held-out score of this probe trained on ``n·(K-1)/K`` samples from the same
    distribution, and is wide when the folds disagree. (In simulation,
    tests/test_probes.py, it covers that value in about 92-98% of seeds.)

    ``split`` says how the folds were made (``"grouped by episode, 5 folds, 37 groups"``,
    or ``"rows (row-level K-fold), 5 folds"``) and ``n_groups`` how many groups (None for
    rows); the CI treats folds, not rows, as the units, so it is honest on correlated rows
    only when whole groups are held out.

    ``controls`` maps ``"untrained"`` (the same layer of the re-initialised network,
    mean over seeds), ``"shuffled"`` (targets permuted between groups, mean over seeds) and
    ``"raw_obs"`` (the observations as the network sees them, after its normaliser)
    to their scores; ``control_runs`` keeps the per-seed scores and ``control_fold_scores``
    each control's per-fold scores (per fold, the mean over its seeds). ``selectivity`` is
    ``r2`` minus the best control (``None`` without controls). The probe and every control
    are scored on the same folds, so ``selectivity_ci`` is the corrected resampled 95%
    t-interval (Nadeau–Bengio, :func:`rli.stats.cv_interval`) of the per-fold differences
    against the best control, and ``selectivity_p`` the one-sided p-value of
    :func:`rli.stats.cv_paired_ttest` for "better than the best control".

    ``null`` (with ``null="structured"``) is the :class:`rli.structured_null.StructuredNull`:
    the same probe on surrogate targets of the same structure (episodes' power spectra and
    means, a grid's spatial spectrum), its scores and the p-value for "this layer encodes this
    target better than targets shaped like it".

    ``coef`` (d,) or (d, k) and ``intercept`` give the probe fitted on all ``n``
    observations, in the layer's raw activation space: ``prediction = acts @ coef +
    intercept``; ``alpha`` is its penalty and ``fold_alphas`` those chosen inside each
    training fold. ``direction`` is ``coef`` scaled to unit norm (per column). ``notes``
    lists caveats (a skipped control, fits that did not converge).
    """

    layer: str
    layer_index: int | None
    layer_type: str
    kind: str
    metric: str
    target: str
    score: float
    ci: tuple[float, float]
    fold_scores: tuple[float, ...]
    controls: dict[str, float]
    control_runs: dict[str, tuple[float, ...]]
    selectivity: float | None
    coef: np.ndarray | None
    intercept: np.ndarray | float | None
    alpha: float | None
    fold_alphas: tuple[float, ...]
    n_nonzero: int | None
    balanced_accuracy: float | None
    chance: float | None
    output_r2: tuple[float, ...]
    n: int
    width: int
    folds: int
    seed: int
    standardize: bool
    notes: tuple[str, ...] = ()
    split: str = "rows (row-level K-fold)"
    n_groups: int | None = None
    selectivity_ci: tuple[float, float] | None = None
    selectivity_p: float | None = None
    control_fold_scores: dict[str, tuple[float, ...]] = field(default_factory=dict)
    null: StructuredNull | None = None

    @property
    def r2(self) -> float:
        """The held-out R² (:attr:`score`); on a logistic probe the accuracy, with a ``DeprecationWarning``."""
        if self.metric != "r2":
            warn_deprecated(f"ProbeResult.r2 of a {self.kind} probe is its {self.metric}; use .score (the held-out "
                            "score whatever the kind): .r2 will mean R² only")
        return self.score

    @property
    def direction(self) -> np.ndarray:
        """Unit-norm probe weights in the layer's activation space: (d,), or (d, k) with unit columns."""
        if self.coef is None:
            raise RliError(f"a {self.kind} probe has no weight vector to give a direction; "
                           "use kind='ridge', 'lasso' or 'logistic'")
        norm = np.linalg.norm(self.coef, axis=0)
        if np.any(norm == 0):
            raise RliError("the probe's weights are all zero (it found nothing to decode), so it has no direction")
        return self.coef / norm

    @property
    def best_control(self) -> str | None:
        """Name of the strongest control (the one selectivity is measured against)."""
        return max(self.controls, key=self.controls.__getitem__) if self.controls else None

    def to_dict(self) -> dict[str, Any]:
        """Plain-python form (JSON-able)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                value = value.tolist()
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, dict):
                value = {k: list(v) if isinstance(v, tuple) else v for k, v in value.items()}
            elif isinstance(value, StructuredNull):
                value = value.to_dict()
            out[f.name] = value
        out["r2"] = self.score  # the key stored baselines and result stores read
        out["best_control"] = self.best_control
        return out

    def __str__(self) -> str:
        score = "R²" if self.metric == "r2" else "accuracy"
        head = (f"{self.kind} probe of {self.target!r} at layer {_layer_label(self.layer, self.layer_index)} "
                f"({self.layer_type}, width {self.width}): n = {self.n}, split {self.split}, seed {self.seed}")
        rows = [("", f"held-out {score}", "95% CI")]
        rows.append((f"layer {_layer_label(self.layer, self.layer_index)}", f"{self.score:.3f}",
                     f"[{self.ci[0]:.3f}, {self.ci[1]:.3f}]"))
        for name, value in self.controls.items():
            runs = self.control_runs.get(name, ())
            label = CONTROL_LABELS[name] + (" (between groups)" if name == "shuffled" and self.n_groups else "")
            label += f" ({len(runs)} seeds)" if len(runs) > 1 else ""
            spread = f"seeds {min(runs):.3f}..{max(runs):.3f}" if len(runs) > 1 else ""
            rows.append((f"control: {label}", f"{value:.3f}", spread))
        if self.selectivity is not None:
            versus = CONTROL_LABELS[str(self.best_control)]
            against = f"(vs {versus})"
            if self.selectivity_ci is not None and self.selectivity_p is not None:
                low, high = self.selectivity_ci
                against = f"[{low:+.3f}, {high:+.3f}] vs {versus}, paired over the folds, p = {self.selectivity_p:.3g}"
            rows.append(("selectivity", f"{self.selectivity:+.3f}", against))
        if self.null is not None:
            rows.append(("structured null", f"p = {self.null.p_value:.3g}", self.null.details))
        name_width, score_width = (max(len(row[i]) for row in rows) for i in (0, 1))
        lines = [head] + [f"  {name.ljust(name_width)}  {value.rjust(score_width)}  {extra}".rstrip()
                          for name, value, extra in rows]
        extra = []
        if self.metric == "accuracy":
            extra.append(f"balanced accuracy {self.balanced_accuracy:.3f}, chance {self.chance:.3f}")
        if len(self.output_r2) > 1:
            extra.append("per-output R² " + ", ".join(f"{v:.3f}" for v in self.output_r2))
        if self.alpha is not None:
            extra.append(f"alpha {self.alpha:.4g}")
        if self.n_nonzero is not None:
            extra.append(f"{self.n_nonzero} of {self.width} features used")
        if extra:
            lines.append("  " + "; ".join(extra))
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


CONTROL_LABELS = {"untrained": "untrained network", "shuffled": "shuffled labels", "raw_obs": "raw observation"}


def _layer_label(name: str, index: int | None) -> str:
    return str(index) if index is not None else repr(name)


def routing_label(delta: float, p_value: float | None = None, *, alpha: float = 0.05) -> str:
    """Name a change of probe score between consecutive layers.

    With ``p_value`` (the multiplicity-adjusted p-value of the paired fold
    difference, as :attr:`LayerProfile.routing` passes it), a change that is not
    significant (``p_value >= alpha``) is ``"≈"``: the data do not show a change. A
    significant change (or any change, without ``p_value``: the magnitude alone) is
    named by its size: ``ΔR² ≤ -0.3`` harmful, ``|ΔR²| < 0.1`` neutral, ``ΔR² ≥ 0.1``
    beneficial, otherwise (``-0.3 < ΔR² ≤ -0.1``) mixed.

    Example:
        >>> import rli
        >>> [rli.routing_label(d) for d in (-0.5, -0.2, 0.05, 0.3)]
        ['harmful', 'mixed', 'neutral', 'beneficial']
        >>> rli.routing_label(0.3, p_value=0.2), rli.routing_label(0.3, p_value=0.001)
        ('≈', 'beneficial')
    """
    delta = checks.real(delta, "delta")
    if p_value is not None:
        if not 0.0 <= checks.real(p_value, "p_value") <= 1.0:
            raise RliError(f"p_value must lie in [0, 1], got {p_value!r}")
        if p_value >= stats.check_alpha(alpha):
            return "≈"
    if delta <= -0.3:
        return "harmful"
    if abs(delta) < 0.1:
        return "neutral"
    if delta >= 0.1:
        return "beneficial"
    return "mixed"


@dataclass(frozen=True, eq=False)
class LayerProfile:
    """Probe scores of one target across layers (from one capture), with ΔR² and a routing label per step.

    Indexed like activations: ``profile[5]``, ``profile["actor.5"]`` or by module name.

    Every layer is scored on the same folds, so layers are compared fold by fold with
    the corrected resampled paired t-test (:func:`rli.stats.cv_paired_ttest`). A
    routing label names a step only when its fold difference is significant after
    ``correction`` (Holm by default) over the profile's steps at level ``alpha``, else
    ``"≈"``. ``best`` is the layer with the highest score, a point estimate;
    ``best_set`` is a ``1 − alpha`` confidence set for the truly best layer: every
    layer that no other layer beats significantly (one-sided, corrected over the
    other layers), so a layer outside it is worse than some layer, with error ≤ alpha.
    """

    results: tuple[ProbeResult, ...]
    correction: str = "holm"
    alpha: float = 0.05

    @property
    def layers(self) -> tuple[str, ...]:
        """Module names, in forward order."""
        return tuple(r.layer for r in self.results)

    @property
    def scores(self) -> tuple[float, ...]:
        """Held-out score per layer (:attr:`ProbeResult.score`: R², or accuracy for logistic probes)."""
        return tuple(r.score for r in self.results)

    @property
    def r2(self) -> tuple[float, ...]:
        """Held-out R² per layer (:attr:`scores`); for logistic probes the accuracies, with a ``DeprecationWarning``."""
        if self.results and self.results[0].metric != "r2":
            warn_deprecated(f"LayerProfile.r2 of {self.results[0].kind} probes holds their {self.results[0].metric}; "
                            "use .scores: .r2 will mean R² only")
        return self.scores

    @property
    def deltas(self) -> tuple[float, ...]:
        """Score change from each layer to the next (one fewer than layers)."""
        return tuple(b.score - a.score for a, b in zip(self.results, self.results[1:]))

    @property
    def step_p_values(self) -> tuple[float, ...]:
        """Adjusted (``correction``) two-sided p-value of each step's paired fold difference."""
        if len(self.results) < 2:
            return ()
        raw = [stats.cv_paired_ttest(b.fold_scores, a.fold_scores)[1] for a, b in zip(self.results, self.results[1:])]
        return tuple(float(p) for p in stats.adjust(raw, stats.check_correction(self.correction)))

    @property
    def routing(self) -> tuple[str, ...]:
        """:func:`routing_label` of each step, given its adjusted p-value: ``"≈"`` where no change is shown."""
        return tuple(routing_label(d, p, alpha=self.alpha) for d, p in zip(self.deltas, self.step_p_values))

    @property
    def best(self) -> ProbeResult:
        """The layer with the highest held-out score (a point estimate: see :attr:`best_set` for its uncertainty)."""
        return max(self.results, key=lambda r: r.score)

    @property
    def worse_p_values(self) -> tuple[float, ...]:
        """Per layer: adjusted p-value that some other layer scores higher (one-sided fold comparisons).

        The smallest one-sided p-value over the other layers, times their number under
        ``"holm"`` or ``"bonferroni"`` (for "is any rejected" the two coincide), or
        plain under ``"none"``.
        """
        correction = stats.check_correction(self.correction)
        out = []
        for j, r in enumerate(self.results):
            others = [stats.cv_paired_ttest(o.fold_scores, r.fold_scores, alternative="greater")[1]
                      for i, o in enumerate(self.results) if i != j]
            if not others:
                out.append(1.0)
                continue
            out.append(float(min(stats.adjust(others, correction))))
        return tuple(out)

    @property
    def best_set(self) -> tuple[ProbeResult, ...]:
        """Layers the data cannot tell from the best: none scores significantly below another (1 − alpha set)."""
        alpha = stats.check_alpha(self.alpha)
        return tuple(r for r, p in zip(self.results, self.worse_p_values) if p >= alpha)

    def __getitem__(self, key: LayerSpec) -> ProbeResult:
        for r in self.results:
            index = () if r.layer_index is None else (r.layer_index, f"actor.{r.layer_index}")
            if not isinstance(key, bool) and key in (r.layer, *index):
                return r
        raise RliError(f"layer {key!r} is not in this profile; it has {', '.join(self.layers)}")

    def __len__(self) -> int:
        return len(self.results)

    def to_dict(self) -> dict[str, Any]:
        """Plain-python form (JSON-able)."""
        return {"layers": list(self.layers), "scores": list(self.scores), "r2": list(self.scores),
                "deltas": list(self.deltas),
                "routing": list(self.routing), "step_p_values": list(self.step_p_values),
                "correction": self.correction, "alpha": self.alpha, "best": self.best.layer,
                "best_set": [r.layer for r in self.best_set], "results": [r.to_dict() for r in self.results]}

    def __str__(self) -> str:
        first = self.results[0]
        score = "R²" if first.metric == "r2" else "acc"
        head = f"{first.kind} probe profile of {first.target!r}: n = {first.n}, split {first.split}, seed {first.seed}"
        with_controls = any(r.selectivity is not None for r in self.results)
        rows: list[tuple[str, ...]] = [("layer", "name", "type", "width", score, "95% CI", f"Δ{score}", "routing")
                                       + (("best control", "selectivity") if with_controls else ())]
        for i, r in enumerate(self.results):
            delta = f"{self.deltas[i - 1]:+.3f}" if i else ""
            route = self.routing[i - 1] if i else ""
            row: tuple[str, ...] = ("" if r.layer_index is None else str(r.layer_index), r.layer, r.layer_type,
                                    str(r.width), f"{r.score:.3f}", f"[{r.ci[0]:.3f}, {r.ci[1]:.3f}]", delta, route)
            best_control = r.best_control  # None exactly when there are no controls, and then selectivity is None
            if with_controls:
                row += ((f"{best_control} {r.controls[best_control]:.3f}", f"{r.selectivity:+.3f}")
                        if r.selectivity is not None and best_control is not None else ("", ""))
            rows.append(row)
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        best = ", ".join(_layer_label(r.layer, r.layer_index) for r in self.best_set)
        notes = [f"routing names a step only where the paired fold difference is significant (corrected resampled t, "
                 f"{self.correction} over {len(self.deltas)} steps, alpha {self.alpha:g}), else ≈",
                 f"highest {score}: layer {_layer_label(self.best.layer, self.best.layer_index)}; not significantly "
                 f"below any other layer ({1 - self.alpha:.0%} set for the best): {best}"]
        return "\n".join([head] + ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
                         + notes)


# ------------------------------------------------------------------------------------- public API
def probe(
    policy: Policy,
    obs: Any,
    target: Any,
    layer: LayerSpec,
    *,
    kind: str = "ridge",
    controls: bool = True,
    folds: int = defaults.FOLDS,
    seed: int = 0,
    alphas: float | Sequence[float] | None = None,
    standardize: bool = False,
    control_seeds: int = 3,
    chunk_size: int = DEFAULT_CHUNK,
    pool: Pool = "flatten",
    recurrent_state: RecurrentState | None = None,
    groups: Any = None,
    split: str = "auto",
    untrained_init: Any = None,
    null: str | None = None,
    null_samples: int | None = None,
) -> ProbeResult:
    """Decode ``target`` from the activations of ``layer``: held-out score, 95% CI and controls.

    Args:
        policy: the policy to probe.
        obs: observations (array, memmap, :class:`~rli.ObsSet`, or for ridge probes an
            iterable of observation batches).
        target: a label name of ``obs`` (an ObsSet), ``"obs[I]"`` (observation entry I), an
            array with one value (or row, for several outputs) per observation, or
            ``(name, array)`` to name it in the result, summaries and baselines
            (:func:`rli.targets.resolve_target`). Class labels for ``kind="logistic"``.
        layer: index in the actor trunk, alias (``"actor.5"``) or module name.
        kind: ``"ridge"`` (penalty chosen by GCV inside each training fold),
            ``"lasso"`` (sparse; penalty by 3-fold CV inside each training fold; reports
            ``n_nonzero``), ``"mlp"`` (one hidden layer of 64 ReLU units, early stopping;
            inputs and targets standardised), ``"logistic"`` (categorical targets;
            accuracy, balanced accuracy and chance; ``C = 1/alpha`` by 3-fold CV).
        controls: compute the untrained, shuffled-label and raw-observation controls.
        folds: K of the K-fold split (shuffled with ``seed``; stratified for logistic).
            The split is grouped (see ``groups`` / ``split``): too few groups for K folds
            is an :class:`~rli.RliError` naming the fixes.
        seed: seeds the split, the shuffled labels (``default_rng([seed, i])``) and
            the untrained networks (``torch.manual_seed(seed + i)``).
        alphas: candidate penalties in scikit-learn's units (``Ridge(alpha)`` /
            ``Lasso(alpha)`` / ``LogisticRegression(C=1/alpha)`` / ``MLPRegressor(alpha)``
            on the features as the probe sees them); a single number fixes the penalty.
            Default for ridge: 21 values from 1e-6 to 1e4 times the mean eigenvalue of the
            training Gram matrix, so the choice follows the layer's scale.
        standardize: scale each activation to unit variance first (per training fold).
            Off by default: ridge on raw activations does not depend on the basis (any
            rotation of the layer gives the same score); standardising makes it
            independent of each unit's scale instead. The raw-observation control is
            always standardised, since observation dimensions come in arbitrary units.
        control_seeds: how many untrained networks and label shuffles.
        chunk_size: observations per forward pass.
        pool: ``"channel"`` averages conv feature maps per channel (see :func:`rli.capture`).
        recurrent_state: for recurrent policies, which hidden state each observation is
            run from, as in :func:`rli.capture` (default: the states recorded by
            :meth:`rli.ObsSet.from_rollouts`). The untrained control networks replay their
            own states along the same episodes (or start fresh with ``"fresh"``); the
            result's notes say which was used.
        groups: one group id per observation (an array, or a label name of ``obs``):
            rows of a group are held out together in the outer K-fold and in every
            inner split (ridge's penalty, lasso's and logistic's inner CV, the MLP's
            early-stopping validation set), and the shuffled-label control permutes
            whole groups' target sequences between groups.
        split: ``"auto"`` (default): by ``groups`` if given, else by the ``episode``
            label when ``obs`` has one (:meth:`rli.ObsSet.from_rollouts` records it),
            else by rows; ``"groups"`` insists on a grouped split; ``"blocks"`` cuts an
            :meth:`rli.ObsSet.grid` into contiguous blocks along its axes
            (:func:`fold_split`); ``"rows"`` is row-level K-fold, honest only for
            exchangeable rows (rollout steps of one episode are not). The result's
            ``split`` and ``n_groups`` say which was used.
        untrained_init: how the untrained control networks are initialised: a callable
            ``(module, seed) -> None`` that re-initialises the policy's torch module in
            place, or ``None`` for the policy's own initialiser.
        null: ``"structured"`` also scores the probe on ``null_samples`` surrogate targets
            with the target's structure but no tie to the observations (per-episode
            phase-randomised with permuted episode means; a phase-randomised field on a
            grid; :mod:`rli.structured_null`) → ``result.null`` with its p-value.
        null_samples: how many surrogates (default 99 for ridge, which fits them as extra
            target columns on the same statistics; 19 for lasso, mlp and logistic, each a
            full refit).

    Example:
        >>> import numpy as np, torch, torch.nn as nn, rli
        >>> _ = torch.manual_seed(0)
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 2)))
        >>> x = np.random.default_rng(0).normal(size=(600, 4))
        >>> result = rli.probe(policy, x, x[:, 0] - x[:, 1], layer=1)
        >>> result.r2 > 0.95, result.ci[0] > 0.9, result.controls["shuffled"] < 0.05, result.split
        (True, True, True, 'rows (row-level K-fold), 5 folds')
        >>> episodes = rli.ObsSet(x, {"episode": np.repeat(np.arange(20), 30)})
        >>> rli.probe(policy, episodes, x[:, 0], layer=1, controls=False).split
        'grouped by episode, 5 folds, 20 groups'
    """
    opts = probe_options(kind, controls, folds, seed, alphas, standardize, control_seeds, chunk_size, pool,
                         recurrent_state, groups, split, untrained_init)
    return _run(policy, obs, target, [layer], replace(opts, **check_null(null, null_samples, kind)))[0]


def probe_layers(
    policy: Policy,
    obs: Any,
    target: Any,
    layers: Sequence[LayerSpec] | None = None,
    *,
    kind: str = "ridge",
    controls: bool = True,
    folds: int = defaults.FOLDS,
    seed: int = 0,
    alphas: float | Sequence[float] | None = None,
    standardize: bool = False,
    control_seeds: int = 3,
    chunk_size: int = DEFAULT_CHUNK,
    pool: Pool = "flatten",
    recurrent_state: RecurrentState | None = None,
    groups: Any = None,
    split: str = "auto",
    untrained_init: Any = None,
    null: str | None = None,
    null_samples: int | None = None,
) -> LayerProfile:
    """Probe every layer of the actor trunk (or ``layers``) from one capture → :class:`LayerProfile`.

    Same keywords (``groups``, ``split`` included) and the same folds as :func:`probe`; each untrained control network
    is also captured once for all layers.

    Example:
        >>> import numpy as np, torch, torch.nn as nn, rli
        >>> _ = torch.manual_seed(0)
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 2)))
        >>> x = np.random.default_rng(0).normal(size=(600, 4))
        >>> profile = rli.probe_layers(policy, x, x[:, 0] - x[:, 1], controls=False)
        >>> len(profile), profile.routing[0], profile[0].r2 > 0.99
        (3, 'neutral', True)
    """
    checks.policy(policy)
    if isinstance(layers, np.ndarray):
        layers = layers.tolist()
    specs: list[LayerSpec]
    if layers is None:
        specs = list(policy.actor_layers)
    elif isinstance(layers, (int, np.integer, str, Layer)):
        specs = [layers]
    elif isinstance(layers, Sequence):
        specs = list(layers)
    else:
        raise RliError(f"layers must be a list of layers (or None for the whole actor trunk), not {layers!r}")
    if not specs:
        raise RliError("layers is empty; pass None for the whole actor trunk or a list of layers")
    opts = probe_options(kind, controls, folds, seed, alphas, standardize, control_seeds, chunk_size, pool, recurrent_state,
                    groups, split, untrained_init)
    opts = replace(opts, **check_null(null, null_samples, kind))
    return LayerProfile(tuple(_run(policy, obs, target, specs, opts)))


# ---------------------------------------------------------------------------------------- options
@dataclass(frozen=True)
class ProbeOptions:
    """The checked keywords of one :func:`rli.probe` / :func:`rli.probe_layers` call (:func:`probe_options`)."""

    kind: str
    controls: bool
    folds: int
    seed: int
    alphas: tuple[float, ...] | None
    standardize: bool
    control_seeds: int
    chunk_size: int
    pool: Pool
    recurrent_state: RecurrentState | None = None
    groups: Any = None
    split: str = "auto"
    untrained_init: Any = None
    fold_split: FoldSplit | None = None  # resolved by _run from groups / split and the observations
    null: str | None = None  # the structured null (rli.structured_null.check_null)
    null_samples: int = 0

    @property
    def grouped(self) -> bool:
        """Whether the resolved folds keep groups (episodes, blocks) together rather than single rows."""
        return _split_groups(self) is not None


def _split_groups(opts: ProbeOptions) -> np.ndarray | None:
    """Each row's group code under the resolved split (None: row-level folds)."""
    return None if opts.fold_split is None else opts.fold_split.groups


def probe_options(kind: str, controls: bool, folds: int, seed: int, alphas: Any, standardize: bool,
                  control_seeds: int, chunk_size: int, pool: Pool, recurrent_state: Any = None, groups: Any = None,
                  split: str = "auto", untrained_init: Any = None) -> ProbeOptions:
    """The keywords of :func:`rli.probe` checked (one-line :class:`RliError` each) → :class:`ProbeOptions`."""
    if not isinstance(split, str) or split not in SPLITS:
        raise RliError(f"split must be one of {', '.join(map(repr, SPLITS))}, not {split!r}")
    if groups is not None and split in ("rows", "blocks"):
        raise RliError(f"groups= and split={split!r} contradict each other; pass one of them")
    check_init(untrained_init)
    if not isinstance(kind, str) or kind not in KINDS:
        raise RliError(f"unknown probe kind {kind!r}; choose one of {', '.join(KINDS)}")
    checks.count(folds, "folds", minimum=2, hint=" (K of the K-fold split)")
    checks.count(control_seeds, "control_seeds", maximum=MAX_CONTROL_SEEDS,
                 hint=" (each one is an untrained network and a label shuffle)")
    checks.seed(seed)
    checks.count(chunk_size, "chunk_size", hint=" (observations per forward pass)")
    if alphas is not None:
        try:
            values = np.asarray(alphas, dtype=np.float64)
        except (TypeError, ValueError):
            values = np.asarray([np.nan])
        grid = tuple(float(a) for a in np.atleast_1d(values)) if values.ndim <= 1 else ()
        if not grid or not all(math.isfinite(a) and a > 0 for a in grid):
            raise RliError(f"alphas must be positive finite penalties (a number or a list of them), got {alphas!r}")
        if kind == "mlp" and len(grid) > 1:
            raise RliError("an mlp probe takes one alpha (its L2 penalty), not a grid")
        alphas = grid
    return ProbeOptions(kind, checks.flag(controls, "controls"), int(folds), int(seed), alphas,
                    checks.flag(standardize, "standardize"), int(control_seeds), int(chunk_size), pool,
                    recurrent.check_mode(recurrent_state), groups, split, untrained_init)


# ----------------------------------------------------------------------------------------- target
def probe_target(obs: Any, target: Any, kind: str) -> tuple[np.ndarray, str]:
    """The target as (n, k) float64 (regression) or (n,) class labels (logistic), and its name.

    Any form :func:`rli.targets.resolve_target` takes: a label name, ``"obs[I]"``, an array, ``(name, array)``.
    """
    values, name = resolve_target(obs, target)
    if values.ndim == 0 or values.ndim > 2 or values.size == 0:
        raise RliError(f"target must have one value (or one row of outputs) per observation; got shape {values.shape}")
    if kind == "logistic":
        return _classes(values, name), name
    if not (np.issubdtype(values.dtype, np.number) or values.dtype == np.bool_) or \
            np.issubdtype(values.dtype, np.complexfloating):
        raise RliError(f"target {name!r} is not numeric (dtype {values.dtype}); give real numbers, or class labels "
                       "with kind='logistic'")
    y = values.astype(np.float64).reshape(len(values), -1)
    bad = ~np.isfinite(y)
    if bad.any():
        raise RliError(f"target {name!r} contains {int(bad.sum())} NaN/inf values (first in row "
                       f"{int(np.argwhere(bad)[0][0])}); drop those observations or fill the target")
    constant = np.flatnonzero(y.max(axis=0) == y.min(axis=0))
    if constant.size:
        which = "" if y.shape[1] == 1 else f" (output column {int(constant[0])})"
        raise RliError(f"target {name!r}{which} is constant (every value is {y[0, constant[0]]:g}): nothing to decode; "
                       "check the label or use observations where it varies")
    return y, name


def _classes(values: np.ndarray, name: str) -> np.ndarray:
    if values.ndim != 1:
        raise RliError(f"a logistic probe takes one column of class labels; target {name!r} has shape {values.shape}")
    if values.dtype == object or np.issubdtype(values.dtype, np.complexfloating):
        raise RliError(f"target {name!r} has mixed, object or complex values (dtype {values.dtype}); give class "
                       "labels as integers or strings")
    if np.issubdtype(values.dtype, np.floating):
        if not np.all(np.isfinite(values)):
            raise RliError(f"target {name!r} contains NaN/inf values; drop those observations")
        if not np.all(values == np.round(values)):
            raise RliError(f"target {name!r} has non-integer values; a logistic probe needs class labels "
                           "(use kind='ridge' for a continuous target)")
    labels = np.unique(values)
    if labels.size < 2:
        raise RliError(f"target {name!r} is constant (only class {labels[0]!r}): nothing to decode")
    return values


SPLITS = ("auto", "groups", "rows", "blocks")


@dataclass(frozen=True, eq=False)
class FoldSplit:
    """How a probe's observations were split into K folds: which fold each row is held out in, and its group.

    ``kind`` is ``"groups"`` (whole groups, e.g. episodes, held out together), ``"blocks"``
    (contiguous blocks of a grid) or ``"rows"`` (row-level K-fold, for exchangeable rows
    only). ``groups`` holds each row's group code (0..n_groups-1; ``None`` for rows).
    """

    ids: np.ndarray
    groups: np.ndarray | None
    kind: str
    by: str | None
    n_groups: int | None
    folds: int

    @property
    def description(self) -> str:
        """One line for results and reports, e.g. ``"grouped by episode, 5 folds, 37 groups"``."""
        if self.kind == "rows":
            return f"rows (row-level K-fold), {self.folds} folds"
        if self.kind == "blocks":
            return f"spatial blocks of the grid ({self.by}), {self.folds} folds, {self.n_groups} blocks"
        return f"grouped by {self.by}, {self.folds} folds, {self.n_groups} groups"


def group_folds(groups: np.ndarray, folds: int, seed: int, labels: np.ndarray | None = None) -> np.ndarray:
    """Fold id of each row such that every group (code 0..G-1) sits in exactly one fold.

    The groups are shuffled with ``seed`` and each, in that order, goes to the fold with
    the fewest rows so far (deterministic, row-balanced). With ``labels`` (class labels)
    the assignment is scikit-learn's ``StratifiedGroupKFold(shuffle=True)``.

    Example:
        >>> ids = group_folds(np.repeat(np.arange(6), 10), 3, seed=0)
        >>> sorted(np.bincount(ids).tolist()), all(len(set(ids[g * 10:(g + 1) * 10])) == 1 for g in range(6))
        ([20, 20, 20], True)
    """
    groups = np.asarray(groups)
    n_groups = int(groups.max()) + 1
    if n_groups < folds:
        raise RliError(f"{folds} folds need at least {folds} groups; got {n_groups}")
    ids = np.empty(len(groups), dtype=np.int64)
    if labels is not None:
        from sklearn.model_selection import StratifiedGroupKFold

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "least populated class has fewer members than n_splits"
            splitter = StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
            for f, (_, test) in enumerate(splitter.split(np.zeros(len(groups)), labels, groups)):
                ids[test] = f
        return ids
    sizes = np.bincount(groups, minlength=n_groups)
    fold_of = np.empty(n_groups, dtype=np.int64)
    rows = np.zeros(folds, dtype=np.int64)
    for g in np.random.default_rng(seed).permutation(n_groups):
        fold_of[g] = f = int(np.argmin(rows))
        rows[f] += sizes[g]
    ids[:] = fold_of[groups]
    return ids


def fold_split(obs: Any, y: np.ndarray, folds: int, seed: int, *, groups: Any = None, split: str = "auto",
               stratify: bool = False) -> FoldSplit:
    """The K-fold split a probe uses: grouped by ``groups`` (an array or a label name of ``obs``), by the
    ``episode`` label for rollout observations (``split="auto"``), by contiguous grid blocks
    (``split="blocks"``), or by rows (``split="rows"``, only when asked).

    Too few groups for the folds is an :class:`RliError`. Grid blocks cut each grid axis
    into ``ceil((4·folds)^(1/axes))`` contiguous pieces (at most its length): 25 blocks of
    a 2-D grid for 5 folds.

    Example:
        >>> import numpy as np, rli
        >>> obs = rli.ObsSet(np.zeros((40, 2)), {"episode": np.repeat(np.arange(8), 5)})
        >>> fold_split(obs, np.zeros(40), 4, seed=0).description
        'grouped by episode, 4 folds, 8 groups'
    """
    n = len(y)
    if not isinstance(split, str) or split not in SPLITS:
        raise RliError(f"split must be one of {', '.join(map(repr, SPLITS))}, not {split!r}")
    if n < 2 * folds:
        raise RliError(f"{folds}-fold probing needs at least {2 * folds} observations (2 per fold); got {n}: "
                       "use more observations or lower folds=")
    if groups is not None and split in ("rows", "blocks"):
        raise RliError(f"groups= and split={split!r} contradict each other; pass one of them")
    labels = y if stratify else None
    if split == "rows" or (split == "auto" and groups is None and not _has_episodes(obs)):
        return FoldSplit(_row_folds(y, folds, seed, stratify), None, "rows", None, None, folds)
    if split == "blocks":
        codes, by = _grid_blocks(obs, folds, n)
        kind = "blocks"
    else:
        if groups is None and split == "groups":
            if not _has_episodes(obs):
                raise RliError("split='groups' needs groups= (an array or a label name) or observations with an "
                               "'episode' label (rli.ObsSet.from_rollouts records one)")
        spec = "episode" if groups is None else groups
        codes, by = _group_codes(obs, spec, n)
        kind = "groups"
    n_groups = int(codes.max()) + 1
    if n_groups < folds:
        raise RliError(f"{folds}-fold probing grouped by {by} needs at least {folds} groups; got {n_groups}: use "
                       f"fewer folds (folds={max(2, n_groups)}), more episodes/groups, or split='rows' knowingly "
                       "(rows of one group then sit in training and test folds, which inflates the score)")
    ids = group_folds(codes, folds, seed, labels)
    if stratify:
        for f in range(folds):
            if np.unique(y[ids != f]).size < 2:
                raise RliError(f"with the split grouped by {by}, training fold {f} holds only one class; use more "
                               "groups, fewer folds, or groups whose labels vary")
    return FoldSplit(ids, codes, kind, by, n_groups, folds)


def _has_episodes(obs: Any) -> bool:
    return isinstance(obs, ObsSet) and "episode" in obs.labels


def _group_codes(obs: Any, spec: Any, n: int) -> tuple[np.ndarray, str]:
    """Group codes 0..G-1 (in order of first appearance) from a label name or an array of group ids."""
    if isinstance(spec, str):
        if not isinstance(obs, ObsSet) or spec not in obs.labels:
            have = ", ".join(sorted(obs.labels)) if isinstance(obs, ObsSet) else "none (obs is not an rli.ObsSet)"
            raise RliError(f"groups={spec!r} is not a label of obs (labels: {have}); pass an array of group ids "
                           "or a label name")
        values, by = np.asarray(obs.labels[spec]), spec
    else:
        values, by = np.asarray(spec), "the given groups"
    if values.ndim != 1 or len(values) != n:
        raise RliError(f"groups must give one group id per observation ({n}); got shape {values.shape}")
    if values.dtype == object or (values.dtype.kind == "f" and not np.all(np.isfinite(values))):
        raise RliError("groups must be integers or strings without NaN (one id per observation)")
    _, first, codes = np.unique(values, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))  # codes in order of first appearance
    return rank[codes.ravel()].astype(np.int64), by


def _grid_blocks(obs: Any, folds: int, n: int) -> tuple[np.ndarray, str]:
    """Block codes of a product grid (``ObsSet.grid``, ``"ij"`` order): each axis cut into contiguous pieces."""
    shape = obs.meta.get("grid_shape") if isinstance(obs, ObsSet) else None
    if not shape or int(np.prod(shape)) != n:
        raise RliError("split='blocks' needs the observations of rli.ObsSet.grid(...) (its meta['grid_shape']); for "
                       "other data pass groups= (an array of block ids)")
    pieces = [min(int(s), math.ceil((4 * folds) ** (1 / len(shape)) - 1e-9)) for s in shape]
    index = np.indices(shape).reshape(len(shape), -1)
    block = np.zeros(n, dtype=np.int64)
    for axis, (size, cut) in enumerate(zip(shape, pieces)):
        block = block * cut + index[axis] * cut // int(size)
    _, codes = np.unique(block, return_inverse=True)
    return codes.ravel().astype(np.int64), "×".join(map(str, pieces))


def _row_folds(y: np.ndarray, folds: int, seed: int, stratify: bool) -> np.ndarray:
    from sklearn.model_selection import KFold, StratifiedKFold

    n = len(y)
    if stratify:
        labels, counts = np.unique(y, return_counts=True)
        if counts.min() < folds:
            raise RliError(f"class {labels[counts.argmin()]!r} of the target has {counts.min()} observations, fewer "
                           f"than the {folds} folds; use more observations, fewer folds, or merge rare classes")
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(n), y)
    else:
        splitter = KFold(folds, shuffle=True, random_state=seed).split(np.zeros((n, 1)))
    ids = np.empty(n, dtype=np.int64)
    for f, (_, test) in enumerate(splitter):
        ids[test] = f
    return ids


def _shuffled(y: np.ndarray, groups: np.ndarray | None, seed: int, i: int) -> np.ndarray:
    """The label-permutation control's target: whole groups' target sequences permuted between groups.

    Group g receives the target sequence of group ``perm[g]`` (``default_rng([seed, i])``),
    in its order, repeated cyclically or truncated to g's length, so each group keeps a
    real within-group sequence (an episode's drift, a block's smoothness) but no longer
    its own. Without groups (``split="rows"``) the rows are permuted.
    """
    rng = np.random.default_rng([seed, i])
    if groups is None:
        return y[rng.permutation(len(y))]
    order = np.argsort(groups, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(groups))])
    members = [order[a:b] for a, b in itertools.pairwise(bounds)]
    out = np.empty_like(y)
    for rows, source in zip(members, (members[g] for g in rng.permutation(len(members)))):
        out[rows] = y[source[np.arange(len(rows)) % len(source)]]
    return out


# -------------------------------------------------------------------------------- untrained copies
def _untrained_policy(policy: Policy, seed: int, init: UntrainedInit = None) -> Policy:
    """The untrained-network control's copy of ``policy``: :func:`rli.untrained.untrained_copy` (the policy's own
    initialiser by default, SB3's orthogonal gains for SB3 actor-critic policies); ``.untrained_init`` names it."""
    return untrained_copy(policy, seed, init)


def _raw_features(policy: Policy, obs: np.ndarray) -> np.ndarray:
    """Observations as the network receives them (after the policy's normaliser), one flat row each, in the layout
    the caller holds them (channels-last images stay channels last)."""
    seen = policy.normalize(obs)
    return np.asarray(seen).reshape(len(seen), -1)


def _control_mode(policy: Policy, opts: ProbeOptions) -> RecurrentState | None:
    """How an untrained control network of a recurrent policy is run: its own states replayed, or fresh."""
    if not policy.is_recurrent:
        return None
    return "fresh" if opts.recurrent_state == "fresh" else "replay"


def _control_states(policy: Policy, obs: Any, copies: list[Policy], names: list[str],
                    opts: ProbeOptions) -> tuple[RecurrentState | None, list[Iterator[ActivationChunk]]]:
    """The untrained controls' state mode, and for replayed states one activation stream per control network."""
    mode = _control_mode(policy, opts)
    if mode != "replay" or not copies:
        return mode, []
    return mode, [iter(iter_activations(clone, obs, names, chunk_size=opts.chunk_size, pool=opts.pool,
                                        recurrent_state="replay")) for clone in copies]


_Runs = tuple[dict[str, FitOutcome], dict[str, dict[str, list[FitOutcome]]], dict[str, StructuredNull]]


def _ridge_run(policy: Policy, obs: Any, y: np.ndarray, layers: list[Layer], ids: np.ndarray,
               opts: ProbeOptions) -> _Runs:
    n, k = y.shape
    widths = {layer.name: check_ridge_width(layer, opts.pool, n) for layer in layers}
    exponent = target_exponent(y)
    y = np.ldexp(y, -exponent)
    seeds = opts.control_seeds if opts.controls else 0
    surrogates, null_method = _null_targets(obs, y, opts)
    y_all = np.hstack([y] + [_shuffled(y, _split_groups(opts), opts.seed, i) for i in range(seeds)] + surrogates)
    names = [layer.name for layer in layers]
    raw_width = int(np.prod(policy.obs_shape))
    raw_note: tuple[str, ...] = ()
    with_raw = opts.controls
    if with_raw and min(raw_width, n) > MAX_RIDGE_WIDTH:
        with_raw, raw_note = False, (f"raw-observation control skipped: {raw_width} input features from {n} "
                                     f"observations exceed the {MAX_RIDGE_WIDTH} a ridge probe takes",)
    sets = [(widths[name], k * (1 + seeds + len(surrogates))) for name in names] + [(widths[name], k) for name in names] * seeds
    sets += [(raw_width, k)] if with_raw else []
    known = [(d, outputs) for d, outputs in sets if d is not None]
    if known:
        checks.fits_in_memory(sum(kept_bytes(opts.folds, d, n, outputs) for d, outputs in known)
                              + max(fit_bytes(d, n) for d, _ in known) * min(WORKERS, opts.folds),
                              "the ridge statistics of this probe")
    trained = {name: ridge_moments(opts.folds, widths[name], n) for name in names}
    copies = [_untrained_policy(policy, opts.seed + i, opts.untrained_init) for i in range(seeds)]
    untrained = [{name: ridge_moments(opts.folds, widths[name], n) for name in names} for _ in copies]
    raw = ridge_moments(opts.folds, raw_width, n) if with_raw else None
    seen = 0
    clone_mode, clone_streams = _control_states(policy, obs, copies, names, opts)
    for chunk in iter_activations(policy, obs, names, chunk_size=opts.chunk_size, pool=opts.pool,
                                  recurrent_state=opts.recurrent_state):
        if chunk.stop > n:
            raise RliError(f"obs has more observations than the target's {n} values; give one target value per "
                           "observation")
        order, bounds = fold_order(ids[chunk.start:chunk.stop], opts.folds)
        rows = y[chunk.start:chunk.stop]
        jobs = [(trained[name], chunk.activations[name], y_all[chunk.start:chunk.stop]) for name in names]
        if raw is not None:
            jobs.append((raw, _raw_features(policy, chunk.obs), rows))
        accumulate(jobs, order, bounds)
        for i, (clone, moments) in enumerate(zip(copies, untrained)):
            acts: Mapping[str, np.ndarray]
            if clone_streams:  # recurrent: each untrained network along the episodes on its own states
                part = next(clone_streams[i])
                assert (part.start, part.stop) == (chunk.start, chunk.stop)
                acts = part.activations
            else:
                acts = capture(clone, chunk.obs, names, chunk_size=len(chunk.obs), pool=opts.pool,
                               recurrent_state=clone_mode)
            accumulate([(moments[name], acts[name], rows) for name in names], order, bounds)
        seen = chunk.stop
    if seen != n:
        raise RliError(f"obs has {seen} observations but the target has {n} values; give one target value per "
                       "observation")
    main = [slice(0, k)]
    shuffled_groups = [slice(k * (i + 1), k * (i + 2)) for i in range(seeds)]
    results, controls, nulls = {}, {}, {}
    raw_outcome = ridge_outcomes(raw, main, opts, standardize=True, full=False)[0] if raw is not None else None
    for name in names:
        outcomes = ridge_outcomes(trained[name], main + shuffled_groups, opts, opts.standardize)
        fit = outcomes[0]
        assert fit.coef is not None and fit.intercept is not None, "a full ridge fit carries its weights"
        if surrogates:
            nulls[name] = StructuredNull.from_scores(float(fit.fold_scores.mean()), ridge_scores(
                trained[name], k * (1 + seeds), k, opts, opts.standardize), null_method)
        results[name] = fit._replace(coef=np.ldexp(fit.coef, exponent), notes=raw_note, intercept=(
            float(np.ldexp(fit.intercept, exponent)) if np.ndim(fit.intercept) == 0 else np.ldexp(fit.intercept, exponent)))
        if opts.controls:
            controls[name] = {
                "untrained": [_named_init(ridge_outcomes(m[name], main, opts, opts.standardize, full=False)[0], c)
                              for m, c in zip(untrained, copies)],
                "shuffled": outcomes[1:],
            }
            if raw_outcome is not None:
                controls[name]["raw_obs"] = [raw_outcome]
    return results, controls, nulls


def _null_targets(obs: Any, y: np.ndarray, opts: ProbeOptions) -> tuple[list[np.ndarray], str]:
    """The structured null's surrogate targets (none without ``null=``) and how they were made: by the split's
    groups when it is grouped, along the grid of an ``ObsSet.grid``, by the ``episode`` label, else rows permuted
    (:func:`rli.structured_null.for_probe`)."""
    if opts.null is None:
        return [], ""
    split = opts.fold_split
    groups = split.groups if split is not None and split.kind == "groups" else None
    return for_probe(obs, y, groups, opts.null_samples, opts.seed, classes=opts.kind == "logistic")


def _named_init(outcome: FitOutcome, clone: Any) -> FitOutcome:
    """An untrained control's outcome, noting how its network was initialised."""
    return outcome._replace(notes=(*outcome.notes, f"initialised with {clone.untrained_init}"))


# ------------------------------------------------------------------------------ scikit-learn probes
_INNER_FOLDS = 3
_MLP_VALIDATION_FOLDS = 10  # one group-fold of ten: about scikit-learn's validation_fraction=0.1


def _inner_splits(groups: np.ndarray | None, y: np.ndarray, folds: int, seed: int,
                  stratify: bool) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Grouped (train, test) index pairs for an inner CV over the given rows (None: row-level, the model's own)."""
    if groups is None:
        return None
    _, codes = np.unique(groups, return_inverse=True)
    codes = codes.ravel()
    n_groups = int(codes.max()) + 1
    if n_groups < 2:
        raise RliError("a training fold holds a single group, so its inner split (penalty choice / early stopping) "
                       "cannot be grouped; use more groups (episodes) or fewer folds")
    ids = group_folds(codes, min(folds, n_groups), seed, y if stratify else None)
    splits = [(np.flatnonzero(ids != f), np.flatnonzero(ids == f)) for f in range(int(ids.max()) + 1)]
    if stratify and any(np.unique(y[train]).size < 2 for train, _ in splits):
        raise RliError("an inner training split of the grouped logistic probe holds one class only; use more "
                       "groups (episodes), fewer folds, or a single penalty (alphas=...)")
    return splits


class _GroupedMLP:
    """The mlp probe with early stopping on whole held-out groups (scikit-learn's own split is row-level).

    Inputs and target standardised on the training rows; ``MLPRegressor`` (adam, the
    same settings as the row-level probe) trained one epoch at a time (``partial_fit``) on
    the groups outside a validation group-fold (about 10% of the groups); training stops
    after 10 epochs without a validation-R² gain above 1e-4 (at most 500) and the weights of
    the best epoch are kept, as scikit-learn's ``early_stopping`` does with its row-level split.
    """

    def __init__(self, alpha: float, seed: int, groups: np.ndarray) -> None:
        self.alpha, self.seed, self.groups = alpha, seed, groups

    def fit(self, x: np.ndarray, y: np.ndarray) -> _GroupedMLP:
        from sklearn.neural_network import MLPRegressor
        from sklearn.preprocessing import StandardScaler

        splits = _inner_splits(self.groups, y, _MLP_VALIDATION_FOLDS, self.seed, stratify=False)
        assert splits is not None, "grouped inner splits exist whenever there are groups"
        train, val = splits[0]
        self.x_scaler = StandardScaler().fit(x[train])
        self.y_scaler = StandardScaler().fit(y[train].reshape(len(train), -1))
        xs = self.x_scaler.transform(x)
        ys = self.y_scaler.transform(y.reshape(len(y), -1))
        ys = ys[:, 0] if y.ndim == 1 else ys
        self.mlp = MLPRegressor(hidden_layer_sizes=_MLP_HIDDEN, alpha=self.alpha, random_state=self.seed)
        best, best_weights, stale = -np.inf, None, 0
        for _ in range(500):
            self.mlp.partial_fit(xs[train], ys[train])
            score = self.mlp.score(xs[val], ys[val])
            if score > best + 1e-4 or best_weights is None:
                stale = 0
            else:
                stale += 1
            if score > best or best_weights is None:
                best = score
                best_weights = ([c.copy() for c in self.mlp.coefs_], [b.copy() for b in self.mlp.intercepts_])
            if stale > 10:
                break
        assert best_weights is not None, "the first epoch always keeps its weights"
        self.mlp.coefs_, self.mlp.intercepts_ = best_weights
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        out = self.y_scaler.inverse_transform(self.mlp.predict(self.x_scaler.transform(x)).reshape(len(x), -1))
        return out[:, 0] if out.shape[1] == 1 else out


def _sk_model(opts: ProbeOptions, standardize: bool, multi: bool, groups: np.ndarray | None,
              y: np.ndarray, width: int) -> Any:
    """The scikit-learn probe for one training set; with ``groups`` (those rows' group codes) every inner split
    (lasso's and logistic's CV, the MLP's early-stopping set) holds out whole groups; ``width``: the features."""
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.linear_model import Lasso, LassoCV, MultiTaskLasso, MultiTaskLassoCV
    from sklearn.model_selection import KFold, StratifiedKFold
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    from rli.logistic_path import LogisticPath, logistic

    scaler = StandardScaler() if standardize else FunctionTransformer()
    alphas = opts.alphas
    if opts.kind == "lasso":
        if alphas is not None and len(alphas) == 1:
            model = (MultiTaskLasso if multi else Lasso)(alpha=alphas[0], max_iter=5000)
        else:
            search = {} if alphas is None else {"alphas": list(alphas)}
            cv = _inner_splits(groups, y, _INNER_FOLDS, opts.seed, stratify=False)
            model = (MultiTaskLassoCV if multi else LassoCV)(
                cv=KFold(3, shuffle=True, random_state=opts.seed) if cv is None else cv, max_iter=5000, **search)
        return make_pipeline(scaler, model)
    if opts.kind == "logistic":
        grid = alphas or _LOGISTIC_GRID
        model = logistic(1.0 / grid[0], width, len(np.unique(y)))
        if len(grid) > 1:
            cv = _inner_splits(groups, y, _INNER_FOLDS, opts.seed, stratify=True)
            model = LogisticPath(tuple(1.0 / a for a in grid),
                                 StratifiedKFold(3, shuffle=True, random_state=opts.seed) if cv is None else cv)
        return make_pipeline(scaler, model)
    alpha = alphas[0] if alphas else 1e-4
    if groups is not None:
        return _GroupedMLP(alpha, opts.seed, groups)
    mlp = MLPRegressor(hidden_layer_sizes=_MLP_HIDDEN, alpha=alpha, early_stopping=True,
                       max_iter=500, random_state=opts.seed)
    return TransformedTargetRegressor(make_pipeline(StandardScaler(), mlp), transformer=StandardScaler())


def _sk_outcome(x: np.ndarray, y: np.ndarray, ids: np.ndarray, opts: ProbeOptions, standardize: bool) -> FitOutcome:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import balanced_accuracy_score, r2_score

    x = np.asarray(x).reshape(len(x), -1).astype(np.float64)
    classify = opts.kind == "logistic"
    target = y if classify or y.shape[1] > 1 else y[:, 0]
    multi = not classify and y.shape[1] > 1
    groups = _split_groups(opts)
    scores, outputs, balanced = [], [], []
    with one_blas_thread(x.size < 2e7), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        for f in range(opts.folds):
            train, test = ids != f, ids == f
            inner = None if groups is None else groups[train]
            model = _sk_model(opts, standardize, multi, inner, target[train], x.shape[1]).fit(x[train], target[train])
            predicted = model.predict(x[test])
            if classify:
                scores.append(float(np.mean(predicted == target[test])))
                balanced.append(balanced_accuracy_score(target[test], predicted))
            else:
                per_output = np.atleast_1d(r2_score(target[test], predicted, multioutput="raw_values"))
                outputs.append(per_output)
                scores.append(float(per_output.mean()))
        final = _sk_model(opts, standardize, multi, groups, target, x.shape[1]).fit(x, target)
        unconverged = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
    notes = ((f"{opts.kind} did not converge in {unconverged} fits (the {opts.folds + 1} probe fits and their inner "
              "penalty searches)",) if unconverged else ())
    coef, intercept, alpha, nonzero = _sk_weights(final, opts.kind)
    return FitOutcome(np.asarray(scores), np.mean(outputs, axis=0) if outputs else np.asarray([np.mean(scores)]),
                    x.shape[1], coef, intercept, alpha, (), nonzero, np.asarray(balanced) if classify else None, notes)


def _sk_weights(model: Any, kind: str) -> tuple[np.ndarray | None, Any, float | None, int | None]:
    """Weights in raw feature space (undoing the pipeline's scaler), intercept, chosen penalty, features used."""
    if kind == "mlp":
        return None, None, float(model.alpha if isinstance(model, _GroupedMLP) else model.regressor_[-1].alpha), None
    scaler, est = model[0], model[-1]
    if hasattr(est, "best_estimator_"):
        est = est.best_estimator_
    scale = getattr(scaler, "scale_", None)
    mean = getattr(scaler, "mean_", None)
    coef = np.atleast_2d(est.coef_).T
    if scale is not None:
        coef = coef / scale[:, None]
    intercept = np.atleast_1d(est.intercept_) - (mean @ coef if mean is not None else 0.0)
    alpha = float(est.alpha_ if hasattr(est, "alpha_") else getattr(est, "alpha", 1.0 / getattr(est, "C", 1.0)))
    nonzero = int(np.count_nonzero(np.any(coef != 0, axis=1))) if kind == "lasso" else None
    if coef.shape[1] == 1:
        return coef[:, 0], float(intercept[0]), alpha, nonzero
    return coef, intercept, alpha, nonzero


def _sk_run(policy: Policy, obs: Any, y: np.ndarray, layers: list[Layer], ids: np.ndarray,
            opts: ProbeOptions) -> _Runs:
    names = [layer.name for layer in layers]
    if opts.kind != "logistic":
        largest = float(np.max(np.abs(y)))
        if not _SK_RANGE[0] <= largest <= _SK_RANGE[1]:
            raise RliError(f"the target reaches {largest:.3g} in magnitude; a {opts.kind} probe (scikit-learn, "
                           f"float64) needs it within {_SK_RANGE[0]:g}..{_SK_RANGE[1]:g}: rescale the target "
                           "(R² does not depend on its units), or use kind='ridge', which rescales it itself")
    arr = policy.prepare_obs(obs.obs if isinstance(obs, ObsSet) else obs)
    source = obs if isinstance(obs, ObsSet) else arr  # an ObsSet keeps the recorded recurrent states
    acts = capture(policy, source, names, chunk_size=opts.chunk_size, pool=opts.pool,
                   recurrent_state=opts.recurrent_state)
    results = {name: _sk_outcome(acts[name], y, ids, opts, opts.standardize) for name in names}
    controls: dict[str, dict[str, list[FitOutcome]]] = {}
    if opts.controls:
        seeds = range(opts.control_seeds)
        clone_mode = _control_mode(policy, opts)
        clones = [_untrained_policy(policy, opts.seed + i, opts.untrained_init) for i in seeds]
        copies = [capture(clone, source, names, chunk_size=opts.chunk_size, pool=opts.pool,
                          recurrent_state=clone_mode) for clone in clones]
        raw = _sk_outcome(_raw_features(policy, arr), y, ids, opts, standardize=True)
        for name in names:
            controls[name] = {
                "untrained": [_named_init(_sk_outcome(c[name], y, ids, opts, opts.standardize), clone)
                              for c, clone in zip(copies, clones)],
                "shuffled": [_sk_outcome(acts[name], _shuffled(y, _split_groups(opts), opts.seed, i), ids, opts,
                                           opts.standardize)
                             for i in seeds],
                "raw_obs": [raw],
            }
    surrogates, null_method = _null_targets(obs, y, opts)
    nulls = {name: StructuredNull.from_scores(
        float(results[name].fold_scores.mean()),
        [_sk_outcome(acts[name], s, ids, opts, opts.standardize).fold_scores.mean() for s in surrogates], null_method)
        for name in names} if surrogates else {}
    return results, controls, nulls


# ------------------------------------------------------------------------------------------ driver
def _run(policy: Policy, obs: Any, target: Any, specs: Sequence[LayerSpec], opts: ProbeOptions) -> list[ProbeResult]:
    if not isinstance(policy, Policy):
        raise RliError(f"policy must be an rli.Policy (use rli.load_policy(...)), not {type(policy).__name__}")
    if isinstance(obs, Mapping):  # Dict observations: flat rows in gymnasium's order, so "obs[i]" indexes them
        obs = policy.prepare_obs(obs)
    y, name = probe_target(obs, target, opts.kind)
    length = obs_length(obs)
    if length is not None and length != len(y):
        raise RliError(f"target {name!r} has {len(y)} values but obs has {length} observations; give one target "
                       "value (or row) per observation")
    layers = list({layer.name: layer for layer in (policy.layer(spec) for spec in specs)}.values())
    split = fold_split(obs, y, opts.folds, opts.seed, groups=opts.groups, split=opts.split,
                       stratify=opts.kind == "logistic")
    opts = replace(opts, fold_split=split)
    ids = split.ids
    run = _ridge_run if opts.kind == "ridge" else _sk_run
    return _results(policy, *run(policy, obs, y, layers, ids, opts), layers, name, y, opts)


def _state_notes(policy: Policy, opts: ProbeOptions) -> list[str]:
    """What a recurrent policy's result says about the hidden states it was measured on."""
    if not policy.is_recurrent:
        return []
    used = {None: "recorded", "recorded": "recorded", "replay": "replayed", "fresh": "fresh"}[opts.recurrent_state]
    note = f"recurrent states: {used}"
    if opts.controls:
        note += f" (untrained controls: {'fresh' if _control_mode(policy, opts) == 'fresh' else 'their own, replayed'})"
    return [note]


def _split_fields(opts: ProbeOptions) -> dict[str, Any]:
    """The result's ``split`` and ``n_groups`` from the resolved split."""
    split = opts.fold_split
    if split is None:
        return {"split": f"rows (row-level K-fold), {opts.folds} folds", "n_groups": None}
    return {"split": split.description, "n_groups": split.n_groups}


def _results(policy: Policy, outcomes: dict[str, FitOutcome], controls: dict[str, dict[str, list[FitOutcome]]],
             nulls: dict[str, StructuredNull], layers: list[Layer], target: str, y: np.ndarray,
             opts: ProbeOptions) -> list[ProbeResult]:
    classify = opts.kind == "logistic"
    chance = float(np.unique(y, return_counts=True)[1].max() / len(y)) if classify else None
    out = []
    for layer in layers:
        o = outcomes[layer.name]
        runs = {key: tuple(float(r.fold_scores.mean()) for r in rs) for key, rs in controls.get(layer.name, {}).items()}
        means = {key: float(np.mean(v)) for key, v in runs.items()}
        r2 = float(o.fold_scores.mean())
        low, high = stats.cv_interval(o.fold_scores)
        per_fold = {key: tuple(map(float, np.mean([r.fold_scores for r in rs], axis=0)))
                    for key, rs in controls.get(layer.name, {}).items()}
        notes = list(o.notes) + _state_notes(policy, opts)
        for key, rs in controls.get(layer.name, {}).items():
            notes += [f"{key} control: {note}" for note in dict.fromkeys(n for r in rs for n in r.notes)]
        out.append(ProbeResult(
            layer=layer.name, layer_index=layer.index, layer_type=layer.type, kind=opts.kind,
            metric="accuracy" if classify else "r2", target=target, score=r2,
            ci=(max(low, 0.0) if classify else low, min(high, 1.0)),
            fold_scores=tuple(map(float, o.fold_scores)), controls=means, control_runs=runs,
            selectivity=r2 - max(means.values()) if means else None, **_selectivity(o.fold_scores, means, per_fold),
            control_fold_scores=per_fold, null=nulls.get(layer.name), coef=o.coef, intercept=o.intercept,
            alpha=o.alpha, fold_alphas=o.fold_alphas, n_nonzero=o.n_nonzero,
            balanced_accuracy=float(o.balanced.mean()) if o.balanced is not None else None, chance=chance,
            output_r2=() if classify else tuple(map(float, o.output_scores)), n=len(y), width=o.width,
            folds=opts.folds, seed=opts.seed, standardize=opts.standardize, notes=tuple(notes),
            **_split_fields(opts)))
    return out


def _selectivity(scores: np.ndarray, means: dict[str, float],
                 per_fold: dict[str, tuple[float, ...]]) -> dict[str, Any]:
    """Selectivity against the best control, fold by fold: the per-fold differences of the layer's score and the
    control's (per fold, the mean over its seeds), their corrected resampled 95% t-interval and one-sided p-value."""
    if not means:
        return {"selectivity_ci": None, "selectivity_p": None}
    best = np.asarray(per_fold[max(means, key=means.__getitem__)])
    return {"selectivity_ci": stats.cv_interval(scores - best),
            "selectivity_p": stats.cv_paired_ttest(scores, best, alternative="greater")[1]}
