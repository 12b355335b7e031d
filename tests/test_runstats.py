"""rli.runstats against rliable (same estimators), its input checks, and the null / power of the PoI decision."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

import numpy as np
import pytest
from scipy import stats as st

from rli.errors import RliError
from rli.runstats import iqm_ci, over_seeds, probability_of_improvement, select, stratified_bootstrap

rliable_metrics = pytest.importorskip("rliable.metrics")


def _import_rliable_library() -> types.ModuleType:
    """rliable.library; arch 7.2's package ``__init__`` fails under pandas 3 (its univariate models), so when it
    does, load ``arch.bootstrap`` (all rliable uses) without running that ``__init__``."""
    try:
        return importlib.import_module("rliable.library")
    except TypeError:
        spec = importlib.util.find_spec("arch")
        assert spec is not None and spec.submodule_search_locations is not None
        for name in [m for m in sys.modules if m == "arch" or m.startswith("arch.")]:
            del sys.modules[name]
        shim = types.ModuleType("arch")
        shim.__path__ = list(spec.submodule_search_locations)
        sys.modules["arch"] = shim
        sys.modules.pop("rliable.library", None)
        return importlib.import_module("rliable.library")


rliable_library = _import_rliable_library()

REPS = 2000  # rliable's bootstrap replications (arch loops in Python); ours use more where it is cheap


def _scores(seed: int, runs: int = 10, tasks: int = 3, shift: float = 0.0) -> np.ndarray:
    """runs × tasks, with a per-run (seed) effect shared across tasks: the strata are correlated."""
    rng = np.random.default_rng(seed)
    return (shift + np.linspace(0.3, 0.8, tasks)[None, :] + 0.1 * rng.standard_normal((runs, 1))
            + 0.1 * rng.standard_normal((runs, tasks)))


def _strata(matrix: np.ndarray) -> dict[str, np.ndarray]:
    return {f"task{j}": matrix[:, j] for j in range(matrix.shape[1])}


def _rliable(score_dict: dict[str, np.ndarray], func, seed: int = 0):
    np.random.seed(seed)  # rliable's StratifiedBootstrap draws from numpy's global generator
    points, intervals = rliable_library.get_interval_estimates(score_dict, func, reps=REPS)
    return points, intervals


def test_iqm_matches_rliable_point_and_interval():
    matrix = _scores(0)
    ours = stratified_bootstrap(_strata(matrix), "iqm", n_resamples=REPS, seed=1)
    points, intervals = _rliable({"x": matrix}, lambda m: np.array([rliable_metrics.aggregate_iqm(m)]))
    assert ours.value == pytest.approx(float(points["x"][0]), abs=1e-12)
    width = intervals["x"][1, 0] - intervals["x"][0, 0]
    assert ours.ci[0] == pytest.approx(intervals["x"][0, 0], abs=0.1 * width)  # Monte-Carlo tolerance
    assert ours.ci[1] == pytest.approx(intervals["x"][1, 0], abs=0.1 * width)
    assert ours.n_seeds == {"task0": 10, "task1": 10, "task2": 10}


def test_mean_and_median_match_rliable():
    matrix = _scores(3)
    for statistic, func in (("mean", rliable_metrics.aggregate_mean), ("median", rliable_metrics.aggregate_median)):
        ours = stratified_bootstrap(_strata(matrix), statistic, n_resamples=REPS, seed=2)
        points, intervals = _rliable({"x": matrix}, lambda m, f=func: np.array([f(m)]))
        # rliable's mean/median average per-task statistics; with equal runs per task the pooled mean is the same
        if statistic == "mean":
            assert ours.value == pytest.approx(float(points["x"][0]), abs=1e-12)
            width = intervals["x"][1, 0] - intervals["x"][0, 0]
            assert ours.ci[0] == pytest.approx(intervals["x"][0, 0], abs=0.1 * width)
            assert ours.ci[1] == pytest.approx(intervals["x"][1, 0], abs=0.1 * width)
        else:
            assert ours.value == pytest.approx(float(np.median(matrix)), abs=1e-12)


def _poi_against_rliable(tasks: int, reps: int, tolerance: float) -> None:
    x, y = _scores(4, runs=8, tasks=tasks, shift=0.08), _scores(5, runs=6, tasks=tasks)
    ours = probability_of_improvement(_strata(x), _strata(y), n_resamples=20_000, seed=3)
    assert ours.value == pytest.approx(float(rliable_metrics.probability_of_improvement(x, y)), abs=1e-12)
    np.random.seed(0)
    points, intervals = rliable_library.get_interval_estimates(
        {"x,y": [x, y]}, lambda a, b: np.array([rliable_metrics.probability_of_improvement(a, b)]), reps=reps)
    assert ours.value == pytest.approx(float(points["x,y"][0]), abs=1e-12)
    width = intervals["x,y"][1, 0] - intervals["x,y"][0, 0]
    # Monte-Carlo tolerance: the SE of a 2.5% percentile from R replications is about 0.7 * width / sqrt(R)
    assert ours.ci[0] == pytest.approx(intervals["x,y"][0, 0], abs=tolerance * width)
    assert ours.ci[1] == pytest.approx(intervals["x,y"][1, 0], abs=tolerance * width)


def test_probability_of_improvement_matches_rliable():
    _poi_against_rliable(tasks=1, reps=400, tolerance=0.15)


@pytest.mark.slow
def test_probability_of_improvement_matches_rliable_over_tasks():
    _poi_against_rliable(tasks=3, reps=4000, tolerance=0.06)


def test_probability_of_improvement_is_mann_whitney_per_stratum():
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=9), rng.normal(0.5, 1, size=7)
    expected = st.mannwhitneyu(x, y, alternative="greater").statistic / (9 * 7)
    assert probability_of_improvement(x, y, n_resamples=100).value == pytest.approx(expected)
    assert probability_of_improvement(x, x, n_resamples=100).value == 0.5


def test_ragged_strata_resample_within_each_stratum():
    scores = {"a": [0.0, 0.0, 0.0], "b": [1.0, 1.0, 1.0, 1.0, 1.0]}
    est = stratified_bootstrap(scores, "mean", n_resamples=500)
    assert est.ci == (pytest.approx(5 / 8), pytest.approx(5 / 8))  # each stratum keeps its seed count
    assert est.value == pytest.approx(5 / 8)


def test_seeded_and_deterministic():
    scores = _strata(_scores(8))
    assert iqm_ci(scores, seed=5, n_resamples=500) == iqm_ci(scores, seed=5, n_resamples=500)
    assert iqm_ci(scores, seed=5, n_resamples=500).ci != iqm_ci(scores, seed=6, n_resamples=500).ci


@pytest.mark.parametrize(("call", "match"), [
    (lambda: iqm_ci({}), "empty mapping"),
    (lambda: iqm_ci([[1.0, 2.0]]), "1-D"),
    (lambda: iqm_ci([1.0, float("nan")]), "NaN"),
    (lambda: iqm_ci([1.0, 2.0], confidence=95), "confidence"),
    (lambda: iqm_ci([1.0, 2.0], n_resamples=0), "n_resamples"),
    (lambda: stratified_bootstrap([1.0], "max"), "statistic"),
    (lambda: probability_of_improvement({"a": [1.0]}, {"b": [1.0]}), "same strata"),
    (lambda: select([1, 2]), "dicts"),
])
def test_bad_input_is_one_line_rli_error(call, match):
    with pytest.raises(RliError, match=match) as info:
        call()
    assert "\n" not in str(info.value)


def _records(values_by_seed: dict[int, list[float]], target: str = "upwash") -> list[dict]:
    return [{"checkpoint": f"seed_{s}/rl_model_{k * 10}_steps.zip", "step": k * 10, "seed": s, "analysis": "probe",
             "layer": 5, "target": target, "metric": "r2", "value": v, "ci_low": v - 0.01, "ci_high": v + 0.01,
             "spec_key": "k"} for s, vals in values_by_seed.items() for k, v in enumerate(vals)]


def test_over_seeds_takes_each_seeds_last_step_and_stratifies_by_target():
    rows = _records({0: [0.1, 0.9], 1: [0.2, 0.95], 2: [0.3, 0.97], 3: [0.4, 0.5]})
    rows += _records({0: [0.0, 0.6], 1: [0.0, 0.7]}, target="roll")
    est = over_seeds(rows, "r2", layer=5, n_resamples=REPS)
    pooled = [0.9, 0.95, 0.97, 0.5, 0.6, 0.7]
    assert est.value == pytest.approx(st.trim_mean(pooled, 0.25))
    assert est.n_seeds == {"upwash": 4, "roll": 2}
    at_zero = over_seeds(rows, "r2", layer="5", target="upwash", step=0, n_resamples=100)
    assert at_zero.value == pytest.approx(st.trim_mean([0.1, 0.2, 0.3, 0.4], 0.25))


def test_over_seeds_rejects_ambiguous_or_missing_records():
    rows = _records({0: [0.5], 1: [0.6]})
    with pytest.raises(RliError, match="several records for seed"):
        over_seeds(rows + rows, "r2", layer=5)
    with pytest.raises(RliError, match="no records"):
        over_seeds(rows, "r2", layer=3)
    with pytest.raises(RliError, match="step"):
        over_seeds(rows, "r2", step=1.5)


def _poi_decisions(shift: float, runs: int, reps: int, n_resamples: int) -> np.ndarray:
    """'x improves on y' (permutation p < 0.05) over ``reps`` simulated experiments, 3 correlated tasks."""
    out = np.empty(reps, dtype=bool)
    for r in range(reps):
        x, y = _scores(10_000 + 2 * r, runs=runs, shift=shift), _scores(10_001 + 2 * r, runs=runs)
        est = probability_of_improvement(_strata(x), _strata(y), n_resamples=n_resamples, seed=r,
                                         n_permutations=n_resamples)
        assert est.p_value is not None
        out[r] = est.p_value < 0.05
    return out


def _null_and_power(reps: int, n_resamples: int) -> None:
    bound = st.binom.ppf(0.99, reps, 0.05) / reps  # fixed in advance: 99th percentile of Binomial(R, 0.05)
    false_positive = _poi_decisions(0.0, runs=10, reps=reps, n_resamples=n_resamples).mean()
    assert false_positive <= bound, f"PoI p < 0.05 in {false_positive:.1%} of null runs (bound {bound:.1%})"
    power = _poi_decisions(0.2, runs=10, reps=reps, n_resamples=n_resamples).mean()
    assert power >= 0.8, f"PoI detects a 0.2 shift (about 1.4 sd) in only {power:.0%} of runs"


def test_probability_of_improvement_decision_null_and_power_fast():
    _null_and_power(reps=60, n_resamples=1000)


@pytest.mark.slow
def test_probability_of_improvement_decision_null_and_power_thorough():
    _null_and_power(reps=400, n_resamples=2000)
