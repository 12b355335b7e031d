"""rli.emergence and the training-run assertions: the rule, its null calibration and power, failure messages."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as st

from pytest_rli.run_assertions import assert_emerges_by, assert_stable_across, over_seeds
from rli.emergence import curve, dips, emergence, emergence_from_records
from rli.errors import RliError
from rli.stats import t_interval

THRESHOLD = 0.9
STEPS = np.arange(8) * 10_000
FOLDS, SIGMA, RHO = 5, 0.03, 0.8


def _rows(values, low=None, high=None, steps=STEPS, layer=5, target="upwash", seed=0):
    low = np.asarray(values) - 0.02 if low is None else low
    high = np.asarray(values) + 0.02 if high is None else high
    return [{"checkpoint": f"rl_model_{s}_steps.zip", "step": int(s), "seed": seed, "analysis": "probe", "layer": layer,
             "target": target, "metric": "r2", "value": float(v), "ci_low": float(lo), "ci_high": float(hi),
             "spec_key": "k"} for s, v, lo, hi in zip(steps, values, low, high)]


def test_rule_first_step_that_clears_and_stays():
    e = emergence(STEPS, [0.2, 0.5, 0.95, 0.85, 0.95, 0.96, 0.97, 0.97], np.array([0.1, 0.4, 0.92, 0.8, 0.92, 0.93, 0.95, 0.95]),
                  np.array([0.3, 0.6, 0.97, 0.95, 0.97, 0.98, 0.99, 0.99]), threshold=THRESHOLD)
    assert e.first_clear == 20_000  # clears once, dips (CI straddles), clears again for good
    assert e.step == 40_000
    assert e.bracket == (10_000, 40_000)  # last step confidently below: 10k (20k.. are not below)
    assert e.emerged


def test_rule_never_and_from_the_start():
    never = emergence(STEPS, np.full(8, 0.8), np.full(8, 0.7), np.full(8, 0.95), threshold=THRESHOLD)
    assert never.step is None and not never.emerged and never.bracket == (None, None)
    always = emergence(STEPS, np.full(8, 0.97), np.full(8, 0.95), np.full(8, 0.99), threshold=THRESHOLD)
    assert always.step == 0 and always.bracket == (None, 0)
    last_only = emergence(STEPS, [0.5] * 7 + [0.97], [0.4] * 7 + [0.95], [0.6] * 7 + [0.99], threshold=THRESHOLD)
    assert last_only.step == 70_000 and last_only.bracket == (60_000, 70_000)


def test_unsorted_records_are_sorted_by_step():
    rows = _rows([0.2, 0.5, 0.95, 0.96, 0.97, 0.97, 0.97, 0.97])[::-1]
    e = emergence_from_records(rows, threshold=THRESHOLD, layer=5, target="upwash")
    assert e.steps == tuple(int(s) for s in STEPS)
    assert e.step == 20_000
    assert [r["step"] for r in curve(rows, layer="5", target="upwash")] == list(STEPS)


@pytest.mark.parametrize(("call", "match"), [
    (lambda: emergence([0.5, 1.0], [0.1, 0.2], [0, 0], [1, 1], threshold=0.5), "integer training steps"),
    (lambda: emergence([0, 1], [0.1], [0], [1], threshold=0.5), "one entry per checkpoint"),
    (lambda: emergence([0, 0], [0.1, 0.2], [0, 0], [1, 1], threshold=0.5), "distinct"),
    (lambda: emergence([0, 1], [0.1, np.nan], [0, 0], [1, 1], threshold=0.5), "finite"),
    (lambda: emergence([0, 1], [0.1, 0.2], [0, 0], [1, 1], threshold="high"), "threshold"),
    (lambda: emergence_from_records(_rows([0.5] * 8) + _rows([0.5] * 8, seed=1), threshold=0.5, layer=5),
     "several records at step"),
    (lambda: emergence_from_records(_rows([0.5] * 8), threshold=0.5, layer=3), "no records"),
    (lambda: emergence_from_records([{**r, "ci_low": None} for r in _rows([0.5] * 8)], threshold=0.5), "no CI"),
    (lambda: assert_emerges_by(_rows([0.5] * 8), step="late", layer=5, target="upwash", min=0.9), "step must"),
    (lambda: assert_stable_across(_rows([0.5] * 8), layer=5, target="upwash", min=None), "min must"),
])
def test_bad_input_is_one_line_rli_error(call, match):
    with pytest.raises(RliError, match=match) as info:
        call()
    assert "\n" not in str(info.value)


def test_assert_emerges_by_passes_and_fails_with_every_step_in_the_message():
    rows = _rows([0.2, 0.5, 0.8, 0.95, 0.96, 0.97, 0.97, 0.97])
    assert assert_emerges_by(rows, step=30_000, layer=5, target="upwash", min=THRESHOLD).step == 30_000
    with pytest.raises(AssertionError) as info:
        assert_emerges_by(rows, step=20_000, layer=5, target="upwash", min=THRESHOLD)
    message = str(info.value)
    assert "does not emerge by step 20000" in message and "only at step 30000" in message
    for r in rows:
        assert f"step {r['step']:>9}: {r['value']:.4f} [{r['ci_low']:.4f}, {r['ci_high']:.4f}]" in message
    with pytest.raises(AssertionError, match=r"never clears 0\.99 for good"):
        assert_emerges_by(rows, step=70_000, layer=5, target="upwash", min=0.99)


def test_assert_stable_across_fails_on_a_dip_judged_on_the_lower_bound():
    values = [0.2, 0.95, 0.96, 0.89, 0.96, 0.97, 0.97, 0.97]
    with pytest.raises(AssertionError) as info:
        assert_stable_across(_rows(values), layer=5, target="upwash", min=THRESHOLD)
    assert "from step 10000" in str(info.value) and "at steps [30000]" in str(info.value)
    assert assert_stable_across(_rows(values), layer=5, target="upwash", min=THRESHOLD, after=40_000).step == 40_000
    with pytest.raises(AssertionError, match="ever clears"):
        assert_stable_across(_rows([0.5] * 8), layer=5, target="upwash", min=THRESHOLD)


def test_over_seeds_helper_is_the_runstats_estimate():
    rows = [r for s, v in enumerate([0.95, 0.97, 0.96, 0.6, 0.93]) for r in _rows([v] * 8, seed=s)]
    est = over_seeds(rows, "r2", layer=5, target="upwash", n_resamples=2000)
    assert est.value == pytest.approx(st.trim_mean([0.95, 0.97, 0.96, 0.6, 0.93], 0.25))
    assert est.ci[0] <= est.value <= est.ci[1]


# ------------------------------------------------------------------------- calibration
def _fold_noise(rng: np.random.Generator, n_steps: int) -> np.ndarray:
    """(folds, steps) estimation noise, AR(1) across checkpoints (the same held-out folds are reused at each)."""
    noise = np.empty((FOLDS, n_steps))
    noise[:, 0] = rng.standard_normal(FOLDS)
    for t in range(1, n_steps):
        noise[:, t] = RHO * noise[:, t - 1] + np.sqrt(1 - RHO**2) * rng.standard_normal(FOLDS)
    return SIGMA * noise


def _measure(truth: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scores = truth[None, :] + _fold_noise(rng, truth.size)
    intervals = np.array([t_interval(scores[:, t]) for t in range(truth.size)])
    return scores.mean(axis=0), intervals[:, 0], intervals[:, 1]


def _flat_below(rng: np.random.Generator) -> np.ndarray:
    """A true curve that never reaches the threshold: just below it, drifting slowly (AR(1)) but bounded below it."""
    drift = np.cumsum(rng.standard_normal(STEPS.size)) * 0.3
    return THRESHOLD - 0.01 - 0.01 * (1 + np.tanh(drift)) / 2


def _sigmoid(rng: np.random.Generator) -> np.ndarray:
    """A planted emergence: from 0.6 to 0.97, crossing the threshold between steps 3 and 4 (a random centre)."""
    centre = 3.0 + rng.uniform(0.0, 1.0)
    return 0.6 + 0.37 / (1 + np.exp(-2.5 * (np.arange(STEPS.size) - centre)))


def _bound(reps: int) -> float:
    return st.binom.ppf(0.99, reps, 0.05) / reps  # fixed in advance: the 99th percentile of Binomial(R, 0.05)


def _emergence_calibration(reps: int) -> None:
    rng = np.random.default_rng(2026)
    false = np.mean([emergence(STEPS, *_measure(_flat_below(rng), rng), threshold=THRESHOLD).emerged
                     for _ in range(reps)])
    assert false <= _bound(reps), f"emergence declared on {false:.1%} of never-crossing curves (bound {_bound(reps):.1%})"
    found, covered = 0, 0
    for _ in range(reps):
        truth = _sigmoid(rng)
        e = emergence(STEPS, *_measure(truth, rng), threshold=THRESHOLD)
        crossing = int(STEPS[np.argmax(truth > THRESHOLD)])
        found += e.emerged and e.step is not None and e.step <= crossing + 20_000
        covered += e.emerged and (e.bracket[0] is None or e.bracket[0] < crossing) and e.step is not None \
            and e.step >= crossing
    assert found / reps >= 0.8, f"the planted emergence is found within two checkpoints in only {found / reps:.0%}"
    assert covered / reps >= 0.8, f"the bracket holds the true crossing in only {covered / reps:.0%}"


def _stable(truth: np.ndarray, rng: np.random.Generator) -> bool:
    """assert_stable_across's rule (rli.emergence.dips) from step 10k on one measured curve."""
    _, judged, dipped = dips(emergence(STEPS, *_measure(truth, rng), threshold=THRESHOLD), after=10_000)
    return bool(judged) and not dipped


def _stability_calibration(reps: int) -> None:
    rng = np.random.default_rng(7)
    dip = np.array([0.6, 0.97, 0.97, 0.97, 0.97, THRESHOLD - 0.005, 0.97, 0.97])  # truly falls just below once
    passed = 0
    for _ in range(reps):
        passed += _stable(dip, rng)
    assert passed / reps <= _bound(reps), f"a real dip passes as stable in {passed / reps:.1%} of runs"
    steady = np.array([0.6, 0.97, 0.97, 0.97, 0.97, 0.97, 0.97, 0.97])
    power = 0
    for _ in range(reps):
        power += _stable(steady, rng)
    assert power / reps >= 0.8, f"a curve 0.07 above the threshold passes as stable in only {power / reps:.0%}"


def test_emergence_null_and_power_fast():
    _emergence_calibration(reps=200)


def test_stability_null_and_power_fast():
    _stability_calibration(reps=100)


@pytest.mark.slow
def test_emergence_null_and_power_thorough():
    _emergence_calibration(reps=3000)


@pytest.mark.slow
def test_stability_null_and_power_thorough():
    _stability_calibration(reps=1000)
