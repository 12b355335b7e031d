"""One recording path: the attribution and steering assertions record through ``pytest_rli.assertions.finish``, so
their baseline and history entries look like every other assertion's and regressions are judged the same way."""

from __future__ import annotations

import json

pytest_plugins = ["pytester"]

CLAIMS = """
import numpy as np
import torch
import torch.nn as nn

import rli
from pytest_rli.assertions import assert_probe_r2
from pytest_rli.attribution_assertions import assert_attribution_in
from pytest_rli.steering_assertions import assert_steering_changes


def _linear(weight):
    net = nn.Linear(4, len(weight))
    with torch.no_grad():
        net.weight.copy_(torch.tensor(weight))
        net.bias.zero_()
    return net


def test_probe():
    torch.manual_seed(0)
    x = np.random.default_rng(0).normal(size=(300, 4))
    assert_probe_r2(policy=rli.load_policy(nn.Sequential(nn.Linear(4, 16), nn.Tanh())), obs=x, layer=1,
                    target=("x0", x[:, 0]), min=0.9, controls=False)


def test_attribution():
    obs = rli.ObsSet(np.random.default_rng(0).normal(size=(40, 4)), labels={"episode": np.arange(40) // 10})
    assert_attribution_in(policy=rli.load_policy(_linear([[1.0, -1.0, 0.0, 0.0]])), obs=obs, inputs=[0, 1],
                          min_share=0.9, target="action:0", n_steps=8)


def test_steering():
    policy = rli.load_policy(nn.Sequential(_linear([[0.0, 0, -1, -1], [0, 0, 1, 1]])), env="CartPole-v1")
    assert_steering_changes(policy=policy, env="CartPole-v1", layer=0, vector=[1.0, -1.0], coeff=5.0,
                            metric="length", min_effect=50, direction="decrease", episodes=4, seed=0)
"""


def test_attribution_and_steering_entries_look_like_the_others_and_regress_alike(pytester):
    import rli  # noqa: F401 — import torch once: pytester's in-process runs cannot re-import it

    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_claims=CLAIMS)
    result = pytester.runpytest("-p", "no:cacheprovider", "--rli-baseline=b.json", "--rli-update-baseline")
    result.assert_outcomes(passed=3)
    data = json.loads((pytester.path / "b.json").read_text())
    stored = data["tests"]
    history = json.loads(next((pytester.path / ".rli" / "runs").glob("0001_*.json")).read_text())["tests"]
    entries = {name.split("::test_")[1]: next(iter(tests.values())) for name, tests in stored.items()}
    assert set(entries) == {"probe", "attribution", "steering"}
    assert {entries["attribution"]["assertion"], entries["steering"]["assertion"]} == {
        "assert_attribution_in", "assert_steering_changes"}
    assert (entries["attribution"]["metric"], entries["steering"]["metric"]) == ("attribution_share",
                                                                                  "steering_effect")
    common = {"assertion", "metric", "value", "ci", "ci_level", "higher_is_better"}
    for name, entry in entries.items():
        assert common <= set(entry), (name, entry)
        assert len(entry["ci"]) == 2 and entry["ci"][0] <= entry["value"] <= entry["ci"][1] and entry["ci_level"] == 0.95
    kept = {name.split("::test_")[1]: next(iter(tests.values())) for name, tests in history.items()}
    assert {frozenset(set(v) - {"layer", "target", "n"}) for v in kept.values()} == {
        frozenset(common | {"passed", "outcome", "change"})}
    # a stored value far above today's, with a CI that does not overlap: both fail as regressions, as the probe does
    for tests in stored.values():
        for entry in tests.values():
            far = entry["value"] + 10 * (entry["ci"][1] - entry["ci"][0]) + 100
            entry["value"], entry["ci"] = far, [far - 1, far + 1]
    (pytester.path / "b.json").write_text(json.dumps(data))
    again = pytester.runpytest("-p", "no:cacheprovider", "--rli-baseline=b.json")
    again.assert_outcomes(failed=3)
    for assertion, metric in [("assert_probe_r2", "r2"), ("assert_attribution_in", "attribution_share"),
                              ("assert_steering_changes", "steering_effect")]:
        again.stdout.fnmatch_lines([f"E *{assertion}: {metric} regressed from the baseline * (the 95% CIs do not "
                                    "overlap); the absolute threshold still holds"])
