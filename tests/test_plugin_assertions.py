"""The rli fixture's assertions end to end in pytester sessions: messages, metrics, baselines, reports, xdist."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import rli

pytest_plugins = ["pytester"]
CHECKPOINT = Path(__file__).parent.parent / "examples" / "checkpoints" / "cartpole_ppo_seed0.zip"
INI = """[pytest]
rli_policy = policy.zip
rli_env = CartPole-v1
rli_obs_size = 1500
rli_episodes = 6
"""


@pytest.fixture
def project(pytester):
    (pytester.path / "policy.zip").write_bytes(CHECKPOINT.read_bytes())
    pytester.makeini(INI)
    return pytester


CLAIMS = """
import numpy as np
import pytest

@pytest.mark.rli(target="pole_angle")
def test_angle_is_encoded(rli):
    obs = rli.obs
    rli.assert_probe_r2(layer=5, min=0.5, target=obs.obs[:, 2])

def test_pc1_carries_control(rli):
    rli.assert_ablation_degrades(layer=5, direction="pc1", min_drop=0.5)

def test_pc1_is_enough(rli):
    rli.assert_subspace_sufficient(layer=5, k=1, max_drop=0.05)
"""


def test_claims_pass_and_are_summarised(project):
    project.makepyfile(test_claims=CLAIMS)
    result = project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*= rli metrics =*", "test*assertion*layer*metric*value*threshold*baseline*result",
                                 "*test_angle_is_encoded*probe_r2*mlp_extractor.policy_net.5*r2*pass",
                                 "*test_pc1_carries_control*ablation_degrades*relative_drop*pass",
                                 "*test_pc1_is_enough*subspace_sufficient*relative_drop*pass"])


def test_failed_probe_says_what_was_measured_and_where_the_signal_is(project):
    project.makepyfile("""
        def test_impossible(rli):
            rli.assert_probe_r2(layer=5, min=0.999, target=rli.obs.obs[:, 2] ** 3 + rli.obs.labels["step"])
    """)
    result = project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E *AssertionError: probe r2 of 'target' at layer 5 (mlp_extractor.policy_net.5 = actor.5, Tanh, width 64): "
        "the CI lower bound * is below min=0.999",
        "E *measured: r2 *, 95% CI [[]*] (ridge, split grouped by episode, 5 folds, * groups, n = 1500, seed 0)",
        "E *control untrained: *", "E *control shuffled: *", "E *control raw_obs: *",
        "E *selectivity: *",
        "E *layer profile around it (held-out score, 95% CI, no controls):",
        "E *layer 3 (  Tanh): *", "E *layer 4 (Linear): *", "E *layer 5 (  Tanh): *<- asked",
        "E *layer 6 (Linear): *",
    ])
    assert "pytest_rli/assertions.py" not in result.stdout.str()


def test_failed_ablation_explains_the_statistics(project):
    project.makepyfile("""
        import numpy as np

        def test_identity_does_not_degrade(rli):
            rli.assert_ablation_degrades(layer=5, direction=np.eye(64)[:, :4], alpha=1.0, min_drop=0.05)
    """)
    result = project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E *AssertionError: ablation at layer 5 * does not degrade return: the 95% CI of the drop [[]0, 0] does not "
        "exclude 0; the relative drop +0.00% is below min_drop=5.00%",
        "E *intervention: scale 4 directions by 1 at actor.5",
        "E *return without: 500 *; with: 500 *",
        "E *paired episodes: 6 on CartPole-v1, seeds 0..5",
    ])


def test_polarity_and_similarity(project):
    project.makepyfile("""
        def test_negating_the_angle_sensor(rli):
            rli.assert_polarity_inversion(layer=5, sensors=[2], target=rli.obs.obs[:, 2], min_drop=0.5)

        def test_same_checkpoint_is_similar(rli):
            rli.assert_representation_similar(layer=5, reference="policy.zip", min_cka=0.999)
    """)
    project.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_baseline_update_then_regression_beyond_tolerance(project):
    project.makepyfile(test_claims=CLAIMS)
    baseline = project.path / "rli-baseline.json"
    result = project.runpytest("-p", "no:cacheprovider", f"--rli-baseline={baseline}", "--rli-update-baseline")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines([f"rli: wrote baselines for 3 test(s) to {baseline}"])
    stored = json.loads(baseline.read_text())
    entry = stored["tests"]["test_claims.py::test_angle_is_encoded"]
    key = "assert_probe_r2[mlp_extractor.policy_net.5:target]"
    assert entry[key]["metric"] == "r2" and entry[key]["higher_is_better"] is True
    project.runpytest("-p", "no:cacheprovider", f"--rli-baseline={baseline}").assert_outcomes(passed=3)

    entry[key]["value"] += 0.1  # pretend an earlier checkpoint decoded much better
    baseline.write_text(json.dumps(stored))
    result = project.runpytest("-p", "no:cacheprovider", f"--rli-baseline={baseline}")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["E *AssertionError: assert_probe_r2: r2 regressed from the baseline * to * "
                                 "(beyond tolerance 0.02); the absolute threshold still holds",
                                 "*test_angle_is_encoded*REGRESSED"])
    project.makeini(INI + "rli_baseline_tolerance = 0.5\n")
    project.runpytest("-p", "no:cacheprovider", f"--rli-baseline={baseline}").assert_outcomes(passed=3)


def test_baseline_reports_unchecked_entries_and_rejects_garbage(project):
    project.makepyfile(test_claims=CLAIMS)
    baseline = project.path / "b.json"
    baseline.write_text(json.dumps({"version": 1, "tests": {"test_gone.py::test_old": {}}}))
    result = project.runpytest("-p", "no:cacheprovider", f"--rli-baseline={baseline}", "-k", "pc1_is")
    result.stdout.fnmatch_lines(["rli: 1 stored baseline(s) not checked in this run*test_gone.py::test_old"])
    baseline.write_text("{not json")
    result = project.runpytest("-p", "no:cacheprovider", f"--rli-baseline={baseline}")
    result.stderr.fnmatch_lines(["*is not a readable rli baseline*"])
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result = project.runpytest("-p", "no:cacheprovider", "--rli-update-baseline")
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_report_and_junit_properties(project):
    project.makepyfile(test_claims=CLAIMS)
    result = project.runpytest("-p", "no:cacheprovider", "--rli-report=out", "--junitxml=junit.xml", "-k", "pc1")
    result.assert_outcomes(passed=2)
    data = json.loads((project.path / "out" / "report.json").read_text())
    assert set(data["tests"]) == {"test_claims.py::test_pc1_carries_control", "test_claims.py::test_pc1_is_enough"}
    assert "<table>" in (project.path / "out" / "report.html").read_text()
    properties = {p.get("name"): p.get("value") for p in ET.parse(project.path / "junit.xml").iter("property")}
    assert any(name.startswith("rli:assert_ablation_degrades[") for name in properties)
    assert json.loads(properties["rli-metrics"])[0]["assertion"] in ("assert_ablation_degrades",
                                                                     "assert_subspace_sufficient")


def test_xdist_summary_and_baselines(project):
    project.makepyfile(test_claims=CLAIMS)
    baseline = project.path / "b.json"
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", f"--rli-baseline={baseline}",
                                          "--rli-update-baseline")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*= rli metrics =*", "*test_pc1_is_enough*pass"])
    assert len(json.loads(baseline.read_text())["tests"]) == 3


def test_missing_target_and_env_are_explained(project):
    project.makeini("[pytest]\nrli_policy = policy.zip\n")
    project.makepyfile("""
        def test_no_target(rli):
            rli.assert_probe_r2(layer=5, min=0.5)

        def test_no_env(rli):
            rli.assert_ablation_degrades(layer=5, min_drop=0.1)
    """)
    result = project.runpytest("-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*no target: pass target=... or set @pytest.mark.rli(target=...)*",
                                 "*rli_env is not configured*"])


def test_plain_functions_take_explicit_arguments_and_record_into_the_current_context():
    import numpy as np

    from pytest_rli.assertions import assert_probe_r2
    from pytest_rli.recording import TestContext, recording

    policy = rli.load_policy(CHECKPOINT)
    obs = rli.ObsSet.from_rollouts("CartPole-v1", policy, n=800, seed=1, episodes=10)
    with recording(TestContext(nodeid="isolated")) as context:
        with pytest.raises(AssertionError, match=r"is below min=0\.9999"):
            assert_probe_r2(policy=policy, obs=obs, layer=5, target=np.sin(obs.labels["step"]), min=0.9999,
                            controls=False)
    assert [(m.assertion, m.passed) for m in context.records] == [("assert_probe_r2", False)]


def test_fixtures_overridden_in_a_conftest(project):
    project.makeconftest("""
        import pytest
        import rli

        @pytest.fixture
        def rli_obs(rli_policy):
            return rli.ObsSet.from_rollouts("CartPole-v1", rli_policy, n=600, seed=9, episodes=10)
    """)
    project.makepyfile("""
        def test_uses_the_override(rli):
            assert len(rli.obs) == 600
            rli.assert_probe_r2(layer=5, target=rli.obs.obs[:, 2], min=0.3)
    """)
    project.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_plugin_can_be_disabled(project):
    project.makepyfile("def test_plain():\n    assert True\n")
    result = project.runpytest_subprocess("-p", "no:rli", "-p", "no:cacheprovider", "--fixtures")
    assert "rli_policy" not in result.stdout.str()
    project.runpytest_subprocess("-p", "no:rli", "-p", "no:cacheprovider").assert_outcomes(passed=1)
