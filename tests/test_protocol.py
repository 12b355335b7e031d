"""rli.interrogate and the checkpoint card: the four-step protocol, its settings, its report."""

from __future__ import annotations

import html
import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import rli
from rli import protocol
from rli.report import _jsonable

ROOT = Path(__file__).parent.parent
CHECKPOINTS = ROOT / "examples" / "checkpoints"
FAST = {"episodes": 3, "n_obs": 200, "ks": [1, 2], "candidates": 2, "progress": False}


def _cartpole_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 2))


@pytest.fixture(scope="module")
def cartpole_grid() -> rli.ObsSet:
    """Cart position × pole angle, the rest 0."""
    return rli.ObsSet.grid(np.zeros(4, dtype=np.float32), {0: np.linspace(-2, 2, 12), 2: np.linspace(-0.2, 0.2, 10)})


@pytest.fixture(scope="module")
def cartpole_policy() -> rli.Policy:
    return rli.load_policy(_cartpole_net(), env="CartPole-v1")


@pytest.fixture(scope="module")
def report(cartpole_policy, cartpole_grid) -> rli.Report:
    return rli.interrogate(cartpole_policy, "CartPole-v1", target="obs[2]", sensors=[2], probe_obs=cartpole_grid,
                           grid_axes=[{"index": 2, "label": "pole angle", "unit": "rad"},
                                      {"index": 0, "label": "cart position", "unit": "m"}], **FAST)


# ------------------------------------------------------------------------------------------ cards
def test_card_settings_checks_the_block_and_takes_the_cards_env():
    card = {"env": "CartPole-v1", "interrogate": {"target": "obs[2]", "layer": 5, "sensors": [2],
                                                  "probe_obs": {"path": "grid.npz"}}}
    assert protocol.card_settings(card) == {**card["interrogate"], "env": "CartPole-v1"}
    assert protocol.card_settings({"env": "X-v0", "interrogate": {"env": "Y-v0"}})["env"] == "Y-v0"
    assert protocol.card_settings({"env": "X-v0"}) == {"env": "X-v0"}


@pytest.mark.parametrize("block, message", [
    ({"targt": "x"}, "unknown 'interrogate' setting.s. targt; known: env, target"),
    ({"sensors": 12}, "sensors must be a non-empty list"),
    ({"sensors": [True]}, "sensors must be a non-empty list"),
    ({"layer": 5.0}, "layer must be an actor-trunk index"),
    ({"target": 3}, "target must be a string"),
    ({"probe_obs": "rli.envs:probe_grid"}, "probe_obs must be"),
    ({"polarity_obs": {"call": "rli.envs:probe_grid", "args": []}}, "polarity_obs must be"),
    ({"grid_axes": [9, 10]}, "grid_axes must be two objects"),
])
def test_card_settings_rejects_a_bad_block_with_one_clear_message(block, message):
    with pytest.raises(rli.RliError, match=message):
        protocol.card_settings({"interrogate": block}, where="ppo.json")


def test_read_card(tmp_path):
    assert protocol.read_card(tmp_path / "ppo.zip") is None
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(rli.RliError, match="not valid JSON"):
        protocol.read_card(tmp_path / "bad.zip")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(rli.RliError, match="must hold a JSON object"):
        protocol.read_card(tmp_path / "list.zip")


def test_the_shipped_cards_carry_the_blocks_cards_py_writes():
    spec = importlib.util.spec_from_file_location("cards", ROOT / "examples" / "cards.py")
    cards = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cards)
    for stem in ("formation_ppo_seed42", "halfcheetah_ppo_seed0"):
        card = protocol.read_card(CHECKPOINTS / f"{stem}.zip")
        settings = protocol.card_settings(card)
        assert card["interrogate"] == cards.INTERROGATE[card["env"]]
        assert settings["env"] == card["env"] and settings["layer"] == 5
    formation = protocol.card_settings(protocol.read_card(CHECKPOINTS / "formation_ppo_seed42.zip"))
    assert formation["sensors"] == [12] and formation["target"] == "true_upwash"
    assert protocol.load_obs(formation["probe_obs"]).meta["nominal"] == "reference"
    assert protocol.load_obs(formation["polarity_obs"]).meta["nominal"] == "flight"


# ----------------------------------------------------------------------------------- observations
def test_load_obs_reads_npz_relative_to_a_base_and_calls_rli_functions(tmp_path, cartpole_grid):
    cartpole_grid.save(tmp_path / "grid.npz")
    loaded = protocol.load_obs({"path": "grid.npz"}, base=tmp_path)
    np.testing.assert_array_equal(loaded.obs, cartpole_grid.obs)
    assert len(protocol.load_obs(str(tmp_path / "grid.npz"))) == 120
    assert len(protocol.load_obs("rli.envs:probe_grid")) == 9600


def test_load_obs_imports_nothing_outside_rli_without_trust(capsys):
    with pytest.raises(rli.RliError, match="outside rli; pass trust=True"):
        protocol.load_obs("this:s")   # importing `this` would print the Zen of Python
    assert capsys.readouterr().out == ""
    with pytest.raises(rli.RliError, match=r"returned dict, not an rli.ObsSet"):
        protocol.load_obs("builtins:dict", trust=True)
    with pytest.raises(rli.RliError, match=r"cannot find 'rli.envs:nothing'"):
        protocol.load_obs("rli.envs:nothing")


def test_with_target_adds_observation_entries_and_lists_labels():
    obs = rli.ObsSet(np.arange(6.0).reshape(3, 2), labels={"speed": [1.0, 2.0, 3.0]})
    assert protocol.with_target(obs, "speed") is obs
    assert protocol.with_target(obs, "obs[0]").labels["obs[0]"].tolist() == [0.0, 2.0, 4.0]
    with pytest.raises(rli.RliError, match=r"have no label 'obs\[2\]'; their labels: speed; or name an "
                                           r"observation entry obs\[0\]..obs\[1\]"):
        protocol.with_target(obs, "obs[2]")


def test_the_target_is_inferred_from_the_envs_info_in_its_own_order():
    policy = rli.load_policy(nn.Sequential(nn.Linear(28, 4)), env="rli/FormationFlight-v0")
    rollouts = rli.ObsSet.from_rollouts("rli/FormationFlight-v0", policy, n=30, seed=0)
    assert protocol.infer_target("rli/FormationFlight-v0", rollouts, 0) == "true_upwash"
    cartpole = rli.ObsSet.from_rollouts("CartPole-v1", rli.load_policy(_cartpole_net(), env="CartPole-v1"), n=30,
                                        seed=0)
    with pytest.raises(rli.RliError, match=r"cannot infer a target: CartPole-v1 .* \(episode, step\) .*obs\[3\]"):
        protocol.infer_target("CartPole-v1", cartpole, 0)


# ------------------------------------------------------------------------------------------ protocol
def test_interrogate_runs_the_four_steps(report):
    assert report.probe is report.profile[3] and report.probe.target == "obs[2]"
    assert len(report.profile) == 5 and report.probe.controls.keys() == {"untrained", "shuffled", "raw_obs"}
    assert report.polarity.sensors == (2,) and report.polarity.layer == report.probe.layer
    assert report.ablation.values == (1, 2) and report.pc1 is report.ablation.comparisons[0]
    assert report.pc1.baseline.seeds.tolist() == [0, 1, 2]
    assert report.subspace.method == "ordered" and report.subspace.k <= 2
    assert report.heatmap.shape == (120,)


def test_interrogate_records_where_each_setting_came_from(report):
    assert report.sources["layer"] == "default" and report.settings["layer"] == 3, "the last hidden layer"
    assert report.sources["target"] == "argument" and report.sources["probe_obs"] == "argument"
    assert report.sources["polarity_obs"] == "default: the probe observations"
    assert report.settings["rollout_seed"] == 6, "visited observations: the seeds after the evaluation's and the confirmation's"
    # 20 whole episodes of the untrained policy visit 183 steps, fewer than the 200 asked: all are kept
    assert report.settings["rollout_obs"] == ("183 observations visited by the policy in CartPole-v1, spread over 20 episodes "
                                            "(seeds 6..25)")


def test_findings_state_the_numbers(report):
    probe = report.findings["probe"]
    r = report.probe
    assert f"held-out R² {r.r2:.3f} [{r.ci[0]:.3f}, {r.ci[1]:.3f}]" in probe
    assert f"selectivity {r.selectivity:+.2f}" in probe and "untrained network" in probe
    assert f"from {report.polarity.r2_normal:.3f} to {report.polarity.r2_inverted:.3f}" in report.findings["polarity"]
    assert "over 3 paired episodes (seeds 0..2)" in report.findings["ablation"]
    assert "not LEACE erasure" in report.findings["ablation"]
    assert report.headlines["probe"].startswith(f"layer 3 decodes 'obs[2]' with held-out R² {r.r2:.3f}")
    assert str(report).startswith("rli interrogation of <Sequential>")


def test_save_writes_json_html_and_the_figures(report, tmp_path):
    json_path, html_path = report.save(tmp_path / "out", command="rli interrogate x.pt")
    data = json.loads(json_path.read_text())
    assert data["probe"]["r2"] == report.probe.r2 and data["fingerprint"] == report.fingerprint
    assert data["command"] == "rli interrogate x.pt" and data["rli_version"] == rli.__version__
    assert data["settings"]["seed"] == 0 and data["ablation"]["points"][0]["seeds"] == [0, 1, 2]
    assert sorted(data["figures"]) == ["ablation_curve.png", "attribution.png", "layer_profile.png",
                                       "patching_layers.png", "patching_units.png", "pca_scatter.png",
                                       "probe_heatmap.png", "subspace_search.png"]
    assert all((tmp_path / "out" / name).read_bytes().startswith(b"\x89PNG") for name in data["figures"])
    page = html_path.read_text()
    assert page.count('src="data:image/png;base64,') == 8
    assert not re.search(r'(src|href)="(?!data:)', page), "self-contained: nothing outside the page"
    assert "rli interrogate x.pt" in page and "1. Linear probing" in page
    assert "<h2>Attribution</h2>" in page and "<h2>Activation patching</h2>" in page
    assert html.escape(report.findings["patching"]) in page and html.escape(report.findings["attribution"]) in page
    assert data["attribution"]["shares"] == json.loads(json.dumps(report.attribution.to_dict()))["shares"]
    assert data["patching"]["units"]["sites"][0]["effect"] == float(report.patching_units.effect[0])
    assert data["timings_s"].keys() >= {"attribution", "patching"}


def test_json_holds_every_number(report):
    text = json.dumps(report.to_dict(), default=_jsonable)
    data = json.loads(text)
    assert data["polarity"]["r2_inverted"] == report.polarity.r2_inverted
    assert data["subspace"]["steps"][0]["treated_returns"] == report.subspace.steps[0].comparison.treated.returns.tolist()
    assert data["profile"]["results"][3]["controls"] == report.profile[3].controls


# ------------------------------------------------------------------------------------- causal evidence
def test_the_reports_attribution_is_rli_attribute_on_the_same_rows(report, cartpole_policy):
    """The section's numbers are rli.attribute's on the stated subsample, groups and steps; the shares are captum's
    integrated gradients aggregated by grid block, and the sensor's share is that of obs[2]."""
    from captum.attr import IntegratedGradients

    from rli.attribution import attribute
    from rli.protocol import evidence

    how = report.causal["attribution"]
    picked = evidence.sample(report.probe_obs, seed=0)
    assert how["row_indices"] == picked.rows.tolist() and how["rows"] == len(report.probe_obs) == 120
    assert how["target"] == "action" and how["n_steps"] == evidence.IG_STEPS and how["baseline"] == "zeros"
    assert how["groups"].startswith("contiguous blocks of the grid")
    direct = attribute(cartpole_policy, picked.obs, target="action", method="ig", n_steps=evidence.IG_STEPS,
                       groups=evidence.GROUP_LABEL)
    assert {k: v.to_dict() for k, v in direct.shares.items()} == {k: v.to_dict() for k, v in report.attribution.shares.items()}
    np.testing.assert_array_equal(direct.attributions, report.attribution.attributions)
    # an independent reference: captum on the bare network, the greedy action's logit, from the zero observation
    net = cartpole_policy.module
    x = torch.as_tensor(picked.obs.obs, dtype=torch.float32)
    greedy = net(x).argmax(dim=1)
    theirs = IntegratedGradients(net).attribute(x, baselines=torch.zeros_like(x), target=greedy,
                                                n_steps=evidence.IG_STEPS).detach().numpy()
    np.testing.assert_allclose(report.attribution.attributions, theirs, rtol=1e-4, atol=1e-6)
    per_row = np.abs(theirs) / np.abs(theirs).sum(axis=1, keepdims=True)
    blocks = picked.obs.labels[evidence.GROUP_LABEL]
    by_block = [per_row[blocks == b, 2].mean() for b in np.unique(blocks)]
    assert report.attribution.shares["obs[2]"].share == pytest.approx(np.mean(by_block), abs=1e-6)
    assert how["sensor_share"] == report.attribution.share_of(["obs[2]"]).to_dict()
    assert f"{how['sensor_share']['share']:.3f}" in report.findings["attribution"]


def test_the_reports_patching_is_rli_patch_sweep_on_the_sensor_negated_rows(report, cartpole_policy):
    from rli.patch_sweep import patch_sweep
    from rli.protocol import evidence

    how = report.causal["patching"]
    assert how["counterfactual_kind"] == "sensors-negated" and "entry 2 negated" in how["counterfactual"]
    picked = evidence.sample(report.probe_obs, seed=0)  # the polarity observations default to the probe's
    corrupt = rli.negate_sensors(picked.obs, [2])
    layers = patch_sweep(cartpole_policy, picked.obs, corrupt, metric="action_agreement", over=("layer",),
                         groups=evidence.GROUP_LABEL)
    units = patch_sweep(cartpole_policy, picked.obs, corrupt, metric="action_agreement", over=("layer", "unit"),
                        layers=[report.probe.layer], groups=evidence.GROUP_LABEL)
    assert layers.to_dict() == report.patching.to_dict() and units.to_dict() == report.patching_units.to_dict()
    assert report.patching.sites == ("actor.0", "actor.1", "actor.2", "actor.3", "actor.4")
    assert len(report.patching_units.sites) == 16
    # independent reference: action agreement of the mirrored observations, by hand, averaged over grid blocks
    same = cartpole_policy.act(corrupt.obs) == cartpole_policy.act(picked.obs)
    blocks = picked.obs.labels[evidence.GROUP_LABEL]
    by_block = np.array([same[blocks == b].mean() - 1 for b in np.unique(blocks)])
    assert report.patching.total_effect == pytest.approx(by_block.mean(), abs=1e-12)
    assert report.patching.total_effect < 0, "mirroring the pole angle changes some actions"
    # a whole layer of a chain carries everything downstream: each layer's patch is the counterfactual run itself
    np.testing.assert_allclose(report.patching.effect, report.patching.total_effect, atol=1e-12)
    assert f"{report.patching.total_effect:+.4g}" in report.findings["patching"]
    assert "Activation patching:" in str(report) and "Attribution:" in str(report)
    assert report.headlines["patching"].startswith("the sensors-negated counterfactual changes action_agreement")


def test_the_causal_steps_leave_the_policy_untouched(report, cartpole_policy):
    assert cartpole_policy.fingerprint == report.fingerprint
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in cartpole_policy.module.modules())
    assert all(p.grad is None for p in cartpole_policy.module.parameters())


def test_the_permuted_counterfactual_pairs_rows_of_other_groups():
    from rli.protocol import evidence

    episodes = np.repeat(np.arange(7), [3, 9, 1, 5, 6, 2, 4])
    obs = rli.ObsSet(np.arange(len(episodes) * 2.0).reshape(-1, 2), labels={"episode": episodes})
    picked = evidence.sample(obs, seed=3)
    corrupt, kind, text = evidence.counterfactual(picked.obs, None, evidence.GROUP_LABEL, seed=3)
    assert kind == "permuted" and "seed 3" in text
    assert (corrupt.labels["episode"] != obs.labels["episode"]).all(), "never a row of its own episode"
    assert {tuple(row) for row in corrupt.obs} <= {tuple(row) for row in obs.obs}
    again, _, _ = evidence.counterfactual(picked.obs, None, evidence.GROUP_LABEL, seed=3)
    np.testing.assert_array_equal(again.obs, corrupt.obs)
    one = evidence.sample(rli.ObsSet(np.zeros((4, 2)), labels={"episode": np.zeros(4)}), seed=0)
    with pytest.raises(rli.RliError, match="hold one group; give sensors="):
        evidence.counterfactual(one.obs, None, evidence.GROUP_LABEL, seed=0)
    big = evidence.sample(rli.ObsSet(np.zeros((2000, 2))), seed=0)
    assert len(big.rows) == evidence.ROWS and big.description.startswith("a random subsample of 512 of the 2,000")


def test_a_continuous_policy_reads_its_most_varying_action_component():
    import gymnasium as gym

    from rli.protocol import evidence

    net = nn.Linear(3, 2)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[0.1, 0.0, 0.0], [0.0, 5.0, 0.0]]))
    policy = rli.load_policy(net, action_space=gym.spaces.Box(-10, 10, (2,)))
    obs = rli.ObsSet(np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32))
    target, metric, attributed, measured = evidence.action_output(policy, obs)
    assert target == "action:1" and metric.__name__ == "action:1"
    assert "component 1" in attributed and attributed == measured
    np.testing.assert_array_equal(metric(np.arange(6.0).reshape(3, 2)), [1.0, 3.0, 5.0])


def test_a_step_that_does_not_apply_is_skipped_with_the_reason():
    """Attribution differentiates the observation: a binary observation space cannot be; the step says why."""
    import gymnasium as gym

    from rli.protocol import evidence

    policy = rli.load_policy(nn.Linear(4, 2), observation_space=gym.spaces.MultiBinary(4),
                             action_space=gym.spaces.Discrete(2))
    obs = rli.ObsSet(np.random.default_rng(0).integers(0, 2, (20, 4)).astype(np.float32),
                     labels={"episode": np.repeat(np.arange(4), 5)})
    result, how = evidence.attribution_evidence(policy, obs, "binary observations", None, seed=0)
    assert result is None and how["skipped"].startswith("attribution does not apply to this policy (attribution "
                                                         "needs real-valued observations")
    layers, units, how = evidence.patching_evidence(policy, obs, "binary observations", None, policy.layer(0), seed=0)
    assert layers is not None and units is not None and how["counterfactual_kind"] == "permuted"
    assert how["groups"] == "episodes" and how["rows"] == 20


def test_without_sensors_the_polarity_step_is_skipped_and_said_so(tmp_path):
    policy = rli.load_policy(_cartpole_net(), env="CartPole-v1")
    result = rli.interrogate(policy, "CartPole-v1", target="obs[1]", **FAST)
    assert result.polarity is None and result.heatmap is None
    assert result.findings["polarity"].startswith("Skipped: no sensors were given")
    _, html_path = result.save(tmp_path)
    assert "No heat map: the probe observations are not a 2-D grid" in html_path.read_text()
    assert html_path.read_text().count("data:image/png") == 7, "four protocol figures and three causal ones"
    assert result.causal["patching"]["counterfactual_kind"] == "permuted"
    assert "permuted across groups" in result.findings["patching"] and "episodes" in result.findings["patching"]


def test_a_card_beside_the_checkpoint_supplies_the_defaults(tmp_path, cartpole_grid):
    torch.save(_cartpole_net(), tmp_path / "ppo.pt")
    cartpole_grid.save(tmp_path / "grid.npz")
    (tmp_path / "ppo.json").write_text(json.dumps({"env": "CartPole-v1", "interrogate": {
        "target": "obs[0]", "layer": 1, "probe_obs": {"path": "grid.npz"}}}))
    result = rli.interrogate(tmp_path / "ppo.pt", sensors=[0], causal=False, **FAST)
    assert result.settings["env"] == "CartPole-v1" and result.sources["env"] == "card"
    assert result.probe.target == "obs[0]" and result.probe.layer_index == 1 and result.sources["layer"] == "card"
    assert result.settings["probe_obs"] == "grid.npz" and result.heatmap is not None
    assert result.sources["sensors"] == "argument"
    assert result.meta["card"] == str(tmp_path / "ppo.json")
    # causal=False: no attribution or patching, and the report says so everywhere
    assert result.attribution is None and result.patching is None and result.patching_units is None
    assert result.settings["causal"] is False and "attribution" not in result.meta["timings_s"]
    for step in ("attribution", "patching"):
        assert result.findings[step].startswith("Skipped: causal=False (--no-causal) was given")
        assert result.headlines[step].startswith("skipped (causal=False")
    data = result.to_dict()
    assert data["attribution"] is None and data["patching"] is None
    assert data["causal"]["patching"]["skipped"].startswith("causal=False")
    _, html_path = result.save(tmp_path / "out")
    page = html_path.read_text()
    assert page.count("data:image/png") == 5 and "<h2>Attribution</h2><p>Skipped: causal=False" in page.replace("\n", "")
    assert "Activation patching:\n  Skipped: causal=False" in str(result)


def test_interrogate_same_inputs_same_numbers(report, cartpole_grid):
    policy = rli.load_policy(_cartpole_net(), env="CartPole-v1")
    again = rli.interrogate(policy, "CartPole-v1", target="obs[2]", sensors=[2], probe_obs=cartpole_grid,
                            grid_axes=report.settings["grid_axes"], **FAST)
    assert again.probe.r2 == report.probe.r2 and again.polarity.r2_inverted == report.polarity.r2_inverted
    assert again.pc1.treated.returns.tolist() == report.pc1.treated.returns.tolist()
    assert [s.kept for s in again.subspace.steps] == [s.kept for s in report.subspace.steps]
    # the whole JSON, causal sections included, is the same but for the clock
    clock = ("created", "timings_s", "wall_time_s")
    first, second = (json.dumps({k: v for k, v in r.to_dict().items() if k not in clock}, default=_jsonable,
                                sort_keys=True) for r in (report, again))
    assert first == second
    assert again.attribution.attributions.tobytes() == report.attribution.attributions.tobytes()


@pytest.mark.parametrize("kwargs, message", [
    ({}, "no environment: .* pass env= / --env"),
    ({"env": "CartPole-v1", "episodes": 1}, "episodes must be an integer of at least 2"),
    ({"env": "CartPole-v1", "ks": [2, 4]}, "ks must be increasing numbers of directions starting at 1"),
    ({"env": "CartPole-v1", "method": "random"}, "method must be 'greedy' or 'ordered'"),
    ({"env": "CartPole-v1", "tolerance": 1.5}, "tolerance is a fraction"),
    ({"env": "CartPole-v1", "candidates": 0}, "candidates must be a positive integer"),
    ({"env": "CartPole-v1", "causal": "yes"}, "causal must be True .* or False, not 'yes'"),
    ({"env": "NoSuchEnv-v0"}, "NoSuchEnv-v0"),
    ({"env": "CartPole-v1", "target": "obs[2]", "layer": 9}, "layer 9 is out of range"),
    ({"env": "CartPole-v1", "target": "obs[2]", "sensors": [4]}, r"sensors \[4\] must be observation indices 0..3"),
    ({"env": lambda: None}, "the environment factory returned NoneType, not a gymnasium.Env"),
    ({"env": 42}, "env must be a gymnasium id"),
])
def test_bad_input_raises_rli_error(kwargs, message):
    policy = rli.load_policy(_cartpole_net(), env="CartPole-v1")
    with pytest.raises(rli.RliError, match=message):
        rli.interrogate(policy, progress=False, **{"episodes": 3, "n_obs": 50, **kwargs})


@pytest.mark.slow
def test_the_formation_checkpoint_with_defaults_reproduces_the_papers_protocol(tmp_path):
    """The README's quick-start interrogation: numbers as in examples/paper_claims and docs/cli.md."""
    result = rli.interrogate(CHECKPOINTS / "formation_ppo_seed42.zip", progress=False)
    assert result.probe.layer_index == 5 and result.settings["probe_obs"] == "rli.envs:probe_grid(nominal='reference')"
    assert result.probe.r2 == pytest.approx(0.981, abs=0.002)
    assert result.probe.controls["untrained"] == pytest.approx(0.733, abs=0.005)  # SB3's own init (was 0.587)
    assert result.probe.selectivity == pytest.approx(0.249, abs=0.005)
    assert result.polarity.r2_normal == pytest.approx(0.991, abs=0.002)
    assert result.polarity.r2_inverted == pytest.approx(-0.956, abs=0.01) and result.polarity.flipped
    # 20 episodes resolve neither PC1's +1.7% (CI [-0.1%, +3.6%]) nor a ±5% equivalence, as docs/cli.md shows
    assert result.pc1.relative_drop == pytest.approx(0.017, abs=0.002) and result.pc1.ci[0] < 0
    assert not result.subspace.found
    assert result.meta["wall_time_s"] < 180
    _, html_path = result.save(tmp_path)
    assert html_path.read_text().count("data:image/png") == 8
    # the causal evidence: the sensor-negated flight grid changes the steering action; its cost stays small
    assert result.causal["patching"]["counterfactual_kind"] == "sensors-negated"
    timings = result.meta["timings_s"]
    assert timings["attribution"] + timings["patching"] <= 0.15 * (result.meta["wall_time_s"] - timings["attribution"]
                                                                   - timings["patching"])


def test_progress_names_each_step_on_stderr(capsys):
    policy = rli.load_policy(_cartpole_net(), env="CartPole-v1")
    rli.interrogate(policy, "CartPole-v1", target="obs[1]", **{**FAST, "progress": True})
    err = capsys.readouterr().err
    for step in ("step 1/4, probing every layer", "step 2/4, polarity inversion",
                 "step 3/4, ablating principal directions", "step 4/4, searching the minimal subspace",
                 "causal evidence, integrated gradients of the action", "causal evidence, activation patching"):
        assert f"rli interrogate: {step}" in err
    assert "evaluate CartPole-v1" in err, "the evaluations' episode bars"
