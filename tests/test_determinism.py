"""Same inputs, same numbers: twice in a row, in a fresh process, on one torch thread or two, and on 1 or N
pytest-xdist workers. Every comparison is exact (==), never approximate."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import rli

pytest_plugins = ["pytester"]
CHECKPOINT = Path(__file__).parent.parent / "examples" / "checkpoints" / "cartpole_ppo_seed0.zip"


def _policy() -> rli.Policy:
    torch.manual_seed(3)
    return rli.load_policy(nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(),
                                         nn.Linear(16, 2)), env="CartPole-v1")


def measure() -> dict:
    """Every kind of number rli produces, as plain data (also run in a fresh process, below)."""
    policy = _policy()
    obs = rli.ObsSet.from_rollouts("CartPole-v1", policy, n=600, seed=1)
    angle = obs.obs[:, 2]
    cut = rli.ablate(policy, 3, "pc1", obs=obs)
    return {
        "fingerprint": policy.fingerprint,
        "capture": rli.capture(policy, obs, [3])[3].tobytes().hex()[:4096],
        "probe": rli.probe(policy, obs, angle, 3, control_seeds=2).to_dict(),
        "lasso": rli.probe(policy, obs, angle, 3, kind="lasso", controls=False).to_dict(),
        "logistic": rli.probe(policy, obs, (angle > 0).astype(int), 3, kind="logistic", controls=False).to_dict(),
        "profile": rli.probe_layers(policy, obs, angle, controls=False).to_dict(),
        "polarity": rli.polarity_test(policy, obs, angle, [2], 3).to_dict(),
        "pca": [a.tolist() for a in rli.fit_pca(rli.capture(policy, obs, [3])[3], 3)],
        "cka": rli.cka(rli.capture(policy, obs, [1])[1], rli.capture(policy, obs, [3])[3],
                       groups=obs.labels["episode"]).to_dict(),
        "erase": rli.erase(policy, 3, obs, angle).to_dict(),
        "evaluate": rli.evaluate(policy, "CartPole-v1", 6, 0, progress=False).to_dict(),
        "evaluate_n_envs": rli.evaluate(policy, "CartPole-v1", 6, 0, n_envs=4, progress=False).to_dict(),
        "compare": rli.compare(policy, "CartPole-v1", cut, 6, 0, progress=False).to_dict(),
        "subspace": rli.minimal_subspace(policy, "CartPole-v1", 3, obs, candidates=3, episodes=4,
                                         method="ordered", progress=False).to_dict(),
        "sample": rli.ObsSet.sample(policy, 50, 7).fingerprint,
    }


def _json(value: dict) -> str:
    return json.dumps(value, sort_keys=True, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v))


@pytest.fixture(scope="module")
def first() -> str:
    return _json(measure())


def test_twice_in_one_process(first):
    assert _json(measure()) == first


def test_in_a_fresh_process(first):
    code = "import json, tests.test_determinism as t; print(t._json(t.measure()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent.parent).stdout
    assert out.strip() == first


def test_on_one_torch_thread(first):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert _json(measure()) == first
    finally:
        torch.set_num_threads(threads)


def test_global_random_state_does_not_matter(first):
    torch.manual_seed(12345)
    np.random.seed(12345)
    assert _json(measure()) == first


# ------------------------------------------------------------------------------------------------ plugin
INI = """[pytest]
rli_policy = policy.zip
rli_env = CartPole-v1
rli_obs_size = {obs}
rli_episodes = {episodes}
"""

CLAIMS = """
import pytest

def test_probe(rli):
    rli.assert_probe_r2(layer=5, min=0.0, target=rli.obs.obs[:, 2])

def test_selective(rli):
    rli.assert_probe_selective(layer=3, target=rli.obs.obs[:, 3], min_selectivity=-1.0)

def test_polarity(rli):
    rli.assert_polarity_inversion(layer=5, sensors=[2], target=rli.obs.obs[:, 2], min_drop=-10.0)

def test_ablation(rli):
    rli.assert_ablation_degrades(layer=5, direction="pc1", min_drop=-10.0)

def test_subspace(rli):
    rli.assert_subspace_sufficient(layer=5, k=2, max_drop=10.0)

def test_similar(rli):
    rli.assert_representation_similar(layer=5, reference="policy.zip", min_cka=0.0)
"""


def _session_metrics(pytester, *args: str) -> tuple[dict, dict]:
    """Run the claims in a fresh pytest process → (metrics from --rli-report, rli properties from JUnit XML)."""
    out = pytester.path / f"out{len(list(pytester.path.glob('out*')))}"
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--rli-report={out}",
                                           f"--junitxml={out}.xml", *args)
    result.assert_outcomes(passed=6)
    report = json.loads((out / "report.json").read_text())["tests"]
    metrics = {node: [{k: m[k] for k in ("key", "metric", "value", "ci", "details")} for m in entry["metrics"]]
               for node, entry in report.items()}
    properties = {(case.get("classname"), case.get("name"), p.get("name")): p.get("value")
                  for case in ET.parse(f"{out}.xml").iter("testcase") for p in case.iter("property")}
    return metrics, properties


def _claims_are_deterministic(pytester, obs: int, episodes: int, serial_runs: int) -> None:
    (pytester.path / "policy.zip").write_bytes(CHECKPOINT.read_bytes())
    pytester.makeini(INI.format(obs=obs, episodes=episodes))
    pytester.makepyfile(test_claims=CLAIMS)
    serial = _session_metrics(pytester)
    assert len(serial[0]) == 6 and all(serial[0].values()) and len(serial[1]) >= 12
    for _ in range(serial_runs - 1):
        assert _session_metrics(pytester) == serial
    assert _session_metrics(pytester, "-n", "2") == serial


@pytest.mark.slow  # three fresh pytest processes (~40 s); the default run keeps xdist in test_plugin_assertions
def test_metrics_identical_serial_and_under_xdist(pytester):
    """Small form (each fresh pytest process imports torch: ~8 s apiece): one serial run, one on two workers."""
    _claims_are_deterministic(pytester, obs=300, episodes=3, serial_runs=1)


@pytest.mark.slow
def test_metrics_identical_across_runs_and_under_xdist_at_full_size(pytester):
    _claims_are_deterministic(pytester, obs=5000, episodes=20, serial_runs=2)
