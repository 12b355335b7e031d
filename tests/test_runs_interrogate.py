"""``rli.runs.specs.Interrogate``: a frozen, hashable, serialisable spec of ``rli.interrogate`` whose rows are the
report's numbers, keyed in the store (a second sweep is read back) with the checkpoint's card in the key."""

from __future__ import annotations

import json

import pytest

from rli.errors import RliError
from rli.runs.specs import Interrogate, Obs, check_specs, spec_from_dict

SETTINGS = {"env": "CartPole-v1", "target": "obs[2]", "sensors": (2,), "episodes": 3, "n_obs": 200, "ks": (1, 2),
            "candidates": 2, "obs_episodes": 5}


def test_spec_is_frozen_hashable_and_round_trips():
    spec = Interrogate(**SETTINGS, probe_obs=Obs.grid("rli.envs:probe_grid", n_x=3, n_y=3))
    assert spec_from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert hash(spec) == hash(Interrogate(**SETTINGS, probe_obs={"call": "rli.envs:probe_grid",
                                                                  "kwargs": {"n_x": 3, "n_y": 3}}))
    assert spec.key() != Interrogate(**{**SETTINGS, "seed": 1}).key()
    assert check_specs([spec.to_dict()]) == (spec,)
    with pytest.raises(AttributeError):
        spec.seed = 3


@pytest.mark.parametrize(("bad", "match"), [
    ({"sensors": "2"}, "sensors must be a non-empty list of integers"),
    ({"ks": ()}, "ks must be a non-empty list of integers"),
    ({"layer": 1.5}, "layer must be an actor-trunk index or a layer name"),
    ({"env": 3}, "env must be a string"),
    ({"tolerance": float("nan")}, "tolerance must be finite"),
])
def test_bad_settings_are_one_line_errors(bad, match):
    with pytest.raises(RliError, match=match):
        Interrogate(**{**SETTINGS, **bad})


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An untrained SB3 PPO (one hidden layer of 8) as a one-seed run, with a card."""
    from stable_baselines3 import PPO

    run = tmp_path_factory.mktemp("run") / "seed_0"
    run.mkdir()
    PPO("MlpPolicy", "CartPole-v1", seed=0, device="cpu", policy_kwargs={"net_arch": [8]}).save(
        run / "rl_model_0_steps.zip")
    (run / "rl_model_0_steps.json").write_text(json.dumps({"seed": 0}))
    return run / "rl_model_0_steps.zip"


def test_rows_are_the_reports_numbers_and_a_second_sweep_is_read_from_the_store(checkpoint, tmp_path, monkeypatch):
    import rli.protocol
    from rli.runs.sweep import sweep

    reports = []
    real = rli.protocol.interrogate

    def keep(*args, **kwargs):
        reports.append(real(*args, **kwargs))
        return reports[-1]

    monkeypatch.setattr(rli.protocol, "interrogate", keep)
    spec = Interrogate(**SETTINGS)
    table = sweep(str(checkpoint), spec, store=tmp_path / "store", progress=False)
    assert (table.counts.computed, table.failures) == (1, ())
    (report,) = reports
    rows = {(r["metric"], r["layer"], r["target"]): r for r in table}
    assert {r["analysis"] for r in table} == {"interrogate"} and {r["step"] for r in table} == {0}
    for result in report.profile.results:  # step 1: every layer's held-out R² and selectivity, with CIs
        layer = f"actor.{result.layer_index}"
        r2 = rows[("r2", layer, "obs[2]")]
        assert (r2["value"], r2["ci_low"], r2["ci_high"]) == (result.score, *result.ci)
        sel = rows[("selectivity", layer, "obs[2]")]
        assert (sel["value"], sel["ci_low"], sel["ci_high"]) == (result.selectivity, *result.selectivity_ci)
    chosen = f"actor.{report.probe.layer_index}"
    drop = rows[("polarity_drop", chosen, "obs[2]")]  # step 2
    assert (drop["value"], drop["ci_low"], drop["ci_high"]) == (report.polarity.drop, *report.polarity.drop_ci)
    assert rows[("polarity_r2_inverted", chosen, "obs[2]")]["value"] == report.polarity.r2_inverted
    for k, comparison, adjusted in zip(report.ablation.values, report.ablation.comparisons,
                                       report.ablation.adjusted_p_values):  # step 3
        removed = "pc1" if k == 1 else f"pc1-{int(k)}"
        rel = rows[("ablation_relative_drop", chosen, removed)]
        assert (rel["value"], rel["ci_low"], rel["ci_high"]) == (comparison.relative_drop, *comparison.relative_ci)
        assert rows[("ablation_drop", chosen, removed)]["value"] == comparison.drop
        assert rows[("ablation_adjusted_p", chosen, removed)]["value"] == adjusted
    search = report.subspace  # step 4
    assert rows[("minimal_k", chosen, None)]["value"] == search.k
    assert rows[("subspace_found", chosen, None)]["value"] == float(search.found)
    sub = rows[("subspace_relative_drop", chosen, None)]
    assert (sub["value"], sub["ci_low"], sub["ci_high"]) == (search.comparison.relative_drop,
                                                             *search.comparison.relative_ci)
    assert len(rows) == len(table)  # every row identified by (metric, layer, target)

    again = sweep(str(checkpoint), spec, store=tmp_path / "store", progress=False)
    assert (again.counts.cached, again.counts.computed, len(reports)) == (1, 0, 1)
    assert again.to_records() == table.to_records()
    # the card fills settings left None, so its content is part of the unit's key: an edited card recomputes
    from rli.loading import load_policy
    from rli.runs.specs import Probe

    policy = load_policy(checkpoint)
    before = spec.policy_inputs(policy)
    checkpoint.with_suffix(".json").write_text(json.dumps({"seed": 0, "interrogate": {"layer": 0}}))
    assert spec.policy_inputs(policy) != before and len(before) == 64
    assert Probe(obs=Obs.grid("rli.envs:probe_grid"), target="u", layer=1).policy_inputs(policy) == ""
