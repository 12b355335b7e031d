"""``over="seeds"``: the decision rule (estimates against rliable / scipy / the textbook formula, null simulation
and power on correlated per-seed estimates), the errors, and the assertions end to end on the shipped formation
run (seeds 42-44 at 120k) through the ``rli`` fixture, against ``rli.probe`` on each seed and
``rli.runstats`` / scipy directly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from pytest_rli.seeds import check_over, seed_checkpoints, seed_rule
from rli.errors import RliError

pytest_plugins = ["pytester"]

ROOT = Path(__file__).parent.parent
RUN = ROOT / "examples" / "checkpoints" / "formation_run"


# ------------------------------------------------------------------------------------------ the rule
def test_estimates_are_rliables_iqm_the_runstats_bootstrap_and_the_tukey_mclaughlin_interval():
    from rliable import metrics

    from rli.runstats import iqm_ci

    values = [0.91, 0.95, 0.97, 0.96, 0.2, 0.93, 0.94]
    verdict = seed_rule(dict(enumerate(values)), min=0.9)
    assert verdict.value == pytest.approx(metrics.aggregate_iqm(np.array(values)[:, None]), abs=1e-12)
    assert verdict.bootstrap_ci == iqm_ci(values).ci  # runstats' bootstrap is checked against rliable there
    # Tukey–McLaughlin by hand: winsorise g = ⌊0.25 n⌋ each side, se = s_w / ((1 − 2·0.25) √n), t with n − 2g − 1 df
    x, n = np.sort(values), len(values)
    g = int(np.floor(0.25 * n))
    w = np.clip(x, x[g], x[n - g - 1])
    se = np.std(w, ddof=1) / (0.5 * np.sqrt(n))
    half = stats.t.ppf(0.975, n - 2 * g - 1) * se
    assert verdict.trimmed_ci == pytest.approx((stats.trim_mean(x, 0.25) - half, stats.trim_mean(x, 0.25) + half))
    assert verdict.ci == (min(verdict.bootstrap_ci[0], verdict.trimmed_ci[0]),
                          max(verdict.bootstrap_ci[1], verdict.trimmed_ci[1]))
    assert verdict.passed == (verdict.ci[0] >= 0.9)
    assert seed_rule(values, max=1.0).passed == (verdict.ci[1] <= 1.0)


def test_with_three_seeds_the_t_interval_reaches_below_the_smallest_seed():
    """The bootstrap's lower end with 3 seeds is the smallest seed: on its own it would pass 'all three above'."""
    verdict = seed_rule({42: 0.951, 43: 0.96, 44: 0.99}, min=0.95)
    assert verdict.bootstrap_ci[0] == pytest.approx(0.951)
    assert verdict.ci[0] < 0.95 and not verdict.passed


@pytest.mark.parametrize(("values", "options", "match"), [
    ([0.9, 0.95], {"min": 0.9}, "at least 3 training seeds .* got 2"),
    ([0.9, 0.95, 0.97], {}, "exactly one of min= .* or max="),
    ([0.9, 0.95, 0.97], {"min": 0.9, "max": 1.0}, "exactly one of min="),
    ([0.9, float("nan"), 0.97], {"min": 0.9}, "must be finite"),
])
def test_rule_bad_input(values, options, match):
    with pytest.raises(RliError, match=match):
        seed_rule(values, **options)


def test_over_must_be_none_or_seeds():
    assert check_over(None, "a") is False and check_over("seeds", "a") is True
    with pytest.raises(RliError, match=r"over must be None .* or 'seeds'"):
        check_over("checkpoints", "assert_probe_r2")


# ------------------------------------------------------------------------- calibration of the rule
def _per_seed(n: int, true: float, rng: np.random.Generator, tails: str = "normal") -> np.ndarray:
    """n seeds' estimates of a metric whose true value across seeds is ``true``: a seed-to-seed effect (sd 0.01,
    normal or t3) plus the estimation error of each seed, the mean over 50 episodes of a slowly drifting AR(1)
    state (rho 0.9, sd 0.01)."""
    effect = rng.standard_t(3, size=n) / np.sqrt(3) if tails == "t3" else rng.normal(size=n)
    drift = np.empty((n, 50))
    drift[:, 0] = rng.normal(size=n)
    for t in range(1, 50):
        drift[:, t] = 0.9 * drift[:, t - 1] + np.sqrt(1 - 0.81) * rng.normal(size=n)
    return true + 0.01 * effect + 0.01 * drift.mean(axis=1)


def _rate(n: int, true: float, reps: int, *, seed: int, tails: str = "normal", side: str = "min",
          n_resamples: int = 10_000) -> tuple[int, float]:
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(reps):
        values = _per_seed(n, true, rng, tails)
        if side == "max":  # an "at most 0.9" claim on the mirrored values: the true metric at the bound from below
            hits += seed_rule(list(1.8 - values), n_resamples=n_resamples, max=0.9).passed
        else:
            hits += seed_rule(list(values), n_resamples=n_resamples, min=0.9).passed
    return hits, hits / reps


def _null_bound(reps: int) -> int:
    """Fixed in advance: the 99th percentile of Binomial(reps, 0.05)."""
    return int(stats.binom.ppf(0.99, reps, 0.05))


@pytest.mark.parametrize(("n", "side"), [(3, "min"), (6, "min"), (4, "max")])
def test_null_false_pass_rate_at_most_5_percent(n, side):
    """True metric exactly at the threshold (from above for min, below for max): passes ≤ 5% (2000 resamples)."""
    reps = 150
    hits, _ = _rate(n, 0.9, reps, seed=n, side=side, n_resamples=2000)
    assert hits <= _null_bound(reps), f"{hits}/{reps} false passes with {n} seeds ({side})"


@pytest.mark.parametrize(("n", "gap"), [(3, 0.08), (5, 0.04)])
def test_power_when_the_metric_is_clearly_above(n, gap):
    """Clearly above: 3 seeds 0.08 (≈ 7 sd of a seed's value) over the threshold, 5 seeds 0.04 (≈ 3.4 sd): ≥ 80%."""
    _, rate = _rate(n, 0.9 + gap, 100, seed=100 + n, n_resamples=2000)
    assert rate >= 0.8, f"power {rate:.2f} with {n} seeds {gap} above the threshold"


@pytest.mark.slow
@pytest.mark.parametrize("tails", ["normal", "t3"])
@pytest.mark.parametrize("n", [3, 4, 5, 6, 8, 10])
def test_null_thorough(n, tails):
    reps = 1000
    for side in ("min", "max"):
        hits, _ = _rate(n, 0.9, reps, seed=1000 + n, tails=tails, side=side)
        assert hits <= _null_bound(reps), f"{hits}/{reps} false passes with {n} seeds ({tails}, {side})"


@pytest.mark.slow
@pytest.mark.parametrize(("n", "gap"), [(3, 0.08), (5, 0.04), (10, 0.03)])
def test_power_thorough(n, gap):
    _, rate = _rate(n, 0.9 + gap, 500, seed=2000 + n)
    assert rate >= 0.8


# ------------------------------------------------------------------------------- which checkpoints
def test_seed_checkpoints_pick_each_seeds_last_or_the_given_step():
    chosen, step = seed_checkpoints("a", str(RUN), None)
    assert step == "last" and [(c.seed, c.step) for c in chosen] == [(42, 120_000), (43, 120_000), (44, 120_000)]
    with pytest.raises(RliError, match=r"at least 3 training seeds, found 1 at step 60000 \(42\) among 8 "
                                       "checkpoints.*add checkpoints of more seeds or choose another step="):
        seed_checkpoints("assert_probe_r2", str(RUN), 60_000)
    with pytest.raises(RliError, match=r"pass checkpoints= .* or set the rli_checkpoints ini key"):
        seed_checkpoints("assert_probe_r2", None, None)
    with pytest.raises(RliError, match="step must be a training step"):
        seed_checkpoints("a", str(RUN), "first")


# ------------------------------------------------------------------------------------ end to end
PROJECT_TEST = """
import pytest

from rli.envs.formation import probe_grid

GRID = probe_grid(24, 36, nominal="reference")


@pytest.mark.rli(obs=GRID, target="upwash")
def test_upwash_over_seeds(rli):
    rli.assert_probe_r2(layer=5, min=0.95, over="seeds", controls=False)


@pytest.mark.rli(obs=GRID, target="upwash")
def test_too_strict(rli):
    rli.assert_probe_r2(layer=5, min=0.995, over="seeds", controls=False)


@pytest.mark.rli(obs=GRID, target="upwash", policy="examples/checkpoints/formation_run/seed_42/rl_model_60000_steps.zip")
def test_bound_to_a_step_only_one_seed_has(rli):
    rli.assert_probe_r2(layer=5, min=0.95, over="seeds", controls=False)
"""


@pytest.fixture
def project(pytester):
    import rli  # noqa: F401 — import torch once: pytester's in-process runs cannot re-import it

    (pytester.path / "examples").symlink_to(ROOT / "examples")
    pytester.makeini("[pytest]\nrli_checkpoints = examples/checkpoints/formation_run\nrli_store = store\n")
    pytester.makepyfile(test_claims=PROJECT_TEST)
    return pytester


def _reference() -> dict[int, float]:
    """``rli.probe`` on each seed's 120k checkpoint, on one torch and one BLAS thread as the sweep's units run."""
    import rli
    from rli.envs.formation import probe_grid
    from rli.probes import probe
    from rli.threads import one_blas_thread, one_torch_thread

    grid = probe_grid(24, 36, nominal="reference")
    out = {}
    with one_torch_thread(), one_blas_thread():
        for seed in (42, 43, 44):
            out[seed] = probe(rli.load_policy(RUN / f"seed_{seed}" / "rl_model_120000_steps.zip"), grid, "upwash", 5,
                              controls=False).score
    return out


def test_probe_r2_over_seeds_on_the_formation_run(project):
    from rli.runstats import over_seeds

    result = project.runpytest("test_claims.py", "-p", "no:cacheprovider", "--rli-report=out", "--rli-baseline=b.json",
                               "--rli-update-baseline")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*assert_probe_r2 over 3 training seeds: held-out score of 'upwash' at layer 5: the "
                                 "IQM's 95% CI * lower end * is below 0.995",
                                 "*seed 42: 0.9*", "*seed 43: 0.9*", "*seed 44: 0.9*", "*IQM over 3 seeds *"])
    result.stdout.fnmatch_lines(["*over='seeds' needs at least 3 training seeds, found 1 at step 60000 (42)*"])
    report = json.loads((project.path / "out" / "report.json").read_text())["tests"]
    metric = report["test_claims.py::test_upwash_over_seeds"]["metrics"][0]
    found = metric["details"]["over_seeds"]
    reference = _reference()
    assert found["values"] == {str(k): v for k, v in reference.items()}  # bit-identical to rli.probe per seed
    assert found["counts"] == {"computed": 3, "cached": 0}
    records = [{"seed": s, "step": 120_000, "layer": 5, "target": "upwash", "metric": "r2", "value": v}
               for s, v in reference.items()]
    boot = over_seeds(records, "r2", layer=5, target="upwash")
    values = list(reference.values())
    assert metric["value"] == pytest.approx(stats.trim_mean(values, 0.25), abs=1e-12) == boot.value
    assert found["bootstrap_ci"] == list(boot.ci)
    assert metric["ci"] == [min(boot.ci[0], found["trimmed_ci"][0]), max(boot.ci[1], found["trimmed_ci"][1])]
    assert metric["passed"] and metric["ci"][0] >= 0.95 and metric["metric"] == "IQM over seeds of r2"
    # the baseline and the history keep it as one metric with its CI and the number of seeds
    stored = json.loads((project.path / "b.json").read_text())["tests"]["test_claims.py::test_upwash_over_seeds"]
    entry = next(iter(stored.values()))
    assert (entry["value"], entry["ci"], entry["n"]) == (metric["value"], metric["ci"], 3)
    history = json.loads(next((project.path / ".rli" / "runs").glob("0001_*.json")).read_text())
    assert history["tests"]["test_claims.py::test_upwash_over_seeds"][metric["key"]]["ci"] == metric["ci"]
    # a second session is served from the store (rli_store) and judged the same against its baseline
    again = project.runpytest("test_claims.py", "-p", "no:cacheprovider", "--rli-report=out", "--rli-baseline=b.json",
                              "-k", "test_upwash_over_seeds")
    again.assert_outcomes(passed=1)
    second = json.loads((project.path / "out" / "report.json").read_text())["tests"]
    repeat = second["test_claims.py::test_upwash_over_seeds"]["metrics"][0]
    assert repeat["details"]["over_seeds"]["counts"] == {"computed": 0, "cached": 3}
    assert (repeat["value"], repeat["ci"], repeat["change"]) == (metric["value"], metric["ci"], "unchanged")


def test_plain_function_errors_are_one_line_and_name_the_fix(tmp_path):
    from pytest_rli.assertions import assert_ablation_degrades, assert_polarity_inversion, assert_probe_r2

    grid = np.zeros((10, 4))
    with pytest.raises(RliError, match=r"^assert_probe_r2: .*spec takes folds, seed; drop kind_options"):
        assert_probe_r2(policy=None, obs=grid, layer=1, target="x", min=0.5, over="seeds", checkpoints=str(RUN),
                        kind_options={})
    with pytest.raises(RliError, match="min_selectivity with over='seeds' is a second claim"):
        assert_probe_r2(policy=None, obs=grid, layer=1, target="x", min=0.5, min_selectivity=0.1, over="seeds")
    with pytest.raises(RliError, match="needs env as a gymnasium id"):
        assert_ablation_degrades(policy=None, env=lambda: None, obs=grid, layer=1, over="seeds")
    with pytest.raises(RliError, match="require_flip is a per-checkpoint verdict"):
        assert_polarity_inversion(policy=None, obs=grid, layer=1, sensors=[0], target="x", require_flip=True,
                                  over="seeds")
    with pytest.raises(RliError, match="policy is None; pass the policy"):
        assert_probe_r2(policy=None, obs=grid, layer=1, target="x", min=0.5)
    with pytest.raises(RliError, match="is not one of them, so its step cannot choose theirs; pass step="):
        import rli

        policy = rli.load_policy(ROOT / "examples" / "checkpoints" / "cartpole_ppo_seed0.zip")
        assert_probe_r2(policy=policy, obs=grid, layer=1, target=grid[:, 0], min=0.5, over="seeds",
                        checkpoints=str(RUN), store=tmp_path)
    assert "\n" not in str(RliError("x"))


# ------------------------------------------------------- the other assertions, against their rli functions
@pytest.fixture(scope="module")
def three_seeds(tmp_path_factory):
    """Three untrained SB3 PPO policies (one hidden layer of 8) as seeds 0-2 of a run, and CartPole-like states."""
    from stable_baselines3 import PPO

    from rli.observations import ObsSet

    root = tmp_path_factory.mktemp("three")
    for seed in range(3):
        (root / f"seed_{seed}").mkdir()
        PPO("MlpPolicy", "CartPole-v1", seed=seed, device="cpu", policy_kwargs={"net_arch": [8]}).save(
            root / f"seed_{seed}" / "rl_model_100_steps.zip")
    states = np.random.default_rng(0).normal(scale=(1, 0.5, 0.1, 0.5), size=(200, 4)).astype(np.float32)
    return root, ObsSet(states, labels={"angle": states[:, 2], "episode": np.arange(200) // 20})


def test_selectivity_polarity_ablation_and_cka_over_seeds_are_their_functions_per_seed(three_seeds, tmp_path):
    import rli
    from pytest_rli.assertions import (
        assert_ablation_degrades,
        assert_polarity_inversion,
        assert_probe_selective,
        assert_representation_similar,
    )
    from rli.comparison import compare
    from rli.interventions import ablate
    from rli.polarity import polarity_test
    from rli.probes import probe
    from rli.similarity import cka
    from rli.threads import one_blas_thread, one_torch_thread

    root, obs = three_seeds
    reference = root / "seed_0" / "rl_model_100_steps.zip"
    common = {"policy": None, "checkpoints": str(root), "store": tmp_path}
    selective = assert_probe_selective(obs=obs, layer=1, target="angle", min_selectivity=-10, over="seeds", **common)
    flipped = assert_polarity_inversion(obs=obs, layer=1, sensors=[2], target="angle", min_drop=-10, over="seeds",
                                        **common)
    cut = assert_ablation_degrades(env="CartPole-v1", obs=obs, layer=1, direction="pc1", min_drop=-10, episodes=3,
                                   max_steps=30, over="seeds", **common)
    similar = assert_representation_similar(obs=obs, layer=1, reference=reference, min_cka=-1, n_boot=100,
                                            n_permutations=100, over="seeds", **common)
    with one_torch_thread(), one_blas_thread():
        for seed in range(3):
            policy = rli.load_policy(root / f"seed_{seed}" / "rl_model_100_steps.zip")
            assert selective.values[seed] == probe(policy, obs, "angle", 1).selectivity
            assert flipped.values[seed] == polarity_test(policy, obs, "angle", [2], 1).drop
            direct = compare(policy, "CartPole-v1", ablate(policy, 1, "pc1", obs=obs), episodes=3, seed=0,
                             progress=False, max_steps=30)
            assert cut.values[seed] == direct.relative_drop
            acts = rli.capture(policy, obs, [1])[1]
            ref = rli.capture(rli.load_policy(reference), obs, [1])[1]
            assert similar.values[seed] == cka(acts, ref, groups=obs.labels["episode"], n_boot=100, n_permutations=100,
                                               seed=0).value
    assert similar.values[0] == pytest.approx(1.0)  # seed 0 against itself
    assert all(v.passed for v in (selective, flipped, cut, similar))


def test_a_bound_policy_chooses_the_seeds_step():
    class Bound:  # what seed_checkpoints reads of a policy: the file it was loaded from
        source = str(RUN / "seed_43" / "rl_model_120000_steps.zip")

    chosen, step = seed_checkpoints("a", str(RUN), None, Bound())
    assert step == 120_000 and [c.seed for c in chosen] == [42, 43, 44]
