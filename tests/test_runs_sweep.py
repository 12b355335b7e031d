"""rli.runs.sweep on real SB3 CheckpointCallback runs: names parsed, in-process vs processes vs Ray, resume, failures.

Ray for real: a local instance (2 CPUs) runs a sweep that matches the in-process one bit for bit; a worker killed
mid-sweep is reported with its checkpoint, the others are kept, and a rerun resumes from the store.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import rli
from rli.errors import RliError
from rli.runs import Custom, Obs, Probe, RayExecutor, discover, sweep
from rli.runs.table import COLUMNS
from tests.test_runs_support import STEPS, make_runs

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    return make_runs(tmp_path_factory.mktemp("rli-runs"))


@pytest.fixture(scope="session")
def probe_spec(tmp_path_factory):
    """A real probe (no controls: the controls' cost is not what these tests are about) on fixed observations."""
    path = tmp_path_factory.mktemp("rli-obs") / "obs.npz"
    rli.ObsSet(np.random.default_rng(0).normal(size=(240, 4)).astype(np.float32)).save(path)
    return Probe(obs=Obs.file(path), target="obs[2]", layer=3, controls=False, folds=3)


@pytest.fixture(scope="session")
def reference(runs, probe_spec):
    """The in-process sweep of seed 1 (VecNormalize) that the other executors must reproduce bit for bit."""
    return sweep(str(runs / "seed_1"), probe_spec, progress=False)


def test_checkpoint_callback_names_steps_seeds_and_vecnormalize(runs):
    found = discover(str(runs / "*" / "rl_model_*_steps.zip"))
    assert [(c.seed, c.step) for c in found] == [(s, n) for s in (0, 1) for n in STEPS]
    assert all(c.vecnormalize is None for c in found if c.seed == 0)
    assert [c.vecnormalize for c in found if c.seed == 1] == [
        str(runs / "seed_1" / f"rl_model_vecnormalize_{n}_steps.pkl") for n in STEPS]
    assert discover(str(runs)) == found  # the run directory gives the same, in the same order


def test_vecnormalize_of_each_step_is_applied_as_sb3_does(runs):
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    checkpoint = discover(str(runs / "seed_1" / "rl_model_64_steps.zip"))[0]
    policy = checkpoint.load()
    env = VecNormalize.load(checkpoint.vecnormalize, make_vec_env("CartPole-v1", n_envs=1))
    obs = np.random.default_rng(1).normal(size=(32, 4)).astype(np.float32)
    expected, _ = PPO.load(checkpoint.path, device="cpu").predict(env.normalize_obs(obs), deterministic=True)
    assert np.array_equal(policy.act(obs), expected)
    assert policy.normalizer is not None and "vecnormalize_64_steps" in policy.normalizer.source


def test_probe_rows_match_rli_probe_and_have_the_contract_columns(runs, probe_spec, reference):
    assert len(reference) == len(STEPS) and not reference.failures
    for row, step in zip(reference, STEPS):
        assert tuple(row) == COLUMNS and (row["step"], row["seed"], row["metric"]) == (step, 1, "r2")
        policy = discover(row["checkpoint"])[0].load()
        direct = rli.probe(policy, rli.ObsSet.load(probe_spec.obs.path), "obs[2]", 3, controls=False, folds=3)
        assert row["value"] == pytest.approx(direct.r2, abs=1e-9)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx(direct.ci, abs=1e-9)
        assert row["layer"] == "actor.3" and row["spec_key"] == probe_spec.key()


@pytest.mark.slow  # two spawned workers import torch and rli: 10-80 s on a busy 2-core machine
def test_processes_give_identical_records(runs, probe_spec, reference):
    table = sweep(str(runs / "seed_1"), probe_spec, executor="processes", workers=2, progress=False)
    assert table.to_records() == reference.to_records()


def test_any_concurrent_futures_executor_gives_identical_records(runs, probe_spec, reference):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=2) as pool:
        table = sweep(str(runs / "seed_1"), probe_spec, executor=pool, progress=False)
    assert table.to_records() == reference.to_records()


def _calls(path):
    return path.read_text().splitlines() if path.exists() else []


def test_interrupted_sweep_resumes_computing_only_missing_units(runs, tmp_path, monkeypatch):
    calls = tmp_path / "calls.txt"
    monkeypatch.setenv("RLI_TEST_CALLS", str(calls))
    store = tmp_path / "store"
    third = f"rl_model_{STEPS[2]}_steps.zip"
    stop = Custom(call="tests.test_runs_support:interrupt_on", kwargs={"name": third})
    with pytest.raises(KeyboardInterrupt):
        sweep(str(runs / "seed_0"), stop, store=store, trust=True, progress=False)
    assert len(_calls(calls)) == 3  # units 1, 2 finished and stored; the third was interrupted
    calls.unlink()
    monkeypatch.setenv("RLI_TEST_CALLS", str(calls))
    resumed = sweep(str(runs / "seed_0"), Custom(call="tests.test_runs_support:interrupt_on",
                                                  kwargs={"name": "none"}), store=store, trust=True, progress=False)
    assert resumed.counts.computed == 4  # another spec key: nothing reused across specs
    calls.unlink()
    # The same spec as the interrupted one, once the interruption is gone: counted() writes per call
    again = Custom(call="tests.test_runs_support:counted")
    first = sweep(str(runs / "seed_0"), again, store=store, trust=True, progress=False)
    assert (first.counts.computed, len(_calls(calls))) == (4, 4)
    second = sweep(str(runs / "seed_0"), again, store=store, trust=True, progress=False)
    assert (second.counts.cached, second.counts.computed, len(_calls(calls))) == (4, 0, 4)
    assert second.to_records() == first.to_records()


def test_resume_after_interrupt_recomputes_exactly_the_unfinished_units(runs, tmp_path, monkeypatch):
    calls = tmp_path / "calls.txt"
    monkeypatch.setenv("RLI_TEST_CALLS", str(calls))
    store = tmp_path / "store"
    spec = Custom(call="tests.test_runs_support:counted")
    sweep([str(runs / "seed_0" / f"rl_model_{n}_steps.zip") for n in STEPS[:2]], spec, store=store, trust=True,
          progress=False)  # the "interrupted" first half, stored
    calls.unlink()
    table = sweep(str(runs / "seed_0"), spec, store=store, trust=True, progress=False)
    assert (table.counts.cached, table.counts.computed) == (2, 2)
    assert sorted(_calls(calls)) == sorted(str(runs / "seed_0" / f"rl_model_{n}_steps.zip") for n in STEPS[2:])


def test_failing_unit_is_reported_with_its_checkpoint_and_others_kept(runs, tmp_path):
    bad = f"rl_model_{STEPS[1]}_steps.zip"
    spec = Custom(call="tests.test_runs_support:fail_on", kwargs={"name": bad})
    table = sweep(str(runs / "seed_0"), spec, store=tmp_path, trust=True, progress=False)
    assert [f.checkpoint.endswith(bad) for f in table.failures] == [True]
    assert "deliberate failure" in table.failures[0].error and table.failures[0].analysis == "custom"
    assert [r["step"] for r in table] == [n for n in STEPS if n != STEPS[1]]
    assert table.counts.failed == 1 and table.counts.computed == 3


def test_corrupt_store_entry_is_reported_and_recomputed(runs, tmp_path):
    spec = Custom(call="tests.test_runs_support:counted")
    first = sweep(str(runs / "seed_0"), spec, store=tmp_path, trust=True, progress=False)
    entry = sorted((tmp_path / "units").glob("*/*.json"))[0]
    entry.write_text(entry.read_text().replace('"value": ', '"value": 1', 1))  # a changed number
    with pytest.warns(UserWarning, match="corrupt store entry"):
        again = sweep(str(runs / "seed_0"), spec, store=tmp_path, trust=True, progress=False)
    assert (again.counts.recomputed_corrupt, again.counts.cached) == (1, 3)
    assert again.to_records() == first.to_records() and len(again.notes) == 1


def test_custom_analysis_outside_rli_needs_trust(runs):
    table = sweep(str(runs / "seed_0"), Custom(call="tests.test_runs_support:counted"), progress=False)
    assert len(table) == 0 and len(table.failures) == 4 and "trust=True" in table.failures[0].error


def test_bad_input_is_one_line_rli_error(runs, tmp_path):
    spec = Custom(call="tests.test_runs_support:counted")
    with pytest.raises(RliError, match="matches no file"):
        sweep(str(tmp_path / "*.zip"), spec)
    with pytest.raises(RliError, match="analyses must be"):
        sweep(str(runs), [])
    with pytest.raises(RliError, match="executor must be"):
        sweep(str(runs), spec, executor="dask")


def test_a_checkpoint_that_does_not_load_is_a_failure_not_a_crash(runs, tmp_path):
    broken = tmp_path / "rl_model_5_steps.zip"
    broken.write_bytes(b"not a zip")
    table = sweep([str(broken), str(runs / "seed_0" / "rl_model_32_steps.zip")],
                  Custom(call="tests.test_runs_support:counted"), trust=True, progress=False)
    assert len(table) == 1 and table.failures[0].checkpoint == str(broken) and "loading" in table.failures[0].error


# ----------------------------------------------------------------------------------------------------- Ray
@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}})
    yield
    ray.shutdown()


def test_ray_matches_in_process_and_a_failed_unit_resumes_from_the_store(ray_instance, runs, probe_spec, reference,
                                                                        tmp_path):
    victim = f"rl_model_{STEPS[1]}_steps.zip"
    flaky = Custom(call="tests.test_runs_support:fail_once", kwargs={"name": victim, "marker": str(tmp_path / "m")})
    first = sweep(str(runs / "seed_1"), [probe_spec, flaky], executor="ray", store=tmp_path / "store", trust=True,
                  progress=False)
    assert [(Path(f.checkpoint).name, f.analysis) for f in first.failures] == [(victim, "custom")]
    assert "deliberate failure" in first.failures[0].error
    assert first.filter(analysis="probe").to_records() == reference.to_records()  # bit for bit, and none lost
    again = sweep(str(runs / "seed_1"), [probe_spec, flaky], executor=RayExecutor(), store=tmp_path / "store",
                  trust=True, progress=False)
    assert not again.failures and (again.counts.cached, again.counts.computed) == (7, 1)
    assert again.filter(analysis="probe").to_records() == reference.to_records()


@pytest.mark.slow  # Ray starts a new worker (importing torch and rli again) after the killed one
def test_ray_matches_in_process_and_a_killed_worker_resumes_from_the_store(ray_instance, runs, probe_spec,
                                                                          reference, tmp_path):
    victim = f"rl_model_{STEPS[1]}_steps.zip"
    crash = Custom(call="tests.test_runs_support:crash_once",
                   kwargs={"name": victim, "marker": str(tmp_path / "crashed")})
    first = sweep(str(runs / "seed_1"), [probe_spec, crash], executor="ray", store=tmp_path / "store", trust=True,
                  progress=False)
    assert (tmp_path / "crashed").exists()  # the worker did die (os._exit) on that checkpoint
    assert {f.checkpoint for f in first.failures} == {str(runs / "seed_1" / victim)}
    assert {f.analysis for f in first.failures} == {"probe", "custom"}  # the whole task died with its worker
    kept = [r for r in reference if not r["checkpoint"].endswith(victim)]
    assert first.filter(analysis="probe").to_records() == kept
    assert (first.counts.computed, first.counts.failed) == (6, 2)

    again = sweep(str(runs / "seed_1"), [probe_spec, crash], executor=RayExecutor(), store=tmp_path / "store",
                  trust=True, progress=False)
    # the victim's probe finished (and was stored) before its worker died: only the crashed unit is recomputed
    assert not again.failures and (again.counts.cached, again.counts.computed) == (7, 1)
    assert again.filter(analysis="probe").to_records() == reference.to_records()


def test_ray_address_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "auto")
    executor = RayExecutor()
    assert executor.address is None and os.environ["RAY_ADDRESS"] == "auto"  # read when the sweep starts


def test_cli_sweep_writes_the_what_when_where_report(runs, probe_spec, reference, tmp_path, capsys):
    import json

    from rli.cli import main

    card = tmp_path / "card.json"
    card.write_text(json.dumps({"analyses": [probe_spec.to_dict()]}))
    out = tmp_path / "report"
    assert main(["sweep", str(runs / "seed_1" / "rl_model_*_steps.zip"), "--card", str(card), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert json.loads((out / "sweep.json").read_text())["records"] == reference.to_records()
    page = (out / "sweep.html").read_text()
    assert "data:image/png;base64," in page and page.count("<tr>") == len(reference) + 1
