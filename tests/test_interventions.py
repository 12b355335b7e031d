"""Interventions: hand-computed forward passes, algebraic properties, SB3 and LSTM layers, lifecycle, errors."""

from __future__ import annotations

import contextlib
import warnings
from itertools import pairwise

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from sklearn.decomposition import PCA
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold, cross_val_score
from torch import nn

import rli
from tests.conftest import build_sb3

with warnings.catch_warnings():  # concept-erasure decorates helpers with the deprecated torch.jit.script
    warnings.simplefilter("ignore", DeprecationWarning)
    from concept_erasure import LeaceFitter


def _hook_count(module: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in module.modules())


def _projector(basis: np.ndarray) -> np.ndarray:
    """Orthogonal projector on span(basis), computed without orthonormalising: B (BᵀB)⁻¹ Bᵀ."""
    basis = np.asarray(basis, dtype=np.float64).reshape(len(basis), -1)
    return basis @ np.linalg.solve(basis.T @ basis, basis.T)


def _mlp(dtype: torch.dtype = torch.float32) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 2)).to(dtype)


def _by_hand(model: nn.Sequential, x: np.ndarray, at: int | None = None, edit=None, upto: int | None = None):
    """The forward pass of a Linear/Tanh Sequential in float64 numpy, with ``edit`` applied to layer ``at``."""
    h = np.asarray(x, dtype=np.float64)
    for i, module in enumerate(model):
        if isinstance(module, nn.Linear):
            h = h @ module.weight.detach().double().numpy().T + module.bias.detach().double().numpy()
        else:
            h = np.tanh(h)
        if i == at:
            h = edit(h)
        if i == upto:
            return h
    return h


@pytest.fixture
def model() -> nn.Sequential:
    return _mlp()


@pytest.fixture
def policy(model) -> rli.Policy:
    return rli.load_policy(model)


@pytest.fixture
def obs() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(300, 3)).astype(np.float32)


# ------------------------------------------------------------------ hand-computed forward passes
@pytest.mark.parametrize("alpha", [0.0, 0.5, -1.0, 2.0])
def test_ablate_one_direction_matches_the_hand_forward_pass(model, policy, obs, alpha):
    u = np.array([1.0, -2.0, 0.5, 0.0, 3.0, 1.0])
    unit = u / np.linalg.norm(u)
    with rli.ablate(policy, 1, u, alpha=alpha):
        got = policy.act(obs)
    expected = _by_hand(model, obs, at=1, edit=lambda h: h - (1 - alpha) * np.outer(h @ unit, unit))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k", [2, 4])
def test_ablate_a_subspace_uses_the_projector_of_its_span(model, policy, obs, k):
    basis = np.random.default_rng(1).normal(size=(5, k))
    with rli.ablate(policy, 2, basis, alpha=0.25):
        got = policy.act(obs)
    expected = _by_hand(model, obs, at=2, edit=lambda h: h - 0.75 * h @ _projector(basis))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("name", "columns"), [("pc1", [0]), ("pc2", [1]), ("PC1-3", [0, 1, 2])])
def test_principal_directions_are_fitted_on_the_given_observations(model, policy, obs, name, columns):
    acts = _by_hand(model, obs, upto=3)
    directions = PCA(n_components=3).fit(acts).components_[columns].T
    with rli.ablate(policy, 3, name, obs=obs) as cut:
        got = policy.act(obs)
    expected = _by_hand(model, obs, at=3, edit=lambda h: h - h @ _projector(directions))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert cut.to_dict()["directions"] == name.lower()


class FittedProbe:
    """Stands in for a fitted probe: interventions read its ``direction`` and, when present, ``layer`` and ``target``."""

    def __init__(self, direction, **attributes):
        self.direction = direction
        self.__dict__.update(attributes)


@pytest.mark.parametrize("direction", [np.eye(6)[2] * 3.0, np.eye(6)[:, [2, 4]]])
def test_a_fitted_probe_gives_its_direction(policy, obs, direction):
    with rli.ablate(policy, 1, FittedProbe(direction)) as cut:
        acts = rli.capture(policy, obs, layers=[1])[1]
    np.testing.assert_array_equal(acts[:, np.flatnonzero(direction.reshape(6, -1).any(axis=1))], 0)
    assert cut.describe().endswith("at actor.1 (FittedProbe direction)")
    named = rli.ablate(policy, "actor.1", FittedProbe(direction, layer="1", target="upwash"))
    assert named.describe().endswith("at actor.1 (probe of 'upwash')")


def test_an_rli_probe_direction_ablates_what_the_probe_reads(policy, obs):
    result = rli.probe(policy, obs, obs[:, 0] - obs[:, 2], layer=3, controls=False)
    with rli.ablate(policy, 3, result):
        acts = rli.capture(policy, obs, layers=[3])[3]
    np.testing.assert_allclose(acts @ result.direction, 0, atol=1e-5)


@pytest.mark.parametrize(("probe", "message"), [
    (FittedProbe(None), "this FittedProbe has no direction"),
    (FittedProbe(np.ones(6), layer="2"), "was fit at layer '2' but the intervention is at '1'"),
    (FittedProbe(np.ones(6), layer="lstm"), "was fit at layer 'lstm' but the intervention is at '1'"),
])
def test_a_probe_that_does_not_fit_the_layer_is_refused(policy, probe, message):
    with pytest.raises(rli.RliError, match=message):
        rli.ablate(policy, 1, probe)


def test_reflect_matches_householder(model, policy, obs):
    w = np.array([0.0, 1.0, 1.0, 0.0, 0.0, -1.0])
    unit = w / np.linalg.norm(w)
    with rli.reflect(policy, 1, w):
        got = policy.act(obs)
    expected = _by_hand(model, obs, at=1, edit=lambda h: h - 2 * np.outer(h @ unit, unit))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_mean_ablate_replaces_the_component_by_its_reference_mean(model, policy, obs):
    reference = obs[:100]
    basis = np.random.default_rng(2).normal(size=(6, 2))
    mean = _by_hand(model, reference, upto=1).mean(axis=0)
    with rli.mean_ablate(policy, 1, basis, reference):
        got = policy.act(obs)
    expected = _by_hand(model, obs, at=1, edit=lambda h: h - (h - mean) @ _projector(basis))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("with_mean", [False, True])
@pytest.mark.parametrize("k", [1, 4])
def test_keep_subspace_keeps_only_the_span(model, policy, obs, with_mean, k):
    basis = np.random.default_rng(3).normal(size=(6, k))
    reference = obs[:150] if with_mean else None
    mean = _by_hand(model, obs[:150], upto=1).mean(axis=0) if with_mean else np.zeros(6)
    with rli.keep_subspace(policy, 1, basis, obs=reference):
        got = policy.act(obs)
    expected = _by_hand(model, obs, at=1, edit=lambda h: mean + (h - mean) @ _projector(basis))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_erase_applies_the_leace_eraser_of_the_layer_activations(model, policy, obs):
    concept = np.sin(obs[:, 0]) + obs[:, 1] ** 2
    acts = _by_hand(model, obs, upto=3)
    standard = (concept - concept.mean()) / concept.std()
    eraser = LeaceFitter.fit(torch.tensor(acts), torch.tensor(standard)[:, None], shrinkage=False,
                             constrain_cov_trace=False, svd_tol=1e-6).eraser
    with rli.erase(policy, 3, rli.ObsSet(obs, labels={"c": concept}), "c") as leace:
        got = policy.act(obs)
    expected = _by_hand(model, obs, at=3, edit=lambda h: eraser(torch.tensor(h)).numpy())
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert leace.describe() == "LEACE erasure of 'c' at actor.3 (rank 1, fit on 300 observations)"


@pytest.mark.parametrize("n_source", [1, 300])
def test_patch_replaces_the_layer_output_by_the_source_output(model, policy, obs, n_source):
    source = np.random.default_rng(4).normal(size=(n_source, 3)).astype(np.float32)
    source_acts = _by_hand(model, source, upto=1)
    with rli.patch(policy, 1, source):
        got = policy.act(obs)
    expected = _by_hand(model, obs, at=1, edit=lambda h: np.broadcast_to(source_acts, h.shape))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_float64_networks_are_edited_in_float64():
    model = _mlp(torch.float64)
    policy = rli.load_policy(model)
    x = np.random.default_rng(0).normal(size=(50, 3))
    u = np.arange(1.0, 7.0)
    with rli.ablate(policy, 1, u):
        out = model(torch.tensor(x))
    assert out.dtype == torch.float64
    unit = u / np.linalg.norm(u)
    expected = _by_hand(model, x, at=1, edit=lambda h: h - np.outer(h @ unit, unit))
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-12, atol=1e-12)


def test_gradients_flow_through_an_active_intervention():
    layer = nn.Linear(3, 3, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(3))
    policy = rli.load_policy(nn.Sequential(layer))
    x = torch.ones(2, 3, requires_grad=True)
    with rli.ablate(policy, 0, [1.0, 0.0, 0.0]):
        policy.module(x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0.0, 1.0, 1.0]] * 2)


def test_conv_layers_are_edited_in_their_flattened_space():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(32, 3))
    policy = rli.load_policy(model, obs_shape=(1, 6, 6))
    x = np.random.default_rng(0).normal(size=(20, 1, 6, 6)).astype(np.float32)
    u = np.random.default_rng(1).normal(size=32)
    with rli.ablate(policy, 0, u):
        got = policy.act(x)
    with torch.no_grad():
        conv = model[0](torch.tensor(x)).flatten(1).double().numpy()
    unit = u / np.linalg.norm(u)
    edited = torch.tensor(conv - np.outer(conv @ unit, unit), dtype=torch.float32)
    with torch.no_grad():
        expected = model[3](model[1](edited)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_a_container_layer_is_edited_at_its_output():
    torch.manual_seed(0)
    policy = rli.load_policy(nn.Sequential(nn.Sequential(nn.Linear(3, 5), nn.ReLU()), nn.Linear(5, 2)))
    x = np.random.default_rng(0).normal(size=(10, 3))
    u = np.ones(5)
    with rli.ablate(policy, "0", u):
        container = policy.act(x)
    with rli.ablate(policy, "0.1", u):
        leaf = policy.act(x)
    np.testing.assert_array_equal(container, leaf)


def test_a_downstream_inplace_layer_cannot_corrupt_the_patch():
    torch.manual_seed(0)
    policy = rli.load_policy(nn.Sequential(nn.Linear(3, 8), nn.ReLU(inplace=True), nn.Linear(8, 2)))
    source = np.random.default_rng(0).normal(size=(4, 3))
    with rli.patch(policy, 0, source):
        first = policy.act(np.zeros((4, 3)))
        second = policy.act(np.zeros((4, 3)))
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, policy.act(source))


# -------------------------------------------------------------------------- algebraic properties
def _identity_policy(d: int) -> rli.Policy:
    layer = nn.Linear(d, d, bias=False).double()
    with torch.no_grad():
        layer.weight.copy_(torch.eye(d, dtype=torch.float64))
    return rli.load_policy(nn.Sequential(layer))


def _apply(intervention: rli.Intervention, x: np.ndarray) -> np.ndarray:
    """The map h ↦ h' the intervention applies (the identity layer's output is h itself)."""
    with intervention, torch.no_grad():
        return intervention.policy.module(torch.as_tensor(x)).numpy()


@st.composite
def subspaces(draw):
    d = draw(st.integers(2, 10))
    k = draw(st.integers(1, d))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    return rng.normal(size=(d, k)), rng.normal(size=(draw(st.integers(1, 20)), d)) * 3.0


def _tolerance(basis: np.ndarray, x: np.ndarray) -> float:
    """Float64 error allowed when comparing with the hand projector of a possibly ill-conditioned basis."""
    return 1e-12 * np.linalg.cond(basis) ** 2 * (1 + np.abs(x).max())


@given(subspaces())
def test_projector_is_idempotent_symmetric_and_complementary(case):
    basis, x = case
    policy = _identity_policy(basis.shape[0])
    keep, cut = rli.keep_subspace(policy, 0, basis), rli.ablate(policy, 0, basis)
    px, y = _apply(keep, x), x[::-1].copy()
    np.testing.assert_allclose(px, x @ _projector(basis), atol=_tolerance(basis, x))
    np.testing.assert_allclose(_apply(keep, px), px, atol=1e-9)
    np.testing.assert_allclose(np.sum(px * y, axis=1), np.sum(x * _apply(keep, y), axis=1), atol=1e-9)
    np.testing.assert_allclose(px + _apply(cut, x), x, atol=1e-9)


@given(subspaces(), st.floats(-3, 3))
def test_ablation_scales_exactly_the_component_in_the_subspace(case, alpha):
    basis, x = case
    policy = _identity_policy(basis.shape[0])
    out = _apply(rli.ablate(policy, 0, basis, alpha=alpha), x)
    projector = _projector(basis)
    np.testing.assert_allclose(out @ projector, alpha * x @ projector, atol=_tolerance(basis, x))
    np.testing.assert_allclose(out - out @ projector, x - x @ projector, atol=_tolerance(basis, x))


@given(subspaces())
def test_reflection_is_an_involution_and_preserves_norms(case):
    basis, x = case
    policy = _identity_policy(basis.shape[0])
    flip = rli.reflect(policy, 0, basis[:, 0])
    once = _apply(flip, x)
    np.testing.assert_allclose(np.linalg.norm(once, axis=1), np.linalg.norm(x, axis=1), rtol=1e-12)
    np.testing.assert_allclose(_apply(flip, once), x, atol=1e-9)


@st.composite
def mlps(draw):
    widths = draw(st.lists(st.integers(2, 10), min_size=2, max_size=4))
    activation = draw(st.sampled_from([nn.Tanh, nn.ReLU, nn.ELU]))
    torch.manual_seed(draw(st.integers(0, 2**16)))
    layers: list[nn.Module] = []
    for fan_in, fan_out in pairwise(widths):
        layers += [nn.Linear(fan_in, fan_out), activation()]
    obs = np.random.default_rng(draw(st.integers(0, 2**16))).normal(size=(draw(st.integers(2, 60)), widths[0]))
    return rli.load_policy(nn.Sequential(*layers)), obs.astype(np.float32)


@given(mlps(), st.data())
def test_alpha_one_is_exactly_the_identity(case, data):
    policy, obs = case
    layer = data.draw(st.integers(0, len(policy.actor_layers) - 1))
    direction = np.random.default_rng(data.draw(st.integers(0, 2**16))).normal(size=policy.actor_layers[layer].width)
    clean = rli.capture(policy, obs)
    with rli.ablate(policy, layer, direction, alpha=1.0):
        same = rli.capture(policy, obs)
    for name in clean:
        np.testing.assert_array_equal(same[name], clean[name])


@given(mlps(), st.data())
def test_patching_with_the_same_observations_is_the_identity(case, data):
    policy, obs = case
    layer = data.draw(st.integers(0, len(policy.actor_layers) - 1))
    clean = rli.capture(policy, obs)
    with rli.patch(policy, layer, obs):
        patched = rli.capture(policy, obs)
    for name in clean:
        np.testing.assert_allclose(patched[name], clean[name], rtol=1e-6, atol=1e-7)


def _held_out_r2(acts: np.ndarray, target: np.ndarray) -> float:
    ridge = RidgeCV(alphas=np.logspace(-4, 4, 17))
    return float(cross_val_score(ridge, acts, target, cv=KFold(5, shuffle=True, random_state=0), scoring="r2").mean())


@given(mlps(), st.sampled_from(["scalar", "columns", "classes"]), st.data())
def test_after_leace_no_held_out_ridge_probe_recovers_the_concept(case, kind, data):
    policy, _ = case
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    obs = rng.normal(size=(data.draw(st.integers(120, 300)), policy.obs_shape[0])).astype(np.float32)
    mix = rng.normal(size=(policy.obs_shape[0], 2))
    concept = {"scalar": np.tanh(obs @ mix[:, 0]),
               "columns": obs @ mix + 0.1 * rng.normal(size=(len(obs), 2)),
               "classes": (obs @ mix[:, 0] > 0).astype(int) + (obs @ mix[:, 1] > 0.5)}[kind]
    layer = data.draw(st.integers(0, len(policy.actor_layers) - 1))
    with rli.erase(policy, layer, obs, concept):
        acts = rli.capture(policy, obs, layers=[layer])[layer]
    target = np.eye(concept.max() + 1)[concept] if kind == "classes" else concept
    assert _held_out_r2(acts, target) <= 0.01


def test_the_concept_is_decodable_before_erasure_and_not_after(policy, obs):
    concept = obs[:, 0] + 0.5 * obs[:, 1]
    acts = rli.capture(policy, obs, layers=[3])[3]
    assert _held_out_r2(acts, concept) > 0.9
    with rli.erase(policy, 3, obs, concept):
        erased = rli.capture(policy, obs, layers=[3])[3]
    assert _held_out_r2(erased, concept) <= 0.01
    assert np.abs(erased - acts).max() > 0.01


def _random_intervention(draw, policy: rli.Policy, obs: np.ndarray) -> rli.Intervention:
    layer = draw(st.integers(0, len(policy.actor_layers) - 1))
    width = policy.actor_layers[layer].width
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    basis = rng.normal(size=(width, draw(st.integers(1, width))))
    kind = draw(st.sampled_from(["ablate", "reflect", "mean_ablate", "keep_subspace", "patch", "erase"]))
    if kind == "ablate":
        return rli.ablate(policy, layer, basis, alpha=draw(st.floats(-2, 2)))
    if kind == "reflect":
        return rli.reflect(policy, layer, basis[:, 0])
    if kind == "mean_ablate":
        return rli.mean_ablate(policy, layer, basis, obs)
    if kind == "keep_subspace":
        return rli.keep_subspace(policy, layer, basis, obs=obs if draw(st.booleans()) else None)
    if kind == "patch":
        return rli.patch(policy, layer, obs[rng.permutation(len(obs))])
    return rli.erase(policy, layer, obs, obs[:, 0])


@given(mlps(), st.data())
def test_nested_interventions_restore_exactly_the_original_behaviour(case, data):
    policy, obs = case
    before, fingerprint = rli.capture(policy, obs), policy.fingerprint
    interventions = [_random_intervention(data.draw, policy, obs) for _ in range(data.draw(st.integers(1, 4)))]
    with contextlib.ExitStack() as stack:
        for intervention in interventions:
            stack.enter_context(intervention)
        assert all(intervention.active for intervention in interventions)
        rli.capture(policy, obs)
    after = rli.capture(policy, obs)
    for name in before:
        np.testing.assert_array_equal(after[name], before[name])
    assert policy.fingerprint == fingerprint and _hook_count(policy.module) == 0
    assert not any(intervention.active for intervention in interventions)


# ---------------------------------------------------------------------------------- SB3 policies
@pytest.fixture(scope="module")
def sb3():
    made: dict[str, tuple] = {}

    def get(name: str):
        if name not in made:
            model = build_sb3(name)
            made[name] = (model, rli.load_policy(model))
        return made[name]

    return get


def test_ppo_pc1_ablation_reaches_the_action_head(sb3):
    model, policy = sb3("PPO")
    obs = rli.ObsSet.sample(policy, 200, seed=0).obs
    clean = rli.capture(policy, obs, layers=[5, 6, "critic.5"])
    fingerprint = policy.fingerprint
    with rli.ablate(policy, 5, "pc1", obs=obs) as cut:
        under = rli.capture(policy, obs, layers=[5, 6, "critic.5"])
        actions = policy.act(obs)
    pc1 = PCA(n_components=1).fit(clean[5]).components_[0]
    edited = clean[5] - np.outer(clean[5] @ pc1, pc1)
    np.testing.assert_allclose(under[5], edited, atol=1e-5)
    with torch.no_grad():
        head = model.policy.action_net(torch.tensor(edited, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(under[6], head, atol=1e-5)
    np.testing.assert_allclose(actions, np.clip(head, -2, 2), atol=1e-5)
    np.testing.assert_array_equal(under["critic.5"], clean["critic.5"])
    assert cut.describe() == "zero 1 direction at actor.5 (pc1)"
    assert policy.fingerprint == fingerprint and _hook_count(policy.module) == 0


def test_sac_actor_layer_ablation(sb3):
    model, policy = sb3("SAC")
    obs = rli.ObsSet.sample(policy, 100, seed=1).obs
    clean = rli.capture(policy, obs, layers=[3])[3]
    u = np.random.default_rng(0).normal(size=8)
    with rli.ablate(policy, "actor.3", u):
        mu = rli.capture(policy, obs, layers=[4])[4]
    unit = u / np.linalg.norm(u)
    with torch.no_grad():
        expected = model.policy.actor.mu(torch.tensor(clean - np.outer(clean @ unit, unit), dtype=torch.float32))
    np.testing.assert_allclose(mu, expected.numpy(), atol=1e-5)


def test_erase_on_an_sb3_layer_by_label_name(sb3):
    _, policy = sb3("PPO")
    sampled = rli.ObsSet.sample(policy, 300, seed=2)
    obs = sampled.with_labels(angle=np.arctan2(sampled.obs[:, 1], sampled.obs[:, 0]))
    with rli.erase(policy, 3, obs, "angle") as leace:
        acts = rli.capture(policy, obs, layers=[3])[3]
    assert _held_out_r2(acts, obs.labels["angle"]) <= 0.01
    assert leace.to_dict()["concept"] == "'angle'"


def test_lstm_output_is_edited_and_its_state_and_structure_kept(sb3):
    model, policy = sb3("RecurrentPPO")
    obs = rli.ObsSet.sample(policy, 6, seed=0).obs
    u = np.random.default_rng(0).normal(size=8)
    unit = u / np.linalg.norm(u)
    clean = rli.capture(policy, obs, layers=["lstm_actor"], recurrent_state="fresh")["lstm_actor"]
    _, state = policy.step(obs)
    cut = rli.ablate(policy, "lstm_actor", u)
    with cut:
        edited = rli.capture(policy, obs, layers=["lstm_actor", 3], recurrent_state="fresh")
        cut_actions, cut_state = policy.step(obs)
        _, later_state = policy.step(obs, cut_state, np.zeros(6))
        with torch.no_grad():
            output = model.policy.lstm_actor(torch.tensor(obs)[None], tuple(s.clone() for s in state))
    expected = clean - np.outer(clean @ unit, unit)
    np.testing.assert_allclose(edited["lstm_actor"], expected, atol=1e-5)
    with torch.no_grad():
        logits = model.policy.action_net(model.policy.mlp_extractor.policy_net(torch.tensor(expected, dtype=torch.float32)))
    np.testing.assert_allclose(edited[3], logits.numpy(), atol=1e-5)
    np.testing.assert_array_equal(cut_actions, logits.numpy().argmax(axis=1))
    for carried, kept in zip(cut_state, state):
        torch.testing.assert_close(carried, kept, rtol=0, atol=0)
    assert isinstance(output, tuple) and isinstance(output[1], tuple) and len(output[1]) == 2
    assert output[0].shape == (1, 6, 8)
    np.testing.assert_allclose(output[0][0].numpy() @ unit, 0, atol=1e-6)
    assert later_state[0].shape == state[0].shape and _hook_count(policy.module) == 0


def test_patching_an_lstm_layer_makes_the_policy_act_as_on_the_source(sb3):
    _, policy = sb3("RecurrentPPO")
    obs, source = rli.ObsSet.sample(policy, 50, seed=0).obs, rli.ObsSet.sample(policy, 50, seed=1).obs
    # sampled observations belong to no trajectory: each is the first step of an episode (a fresh state)
    with rli.patch(policy, "lstm_actor", source, recurrent_state="fresh") as swap:
        patched = rli.capture(policy, obs, layers=[3], recurrent_state="fresh")[3]
    np.testing.assert_allclose(patched, rli.capture(policy, source, layers=[3], recurrent_state="fresh")[3], atol=1e-6)
    assert swap.to_dict()["recurrent_state"] == "fresh" and "fresh recurrent states" in swap.describe()


# ------------------------------------------------------------------------------------ lifecycle
BUILDERS = {
    "ablate": lambda p, obs: rli.ablate(p, 1, np.ones(6)),
    "ablate pc": lambda p, obs: rli.ablate(p, 3, "pc1-2", alpha=0.5, obs=obs),
    "reflect": lambda p, obs: rli.reflect(p, 1, np.ones(6)),
    "mean_ablate": lambda p, obs: rli.mean_ablate(p, 3, "pc1", obs),
    "keep_subspace": lambda p, obs: rli.keep_subspace(p, 1, np.eye(6)[:, :2]),
    "keep_subspace mean": lambda p, obs: rli.keep_subspace(p, 3, "pc1-3", obs=obs),
    "erase": lambda p, obs: rli.erase(p, 3, obs, (obs[:, 0] > 0).astype(int)),
    "erase label": lambda p, obs: rli.erase(p, 3, rli.ObsSet(obs, labels={"upwash": obs[:, 2]}), "upwash"),
    "patch": lambda p, obs: rli.patch(p, 1, obs[:1]),
}
DESCRIPTIONS = {
    "ablate": "zero 1 direction at actor.1",
    "ablate pc": "scale 2 directions by 0.5 at actor.3 (pc1-2)",
    "reflect": "reflect 1 direction at actor.1",
    "mean_ablate": "set 1 direction to its mean over 300 observations at actor.3 (pc1)",
    "keep_subspace": "keep only 2 directions at actor.1, the rest zeroed",
    "keep_subspace mean": "keep only 3 directions at actor.3 (pc1-3), the rest set to its mean over 300 observations",
    "erase": "LEACE erasure of a concept of 2 classes at actor.3 (rank 1, fit on 300 observations)",
    "erase label": "LEACE erasure of 'upwash' at actor.3 (rank 1, fit on 300 observations)",
    "patch": "patch actor.1 with its activations on 1 source observation",
}


@pytest.mark.parametrize("name", BUILDERS)
def test_every_intervention_says_what_it_does(policy, obs, name):
    intervention = BUILDERS[name](policy, obs)
    assert intervention.describe() == str(intervention) == DESCRIPTIONS[name]
    assert repr(intervention) == f"Intervention({intervention.kind}: {DESCRIPTIONS[name]})"
    record = intervention.to_dict()
    assert record["kind"] == name.split()[0] and record["description"] == DESCRIPTIONS[name]
    assert record["layer"].startswith("actor.") and record["module"] == intervention.layer.name
    with intervention:
        assert repr(intervention).endswith(", active)")


@pytest.mark.parametrize("name", BUILDERS)
def test_hooks_go_away_on_exit_and_on_exceptions_and_parameters_stay_bit_identical(policy, obs, name):
    intervention = BUILDERS[name](policy, obs)
    fingerprint, clean = policy.fingerprint, policy.act(obs)
    with intervention:
        assert _hook_count(policy.module) == 1
        changed = policy.act(obs)
    assert _hook_count(policy.module) == 0
    with pytest.raises(KeyError), intervention:
        policy.act(obs)
        raise KeyError("boom")
    assert _hook_count(policy.module) == 0 and not intervention.active
    assert policy.fingerprint == fingerprint
    np.testing.assert_array_equal(policy.act(obs), clean)
    assert np.abs(changed - clean).max() > 0


def test_an_intervention_is_reusable_and_not_reentrant(policy, obs):
    cut = rli.ablate(policy, 1, np.arange(6.0))
    results = []
    for _ in range(3):
        with cut:
            results.append(policy.act(obs))
    for again in results[1:]:
        np.testing.assert_array_equal(again, results[0])
    with cut:
        with pytest.raises(rli.RliError, match=r"already active; exit its `with` block before entering it again"):
            with cut:
                pass
        assert cut.active and _hook_count(policy.module) == 1
        np.testing.assert_array_equal(policy.act(obs), results[0])
    assert _hook_count(policy.module) == 0


def test_interventions_on_one_layer_compose_in_entry_order(model, policy, obs):
    source = obs[::-1].copy()
    swap, cut = rli.patch(policy, 1, source), rli.ablate(policy, 1, np.ones(6))
    unit = np.ones(6) / np.sqrt(6)
    source_acts = _by_hand(model, source, upto=1)
    with swap, cut:
        patched_then_cut = policy.act(obs)
    with cut, swap:
        cut_then_patched = policy.act(obs)
    expected = _by_hand(model, obs, at=1, edit=lambda h: source_acts - np.outer(source_acts @ unit, unit))
    np.testing.assert_allclose(patched_then_cut, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(cut_then_patched, policy.act(source), rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------------------- errors
ERRORS = [
    (lambda p, obs: rli.ablate(p, 9, np.ones(6)), r"out of range; valid layers are indices 0\.\.4"),
    (lambda p, obs: rli.ablate(p, "nope", np.ones(6)), "unknown layer 'nope'"),
    (lambda p, obs: rli.ablate(p, 1, np.ones(5)), r"shape \(5,\) but the layer's activations have 6 dimensions"),
    (lambda p, obs: rli.ablate(p, 1, np.ones((2, 6))), r"looks transposed: pass its transpose \(6, 2\)"),
    (lambda p, obs: rli.ablate(p, 1, np.zeros(6)), "the direction is the zero vector"),
    (lambda p, obs: rli.ablate(p, 1, [1, 2, np.nan, 0, 0, 0]), "1 NaN/inf"),
    (lambda p, obs: rli.ablate(p, 1, np.c_[np.ones(6), -np.ones(6)]), "linearly dependent"),
    (lambda p, obs: rli.ablate(p, 1, np.ones(6), alpha=np.nan), "alpha must be a finite number"),
    (lambda p, obs: rli.ablate(p, 1, np.ones(6), alpha="0"), "alpha must be a finite number"),
    (lambda p, obs: rli.ablate(p, 1, "pc1"), r"needs observations to fit PCA on; pass obs=\.\.\."),
    (lambda p, obs: rli.keep_subspace(p, 1, "pc1-2"), r"pass obs=\.\.\."),
    (lambda p, obs: rli.ablate(p, 1, "pc0", obs=obs), "numbered from 1"),
    (lambda p, obs: rli.ablate(p, 1, "pc3-2", obs=obs), "numbered from 1"),
    (lambda p, obs: rli.ablate(p, 1, "pc7", obs=obs), r"between 1 and min\(n, d\) = 6"),
    (lambda p, obs: rli.ablate(p, 1, "first pc", obs=obs), "unknown direction 'first pc'"),
    (lambda p, obs: rli.reflect(p, 1, np.zeros(6)), "zero vector"),
    (lambda p, obs: rli.mean_ablate(p, 1, np.ones(6), np.zeros((4, 2))), r"shape \(4, 2\) but this policy takes"),
    (lambda p, obs: rli.erase(p, 1, obs, "upwash"), "label name, but the observations are a plain array"),
    (lambda p, obs: rli.erase(p, 1, obs, np.ones(300)), "constant over these observations"),
    (lambda p, obs: rli.erase(p, 1, obs, np.ones(10)), r"shape \(10,\) for 300 observations"),
    (lambda p, obs: rli.patch(p, 1, np.full((2, 3), np.nan)), "NaN/inf"),
]


@pytest.mark.parametrize(("build", "message"), ERRORS)
def test_mistakes_are_caught_when_the_intervention_is_built(policy, obs, build, message):
    with pytest.raises(rli.RliError, match=message) as info:
        build(policy, obs)
    assert "\n" not in str(info.value)
    assert _hook_count(policy.module) == 0


def test_a_layer_that_never_runs_cannot_be_intervened_on(sb3):
    _, policy = sb3("SAC")
    with pytest.raises(rli.RliError, match="does not run when the policy acts"):
        rli.ablate(policy, "critic_target.qf0.0", np.ones(8))


def test_a_patch_with_another_batch_size_fails_when_called(policy, obs):
    with rli.patch(policy, 1, obs[:3]):
        with pytest.raises(rli.RliError, match="holds 3 source activations but the layer ran on a batch of 5; "
                                               r"run the policy on exactly 3 observations at a time \(e\.g\. chunk_size=3"):
            policy.act(obs[:5])
        np.testing.assert_allclose(policy.act(obs[:3]), policy.act(obs[:3]))
    assert _hook_count(policy.module) == 0
