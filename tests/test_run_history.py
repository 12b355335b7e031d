"""Run history: ``.rli/runs/NNNN_<commit>.json`` per session (numbering, content, atomic and exclusive writes,
xdist), ``--rli-compare`` against a stored run, and damaged or absent history files as clear errors."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import threading

import pytest

from pytest_rli import baseline, history

pytest_plugins = ["pytester"]

# Records metrics through the public recording API without torch, so that sessions (and xdist workers) stay cheap.
CLAIMS = """
import os

import pytest

from pytest_rli.recording import Metric, current, judge


def record(key, value, ci):
    context = current()
    verdict = judge(context, key, value, ci, True, None)
    context.records.append(Metric(assertion="assert_demo", key=key, metric="score", value=value, threshold=0.0,
                                  op=">=", higher_is_better=True, passed=not verdict.regressed, ci=ci,
                                  baseline=verdict.baseline, regressed=verdict.regressed, change=verdict.change,
                                  rule=verdict.rule))


@pytest.mark.parametrize("i", range(4))
def test_score(i):
    shift = float(os.environ.get("SHIFT", "0")) if i == 0 else 0.0
    record("score", 0.5 + shift, (0.4 + shift, 0.6 + shift))
"""


@pytest.fixture
def project(pytester, monkeypatch):
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_claims=CLAIMS)
    monkeypatch.delenv("SHIFT", raising=False)
    return pytester


def _runs(project, folder=".rli/runs"):
    return sorted(p.name for p in (project.path / folder).glob("*.json"))


def test_every_session_writes_the_next_numbered_run_with_machine_info(project, monkeypatch):
    result = project.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)
    assert _runs(project) == ["0001_nogit.json"]  # pytester's folder is no git repository
    result.stdout.fnmatch_lines(["rli: run history written to *0001_nogit.json"])
    data = json.loads((project.path / ".rli/runs/0001_nogit.json").read_text())
    assert data["number"] == 1 and data["commit"] == "nogit" and data["kind"] == "rli run"
    assert data["machine"]["python"] == platform.python_version() and data["machine"]["cpu_count"] == os.cpu_count()
    assert data["machine"]["torch"] and data["machine"]["rli"] and data["created"].endswith("+00:00")
    metric = data["tests"]["test_claims.py::test_score[0]"]["score"]
    assert (metric["value"], metric["ci"], metric["outcome"]) == (0.5, [0.4, 0.6], "passed")

    if shutil.which("git"):
        for command in (["init", "-q"], ["add", "."], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm",
                                                       "x"]):
            subprocess.run(["git", *command], cwd=project.path, check=True, capture_output=True)
        short = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=project.path, check=True,
                               capture_output=True, text=True).stdout.strip()
        project.runpytest_inprocess("-p", "no:cacheprovider")
        assert _runs(project) == ["0001_nogit.json", f"0002_{short}.json"]

    project.runpytest_inprocess("-p", "no:cacheprovider", "--rli-no-history")
    assert len(_runs(project)) == (2 if shutil.which("git") else 1)
    project.makeini("[pytest]\nrli_history_dir = elsewhere/runs\n")
    project.runpytest_inprocess("-p", "no:cacheprovider")
    assert [name[:5] for name in _runs(project, "elsewhere/runs")] == ["0001_"]


def test_compare_with_a_stored_run(project, monkeypatch):
    project.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=4)
    monkeypatch.setenv("SHIFT", "-0.3")  # test_score[0] moves down past its interval
    result = project.runpytest_inprocess("-p", "no:cacheprovider", "--rli-compare=last")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines([
        "rli: this run vs run 1 (commit nogit, *): 0 improved, 3 unchanged, 1 regressed; 0 new here, 0 not measured *",
        "  test*metric*run 0001*now*change",
        "  test_claims.py::test_score[[]0]*score*0.5 [[]0.4, 0.6]*0.2 [[]0.1, 0.3]*regressed (CIs)",
        "  test_claims.py::test_score[[]1]*score*0.5 [[]0.4, 0.6]*0.5 [[]0.4, 0.6]*unchanged (CIs)"])
    monkeypatch.setenv("SHIFT", "0")
    for reference in ("1", "0001", str(project.path / ".rli/runs/0001_nogit.json")):
        result = project.runpytest_inprocess("-p", "no:cacheprovider", "--rli-no-history", f"--rli-compare={reference}",
                                             "-k", "not 3")
        result.stdout.fnmatch_lines(["rli: this run vs run 1 *: 0 improved, 3 unchanged, 0 regressed; 0 new here, 1 "
                                     "not measured this run"])
    run2 = json.loads((project.path / ".rli/runs/0002_nogit.json").read_text())
    assert run2["tests"]["test_claims.py::test_score[0]"]["score"]["value"] == pytest.approx(0.2)


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not a readable rli run file"),
    (json.dumps({"version": 1, "tests": {}}), "is not an rli run file"),
    (json.dumps({"kind": "rli run", "version": 1, "tests": {"t": {"k": {"value": "high"}}}}), "is damaged"),
])
def test_a_damaged_history_file_is_a_clear_usage_error(project, content, message):
    (project.path / ".rli/runs").mkdir(parents=True)
    (project.path / ".rli/runs/0001_abc1234.json").write_text(content)
    result = project.runpytest_inprocess("-p", "no:cacheprovider", "--rli-compare=1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*0001_abc1234.json {message}*compare with another run*"])
    assert _runs(project) == ["0001_abc1234.json"]  # nothing ran, nothing was written


def test_absent_runs_are_usage_errors(project):
    for reference, message in (("last", "no run history in * yet; run the tests once first"),
                               ("7", "no run 0007 in * (latest: none)*"), ("nope.json", "no such run file*")):
        result = project.runpytest_inprocess("-p", "no:cacheprovider", f"--rli-compare={reference}")
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines([f"*--rli-compare={reference}: {message}"])


@pytest.mark.slow  # a pytest -n 2 subprocess (~20 s); tests/test_plugin_assertions.py keeps xdist in the default run
def test_xdist_writes_one_history_file_from_the_controller(project):
    """Under ``-n 2`` only the controller writes, and it learns from the workers which tests were collected, so a
    deselected test's baseline entry is not unused while a vanished test's is."""
    entry = {"score": {"value": 0.5, "ci": [0.4, 0.6], "higher_is_better": True}}
    baseline.write(project.path / "b.json", {**{f"test_claims.py::test_score[{i}]": entry for i in range(4)},
                                             "test_claims.py::test_vanished": entry})
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "--rli-baseline=b.json", "-k", "not 3")
    result.assert_outcomes(passed=3)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["rli: against the baseline: 3 unchanged (3 judged by non-overlapping 95% CIs, *",
                                 "rli: 1 stored baseline(s) * are unused *: test_claims.py::test_vanished",
                                 "rli: 1 stored baseline(s) not checked in this run (not selected, *): "
                                 "test_claims.py::test_score[[]3]"])
    assert _runs(project) == ["0001_nogit.json"]
    data = json.loads((project.path / ".rli/runs/0001_nogit.json").read_text())
    assert sorted(data["tests"]) == [f"test_claims.py::test_score[{i}]" for i in range(3)]
    assert not list((project.path / ".rli/runs").glob(".*"))  # no temporary file left behind


def test_concurrent_writers_never_share_a_number(tmp_path):
    folder = tmp_path / "runs"
    written: list = []
    threads = [threading.Thread(target=lambda: written.append(history.write(
        folder, {"t::a": {"k": {"value": 1.0}}}, commit="abc1234", info={}))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(p.name for p in written) == [f"{n:04d}_abc1234.json" for n in range(1, 9)]
    assert sorted(history.read(p)["number"] for p in written) == list(range(1, 9))
    assert sorted(p.name for p in folder.iterdir()) == [f"{n:04d}_abc1234.json" for n in range(1, 9)]


def test_a_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    def no_links(*_):
        raise OSError("read-only file system")

    monkeypatch.setattr(os, "link", no_links)
    with pytest.raises(OSError):
        history.write(tmp_path, {}, commit="nogit", info={})
    assert list(tmp_path.iterdir()) == []
