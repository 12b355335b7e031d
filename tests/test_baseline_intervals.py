"""Baselines judged with intervals: improved / unchanged / regressed by whether the 95% CIs separate.

The rule's calibration (false "regressed" rate under the null, on episode-correlated
data, against the untuned bound binom.ppf(0.99, R, 0.05)) and its power on a planted
regression; then the plugin end to end in pytester sessions: classification both
ways, the tolerance fallback for old baseline files, missing and unused entries and
their allow flags, and the three ``--rli-update-baseline`` modes.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

import rli  # import torch once here: pytester's in-process runs cannot re-import its C extension
from pytest_rli import baseline
from pytest_rli.regression import classify, classify_stored, interval_change, tolerance_change, usable_interval

pytest_plugins = ["pytester"]


# ------------------------------------------------------------------------------------------------- the rule
def test_intervals_decide_both_ways_and_in_either_direction():
    assert classify(0.80, (0.78, 0.82), 0.95, (0.93, 0.97), higher_is_better=True, tolerance=1.0).change == "regressed"
    assert classify(0.99, (0.98, 1.00), 0.95, (0.93, 0.97), higher_is_better=True, tolerance=1.0).change == "improved"
    assert classify(0.99, (0.98, 1.00), 0.95, (0.93, 0.97), higher_is_better=False, tolerance=0).change == "regressed"
    # a large move inside wide intervals is noise, whatever the tolerance says
    wide = classify(0.70, (0.40, 1.00), 0.95, (0.90, 1.00), higher_is_better=True, tolerance=0.02)
    assert (wide.change, wide.rule) == ("unchanged", "intervals") and "overlap" in wide.why
    assert interval_change((0.1, 0.3), (0.3, 0.5), True) == "unchanged"  # touching intervals overlap


def test_without_an_interval_the_tolerance_decides_and_says_why():
    old = classify(0.90, (0.88, 0.92), 0.95, None, higher_is_better=True, tolerance=0.02)
    assert (old.change, old.rule) == ("regressed", "tolerance") and "the baseline has no CI" in old.why
    mine = classify(0.94, None, 0.95, (0.93, 0.97), higher_is_better=True, tolerance=0.02)
    assert (mine.change, mine.rule) == ("unchanged", "tolerance") and "this measurement has no CI" in mine.why
    edited = classify(0.90, (0.88, 0.92), 1.05, (0.93, 0.97), higher_is_better=True, tolerance=0.02)
    assert edited.rule == "tolerance" and "does not describe the stored value" in edited.why
    assert usable_interval(0.5, (0.6, 0.4)) is None and usable_interval(float("nan"), (0, 1)) is None
    assert [tolerance_change(v, 1.0, False, 0.1) for v in (0.8, 1.05, 1.2)] == ["improved", "unchanged", "regressed"]
    assert classify_stored({"value": 2.0, "ci": [1.9, 2.1], "higher_is_better": True},
                           {"value": 1.0, "ci": [0.9, 1.1], "higher_is_better": False}, 0.0).change == "improved"


def _episode_data(rng: np.random.Generator, runs: int, episodes: int, steps: int, shift: float = 0.0) -> np.ndarray:
    """``runs × episodes × steps`` per-step scores: each episode drifts slowly (AR(1), ρ = 0.95) around its own
    offset, so steps within an episode are strongly correlated and only episodes are independent."""
    offset = rng.normal(size=(runs, episodes, 1))
    noise = rng.normal(size=(runs, episodes, steps))
    drift = np.empty_like(noise)
    drift[..., 0] = noise[..., 0]
    for t in range(1, steps):
        drift[..., t] = 0.95 * drift[..., t - 1] + np.sqrt(1 - 0.95 ** 2) * noise[..., t]
    return offset + drift + shift


def _cis(data: np.ndarray, unit: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean and 95% t-interval of each run: over episode means (the right unit) or over steps (wrong: iid)."""
    values = data.mean(axis=2) if unit == "episode" else data.reshape(data.shape[0], -1)
    n = values.shape[1]
    mean = values.mean(axis=1)
    half = stats.t.ppf(0.975, n - 1) * values.std(axis=1, ddof=1) / np.sqrt(n)
    return mean, np.stack([mean - half, mean + half], axis=1)


def _regressed_rate(before: np.ndarray, after: np.ndarray, unit: str) -> float:
    (v0, c0), (v1, c1) = _cis(before, unit), _cis(after, unit)
    verdicts = [classify(v1[i], c1[i], v0[i], c0[i], higher_is_better=True, tolerance=0.0) for i in range(len(v0))]
    assert all(v.rule == "intervals" for v in verdicts)
    return float(np.mean([v.change == "regressed" for v in verdicts]))


def _calibration(runs: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    episodes, steps = 12, 50
    same = [_episode_data(rng, runs, episodes, steps) for _ in range(2)]
    # planted regression: 2 SD of an episode's mean score (≈ 7 standard errors of a run's mean over 12 episodes)
    sd_episode = float(same[0].mean(axis=2).std())
    worse = _episode_data(rng, runs, episodes, steps, shift=-2.0 * sd_episode)
    return {"null": _regressed_rate(*same, "episode"), "power": _regressed_rate(same[0], worse, "episode"),
            "iid_null": _regressed_rate(*same, "step")}


@pytest.mark.parametrize("runs, seed", [pytest.param(400, 0, id="fast"),
                                        pytest.param(5000, 1, id="thorough", marks=pytest.mark.slow)])
def test_false_regressions_are_rare_and_planted_ones_are_caught(runs, seed):
    rates = _calibration(runs, seed)
    # bounds fixed in advance: the 99th percentile of Binomial(R, 0.05), and 90% power at its 1st percentile
    assert rates["null"] * runs <= stats.binom.ppf(0.99, runs, 0.05)
    assert rates["power"] * runs >= stats.binom.ppf(0.01, runs, 0.90)
    # the data really is correlated: the same rule on per-step (iid) intervals raises false regressions
    assert rates["iid_null"] * runs > stats.binom.ppf(0.99, runs, 0.05)


@pytest.mark.slow
def test_same_policy_new_seeds_is_not_a_regression():
    """The real thing: one policy probed on observation sets of new seeds (episode-correlated rollouts-like
    data, grouped splits): the false "regressed" rate stays within the binomial bound."""
    import torch
    import torch.nn as nn

    torch.manual_seed(0)
    policy = rli.load_policy(nn.Sequential(nn.Linear(4, 32), nn.Tanh()))
    runs = 150
    regressed = 0
    for run in range(runs):
        results = []
        for seed in (2 * run, 2 * run + 1):
            x = _episode_data(np.random.default_rng(seed), 1, 20, 20).reshape(-1, 1) * np.ones((1, 4))
            x = x + np.random.default_rng(seed + 10**6).normal(size=x.shape)
            y = x[:, 0] + np.random.default_rng(seed + 2 * 10**6).normal(size=len(x))
            obs = rli.ObsSet(x, labels={"episode": np.repeat(np.arange(20), 20)})
            results.append(rli.probe(policy, obs, ("y", y), 1, controls=False, alphas=1.0))
        before, after = results
        regressed += classify(after.r2, after.ci, before.r2, before.ci, higher_is_better=True,
                              tolerance=0.0).change == "regressed"
    assert regressed <= stats.binom.ppf(0.99, runs, 0.05)


# ------------------------------------------------------------------------------------------ in a session
CLAIMS = """
import os

import numpy as np
import torch
import torch.nn as nn

import rli
from pytest_rli.assertions import assert_probe_r2

torch.manual_seed(0)
POLICY = rli.load_policy(nn.Sequential(nn.Linear(4, 32), nn.Tanh()))
X = np.random.default_rng(0).normal(size=(400, 4))
OBS = rli.ObsSet(X, labels={"episode": np.repeat(np.arange(20), 20)})


def _probe(name, column):
    noise = float(os.environ.get("NOISE_" + name.upper(), "0.3"))
    y = X[:, column] + noise * np.random.default_rng(column).normal(size=len(X))
    assert_probe_r2(policy=POLICY, obs=OBS, layer=1, target=(name, y), min=0.0, controls=False, alphas=1.0)


def test_a():
    _probe("a", 0)


def test_b():
    _probe("b", 1)
    if not os.environ.get("SKIP_C"):
        _probe("c", 2)
"""
A, B, C = ("test_claims.py::test_a", "assert_probe_r2[1:a]"), ("test_claims.py::test_b", "assert_probe_r2[1:b]"), \
    ("test_claims.py::test_b", "assert_probe_r2[1:c]")


@pytest.fixture(scope="module")
def warm_rli():
    """One small probe outside pytester, so that every rli module the sessions use is imported before pytester's
    in-process runs snapshot sys.modules (a module first imported inside a run is dropped after it, and a second
    import would bring a second ``Policy`` class)."""
    import torch.nn as nn

    x = np.random.default_rng(0).normal(size=(100, 4))
    rli.probe(rli.load_policy(nn.Sequential(nn.Linear(4, 8), nn.Tanh())), rli.ObsSet(x, labels={
        "episode": np.repeat(np.arange(10), 10)}), ("w", x[:, 0]), 1, controls=False, alphas=1.0)


@pytest.fixture
def project(pytester, monkeypatch, warm_rli):
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_claims=CLAIMS)
    for name in ("NOISE_A", "NOISE_B", "NOISE_C", "SKIP_C"):
        monkeypatch.delenv(name, raising=False)
    return pytester


def _run(project, *args):
    return project.runpytest_inprocess("-p", "no:cacheprovider", "--rli-no-history", "--rli-baseline=b.json", *args)


def _stored(project) -> dict:
    return json.loads((project.path / "b.json").read_text())["tests"]


def test_classification_both_ways_in_a_session(project, monkeypatch):
    result = _run(project, "--rli-update-baseline")
    result.assert_outcomes(passed=2)
    entry = _stored(project)[A[0]][A[1]]
    assert entry["ci"][0] < entry["value"] < entry["ci"][1] and entry["n"] == 400 and entry["ci_level"] == 0.95

    result = _run(project)  # same policy, same data: unchanged, judged by the intervals
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*test_a*probe_r2*r2*unchanged (CIs)*pass",
                                 "rli: against the baseline: 3 unchanged (3 judged by non-overlapping 95% CIs, 0 *"])

    monkeypatch.setenv("NOISE_A", "1.0")  # a noisier target: R² about halves, the intervals separate
    monkeypatch.setenv("NOISE_B", "0.05")  # a cleaner one: improved, which passes
    result = _run(project)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "E *AssertionError: assert_probe_r2: r2 regressed from the baseline * [[]*, *] to * [[]*, *] (the 95% CIs do "
        "not overlap); the absolute threshold still holds",
        "E *baseline: r2 regressed by intervals: baseline * now *: the 95% CIs do not overlap (higher is better) — "
        "REGRESSED",
        "*test_a*probe_r2*regressed (CIs)*REGRESSED", "*test_b*probe_r2*b*improved (CIs)*pass"])


def test_old_baseline_files_without_intervals_use_the_tolerance_and_say_so(project, monkeypatch):
    _run(project, "--rli-update-baseline").assert_outcomes(passed=2)
    stored = _stored(project)
    for entry in stored.values():
        for metric in entry.values():
            del metric["ci"], metric["ci_level"], metric["n"]
    (project.path / "b.json").write_text(json.dumps({"version": 1, "tests": stored}))
    assert baseline.read(project.path / "b.json") == stored
    monkeypatch.setenv("NOISE_B", "0.6")  # R² drops by more than the 0.02 tolerance, well inside the CIs
    result = _run(project)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "E *AssertionError: assert_probe_r2: r2 regressed from the baseline * to * (beyond tolerance 0.02); *",
        "E *baseline: r2 regressed by tolerance: * the baseline has no CI (older baseline file?), so the tolerance "
        "0.02 decides*",
        "*test_a*unchanged (tolerance)*pass",
        "rli: against the baseline: 1 unchanged, 1 regressed (0 judged by non-overlapping 95% CIs, 2 by the "
        "tolerance: a side without a CI)"])  # test_b stopped at its first metric


def test_missing_and_unused_entries_fail_the_session_unless_allowed(project, monkeypatch):
    _run(project, "--rli-update-baseline").assert_outcomes(passed=2)
    stored = _stored(project)
    del stored[A[0]]  # test_a's metric is now missing
    stored["test_claims.py::test_renamed"] = {"assert_probe_r2[1:a]": {"value": 0.9}}  # its test is gone
    stored["test_gone.py::test_x"] = {"k": {"value": 0.5}}  # its file is gone
    baseline.write(project.path / "b.json", stored)
    monkeypatch.setenv("SKIP_C", "1")  # test_b passes without recording metric c: unused too
    result = _run(project)
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "rli: 1 recorded metric(s) have no baseline entry; this fails the session: add them with "
        f"--rli-update-baseline=new, or pass --rli-allow-missing: {A[0]} {A[1].replace('[', '[[]')}",
        "rli: 3 stored baseline(s) not checked in this run are unused (*); this fails the session: delete them from "
        f"the baseline file, or pass --rli-allow-unused: {C[0]} {C[1].replace('[', '[[]')}, "
        "test_claims.py::test_renamed, test_gone.py::test_x"])
    assert _run(project, "--rli-allow-missing").ret == pytest.ExitCode.TESTS_FAILED
    result = _run(project, "--rli-allow-missing", "--rli-allow-unused")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*have no baseline entry; allowed by --rli-allow-missing: *",
                                 "*are unused*; allowed by --rli-allow-unused: *"])
    project.makeini("[pytest]\nrli_allow_missing = true\nrli_allow_unused = true\n")
    assert _run(project).ret == pytest.ExitCode.OK

    # entries of tests that were not selected are not unused (nor are those of a file narrowed to one test)
    project.makeini("[pytest]\n")
    monkeypatch.delenv("SKIP_C")
    baseline.write(project.path / "b.json", {k: v for k, v in stored.items() if k.startswith("test_claims.py::test_")
                                             and k != "test_claims.py::test_renamed"} | {A[0]: {A[1]: {"value": 0.5}}})
    for selection in (["-k", "test_b"], ["test_claims.py::test_b"]):
        result = _run(project, *selection)
        assert result.ret == pytest.ExitCode.OK, result.stdout.str()
        result.stdout.fnmatch_lines([f"rli: 1 stored baseline(s) not checked in this run (not selected, *): {A[0]}"])


def test_the_three_update_modes(project, monkeypatch):
    baseline.write(project.path / "b.json", {})
    monkeypatch.setenv("SKIP_C", "1")
    result = _run(project, "--rli-update-baseline=new")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["rli: wrote baselines (--rli-update-baseline=new) for 2 test(s) to *b.json"])
    first = _stored(project)
    assert sorted(first[B[0]]) == [B[1]]
    monkeypatch.delenv("SKIP_C")
    monkeypatch.setenv("NOISE_A", "1.0")
    result = _run(project, "--rli-update-baseline=new")  # adds c, keeps (and still fails) the regressed a
    result.assert_outcomes(passed=1, failed=1)
    second = _stored(project)
    assert second[A[0]] == first[A[0]] and sorted(second[B[0]]) == [B[1], C[1]]

    monkeypatch.setenv("NOISE_B", "0.05")  # b improves: "failing" leaves it, rewrites the regressed a
    result = _run(project, "--rli-update-baseline=failing")
    result.assert_outcomes(passed=2)
    third = _stored(project)
    assert third[A[0]][A[1]]["value"] < second[A[0]][A[1]]["value"] and third[B[0]] == second[B[0]]
    assert _run(project).ret == pytest.ExitCode.OK

    result = _run(project, "--rli-update-baseline=all")  # rewrites everything that ran, b's improvement too
    result.stdout.fnmatch_lines(["rli: wrote baselines for 2 test(s) to *b.json"])
    assert _stored(project)[B[0]][B[1]]["value"] > third[B[0]][B[1]]["value"]

    result = _run(project, "--rli-update-baseline=sometimes")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--rli-update-baseline takes new, failing or all, got 'sometimes'*"])


def test_the_documented_review_workflow(pytester, monkeypatch, warm_rli):
    """docs/baselines.md's claims file and commands, run as written: record, compare, regress, compare runs."""
    import re
    from pathlib import Path

    text = (Path(__file__).parent.parent / "docs" / "baselines.md").read_text()
    (claims,) = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "def test_" in b]
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_claims=claims)
    monkeypatch.delenv("SENSOR_NOISE", raising=False)
    run = ["-p", "no:cacheprovider", "--rli-baseline=rli-baseline.json"]
    pytester.runpytest_inprocess(*run, "--rli-update-baseline").stdout.fnmatch_lines([
        "rli: wrote baselines for 1 test(s) to *rli-baseline.json"])
    entry = json.loads((pytester.path / "rli-baseline.json").read_text())["tests"][
        "test_claims.py::test_layer_1_encodes_the_first_sensor"]["assert_probe_r2[1:sensor]"]
    assert f'"ci": [{entry["ci"][0]:.4f}, {entry["ci"][1]:.4f}]' in text and f'"value": {entry["value"]:.4f}' in text
    result = pytester.runpytest_inprocess(*run)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["rli: against the baseline: 1 unchanged (1 judged by non-overlapping 95% CIs, *"])
    monkeypatch.setenv("SENSOR_NOISE", "1.0")
    result = pytester.runpytest_inprocess(*run)
    result.assert_outcomes(failed=1)
    documented = [line[1:].strip() for line in text.splitlines() if line.startswith("E   ")]
    assert documented and all(line in result.stdout.str() for line in documented), result.stdout.str()
    monkeypatch.delenv("SENSOR_NOISE")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--rli-compare=last")
    result.stdout.fnmatch_lines(["rli: this run vs run 3 (commit nogit, *): 1 improved, 0 unchanged, 0 regressed; *"])
