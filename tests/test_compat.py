"""rli.compat against rl_interrogate 0.1.0 itself: same inputs through both, same outputs.

rl_interrogate is a test-only dependency (the [dev] extra). Each library gets its own
copy of the network (same seed), so hooks of one never act on the other.
"""

from __future__ import annotations

import inspect
import re
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import rl_interrogate
import rl_interrogate.ablation
import rl_interrogate.env_wrappers
import rl_interrogate.patching
import rl_interrogate.pca_utils
import rl_interrogate.polarity
import rl_interrogate.probing
import rl_interrogate.visualization
import torch
from hypothesis import given
from hypothesis import strategies as st
from matplotlib.figure import Figure
from torch import nn

import rli
import rli.compat
import rli.compat.polarity
from tests.conftest import build_sb3
from tests.doc_examples import python_blocks, run_blocks

ROOT = Path(__file__).parent.parent
SUBMODULES = ("probing", "ablation", "patching", "polarity", "pca_utils", "visualization", "env_wrappers")


def make_net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(28, 64), nn.ELU(), nn.Linear(64, 64), nn.ELU(), nn.Linear(64, 32), nn.ELU(),
                         nn.Linear(32, 4))


def make_obs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, 28)).astype(np.float32)
    y = np.sin(2 * obs[:, 12]) + 0.5 * obs[:, 9] * obs[:, 10] + 0.1 * rng.normal(size=n)
    return obs, y


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return make_obs(3000)


# ------------------------------------------------------------------------------------------ API surface
def _signature(obj: object) -> list[tuple[str, object, object]]:
    params = inspect.signature(obj).parameters.values()
    return [(p.name, p.kind, p.default) for p in params]


def test_every_public_name_is_there_with_the_same_signature():
    assert rli.compat.__all__ == rl_interrogate.__all__
    for name in rl_interrogate.__all__:
        ours, theirs = getattr(rli.compat, name), getattr(rl_interrogate, name)
        assert _signature(ours) == _signature(theirs), name
        if inspect.isclass(theirs):
            methods = {m for m, _ in inspect.getmembers(theirs, inspect.isfunction) if not m.startswith("_")}
            assert methods <= set(dir(ours)), (name, methods - set(dir(ours)))
            for method in methods:
                assert _signature(getattr(ours, method)) == _signature(getattr(theirs, method)), (name, method)


def test_submodule_paths_match():
    for sub in SUBMODULES:
        theirs = getattr(rl_interrogate, sub)
        ours = getattr(rli.compat, sub)
        public = {n for n, v in vars(theirs).items() if not n.startswith("_") and getattr(v, "__module__", None)
                  == theirs.__name__}
        assert public <= set(vars(ours)), (sub, public - set(vars(ours)))
        for name in public:
            assert _signature(getattr(ours, name)) == _signature(getattr(theirs, name)), (sub, name)
    for constant in ("UPWASH_IDX", "REL_LEAD_SLICE", "LATERAL_IDX"):
        assert getattr(rli.compat.NoisyObservationWrapper, constant) == \
            getattr(rl_interrogate.NoisyObservationWrapper, constant)


def test_every_name_points_to_its_rigorous_rli_call():
    names = [*rli.compat.__all__, "ddpg_polarity_test"]
    for name in names:
        obj = getattr(rli.compat, name, None) or getattr(rli.compat.polarity, name)
        match = re.search(r"Rigorous equivalent: (.*)", inspect.getdoc(obj))
        assert match and "rli." in match.group(1), name


def test_migration_guide_covers_every_name_and_its_examples_run(tmp_path, monkeypatch):
    text = (ROOT / "docs" / "migration.md").read_text()
    for name in [*rli.compat.__all__, "ddpg_polarity_test"]:
        assert f"`{name}" in text or f".{name}" in text, name
    blocks = python_blocks(text)
    assert blocks
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_blocks(blocks, "docs/migration.md", tmp_path, monkeypatch, examples=False)


# ---------------------------------------------------------------------------------------------- probes
@pytest.mark.parametrize("layer", [1, 3, 5, 6, -2])
def test_linear_probe_reproduces_r2_coefficients_and_activations(data, layer):
    obs, y = data
    net = make_net()
    theirs = rl_interrogate.LinearProbe().fit(net, layer, obs, y)
    ours = rli.compat.LinearProbe().fit(net, layer, obs, y)
    assert isinstance(ours.score(), float)
    assert abs(ours.score() - theirs.score()) <= 1e-6
    np.testing.assert_allclose(ours._probe.coef_, theirs._probe.coef_, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ours._probe.intercept_, theirs._probe.intercept_, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ours._activations, theirs._activations, rtol=0, atol=1e-6)
    assert ours._activations.dtype == theirs._activations.dtype


def test_probe_inputs_as_tensors_float64_and_lists(data):
    obs, y = data
    net = make_net()
    cases = [
        (torch.from_numpy(obs), y, {}),
        (obs.astype(np.float64), y.tolist(), {"test_size": 0.3, "seed": 7}),
        (torch.from_numpy(obs).double(), torch.from_numpy(y).float(), {"seed": 3}),
    ]
    for inputs, labels, kwargs in cases:
        theirs = rl_interrogate.LinearProbe().fit(net, 5, inputs, labels, **kwargs).score()
        ours = rli.compat.LinearProbe().fit(net, 5, inputs, labels, **kwargs).score()
        assert abs(ours - theirs) <= 1e-6


def test_fit_score_on_arrays(data):
    obs, y = data
    x = obs[:, :20].astype(np.float64)
    assert rli.compat.LinearProbe().fit_score(x, y) == rl_interrogate.LinearProbe().fit_score(x, y)
    assert rli.compat.LinearProbe().fit_score(x, y, 0.5, 1) == rl_interrogate.LinearProbe().fit_score(x, y, 0.5, 1)
    tx, ty = torch.from_numpy(obs[:, :20]), torch.from_numpy(y)
    assert rli.compat.LinearProbe().fit_score(tx, ty) == rl_interrogate.LinearProbe().fit_score(tx, ty)
    lasso_ours, lasso_theirs = rli.compat.LassoProbe(), rl_interrogate.LassoProbe()
    assert lasso_ours.fit_score(x[:600], y[:600]) == lasso_theirs.fit_score(x[:600], y[:600])
    assert lasso_ours.score() == lasso_theirs.score()
    np.testing.assert_array_equal(lasso_ours._probe.coef_, lasso_theirs._probe.coef_)


def test_mlp_and_lasso_probes_reproduce_the_reference(data):
    obs, y = data
    obs, y = obs[:500], y[:500]
    net = make_net()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mlp = rli.compat.MLPProbe().fit(net, 5, obs, y)
        lasso = rli.compat.LassoProbe().fit(net, 3, obs, y)
    assert not caught  # a silent drop-in: the reference silences these fits too
    assert abs(mlp.score() - rl_interrogate.MLPProbe().fit(net, 5, obs, y).score()) <= 1e-6
    theirs = rl_interrogate.LassoProbe().fit(net, 3, obs, y)
    r2, nonzero = lasso.score()
    assert isinstance(nonzero, int) and nonzero == theirs.score()[1]
    assert abs(r2 - theirs.score()[0]) <= 1e-6
    np.testing.assert_allclose(lasso._probe.coef_, theirs._probe.coef_, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ["LinearProbe", "MLPProbe", "LassoProbe"])
def test_score_before_fit_raises_like_the_reference(name):
    for module in (rl_interrogate, rli.compat):
        with pytest.raises(RuntimeError, match="fit"):
            getattr(module, name)().score()


def test_fit_returns_the_probe_itself(data):
    obs, y = data
    probe = rli.compat.LinearProbe()
    assert probe.fit(make_net(), 1, obs[:200], y[:200]) is probe


def test_mismatched_labels_raise_value_error_in_both(data):
    obs, y = data
    for module in (rl_interrogate, rli.compat):
        with pytest.raises(ValueError):
            module.LinearProbe().fit(make_net(), 1, obs[:100], y[:90])


def test_untrained_baseline_matches_and_draws_the_same_initialisation(data):
    obs, y = data

    def factory(hidden: int) -> nn.Sequential:
        return nn.Sequential(nn.Linear(28, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())

    results, next_draws = [], []
    for module in (rl_interrogate, rli.compat):
        torch.manual_seed(11)
        results.append(module.UntrainedBaseline().run(factory, {"hidden": 48}, 3, obs, y))
        next_draws.append(torch.rand(3))
    assert list(results[1]) == [3]
    assert abs(results[1][3] - results[0][3]) <= 1e-6
    assert torch.equal(next_draws[0], next_draws[1])  # the global RNG was consumed identically


def test_probing_leaves_the_network_as_it_was(data):
    obs, y = data
    net = make_net().train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rli.compat.LinearProbe().fit(net, 5, obs, y)
    assert net.training and all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert not any(m._forward_hooks for m in net.modules())


# ---------------------------------------------------------------------------------------------- ablation
def _outputs(net: nn.Module, x: torch.Tensor, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(layer activations, network output) of one forward pass."""
    seen = []
    handle = net[layer].register_forward_hook(lambda _m, _i, out: seen.append(out.detach().clone()))
    try:
        with torch.no_grad():
            out = net(x)
    finally:
        handle.remove()
    return seen[0], out


def _pca_basis(x: torch.Tensor, layer: int, k: int) -> np.ndarray:
    acts, _ = _outputs(make_net(), x, layer)
    return rl_interrogate.fit_pca(acts.numpy(), k)[0]


@pytest.fixture(scope="module")
def batch(data) -> torch.Tensor:
    return torch.from_numpy(data[0][:256])


@pytest.mark.parametrize("alpha", [0.0, 0.5, -1.0])
def test_ablation_with_a_subspace_matches(batch, alpha):
    basis = _pca_basis(batch, 3, 3)
    results = []
    for module in (rl_interrogate, rli.compat):
        net = make_net()
        hook = module.AblationHook(net, 3, basis, alpha)
        results.append(_outputs(net, batch, 3))
        hook.remove()
    clean = _outputs(make_net(), batch, 3)
    for ours, theirs in zip(results[1], results[0]):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    if alpha == 0.0:
        assert float((results[1][0].double() @ torch.from_numpy(basis).double()).abs().max()) < 1e-5
    assert not torch.allclose(results[1][0], clean[0])


@given(st.integers(1, 6), st.floats(-2, 2), st.integers(0, 2**32 - 1))
def test_ablation_matches_for_any_subspace_and_alpha(k, alpha, seed):
    x = torch.from_numpy(make_obs(64, seed % 1000)[0])
    basis = np.linalg.qr(np.random.default_rng(seed).normal(size=(32, k)))[0]
    results = []
    for module in (rl_interrogate, rli.compat):
        net = make_net()
        hook = module.AblationHook(net, 5, basis, alpha)
        results.append(_outputs(net, x, 5))
        hook.remove()
    for ours, theirs in zip(results[1], results[0]):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_ablation_with_a_direction_keyword_matches(batch, data):
    obs, y = data
    direction = rl_interrogate.LinearProbe().fit(make_net(), 5, obs, y)._probe.coef_
    results = []
    for module in (rl_interrogate, rli.compat):
        net = make_net()
        hook = module.AblationHook(net, layer_idx=5, direction=direction)
        results.append(_outputs(net, batch, 5))
        hook.remove()
    for ours, theirs in zip(results[1], results[0]):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_ablation_with_a_non_orthonormal_w_uses_the_reference_formula(batch):
    w = np.random.default_rng(1).normal(size=(64, 2)).astype(np.float32)
    results = []
    for module in (rl_interrogate, rli.compat):
        net = make_net()
        hook = module.AblationHook(net, 1, W=w, alpha=0.25)
        results.append(_outputs(net, batch, 1))
        hook.remove()
    assert torch.equal(results[1][0], results[0][0]) and torch.equal(results[1][1], results[0][1])


def test_ablation_of_a_zero_direction_changes_nothing(batch):
    net = make_net()
    clean = _outputs(net, batch, 5)
    hook = rli.compat.AblationHook(net, 5, direction=np.zeros(32))
    assert all(torch.equal(a, b) for a, b in zip(_outputs(net, batch, 5), clean))
    hook.remove()


def test_apply_and_remove_follow_the_reference_step_by_step(batch):
    """Constructor alpha, apply(α) inside, back after; remove(); apply after remove re-attaches the hook after it."""
    direction = np.random.default_rng(2).normal(size=64)
    traces = []
    for module in (rl_interrogate, rli.compat):
        net = make_net()
        trace = []
        hook = module.AblationHook(net, 3, direction=direction, alpha=0.0)
        trace.append(_outputs(net, batch, 3)[1])
        with hook.apply(alpha=0.5):
            trace.append(_outputs(net, batch, 3)[1])
        trace.append(_outputs(net, batch, 3)[1])
        hook.remove()
        hook.remove()
        trace.append(_outputs(net, batch, 3)[1])
        with hook.apply(1.0):
            trace.append(_outputs(net, batch, 3)[1])
        trace.append(_outputs(net, batch, 3)[1])
        with pytest.raises(KeyError), hook.apply(0.25):
            raise KeyError("an error inside the block")
        trace.append(_outputs(net, batch, 3)[1])
        hook.remove()
        assert not any(m._forward_hooks for m in net.modules())
        traces.append(trace)
    clean = _outputs(make_net(), batch, 3)[1]
    for ours, theirs in zip(traces[1], traces[0]):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    ours = traces[1]
    assert torch.allclose(ours[3], clean) and torch.allclose(ours[4], clean)
    assert not torch.allclose(ours[5], clean) and torch.allclose(ours[5], ours[0])  # active again, at alpha 0


def test_ablation_reaches_rli_and_leaves_parameters_bit_identical(batch):
    net = make_net()
    policy = rli.load_policy(net)
    fingerprint = policy.fingerprint
    direction = np.eye(32)[0]
    hook = rli.compat.AblationHook(net, 5, direction=direction)
    assert np.all(rli.capture(policy, batch.numpy(), [5])[5][:, 0] == 0)
    hook.remove()
    assert policy.fingerprint == fingerprint


def test_ablation_rejects_a_basis_of_the_wrong_width_when_built():
    for basis in (np.ones(63), np.random.default_rng(0).normal(size=(63, 2))):
        with pytest.raises(rli.RliError, match="outputs 64 values"):
            rli.compat.AblationHook(make_net(), 1, basis)


def test_ablation_requires_a_basis():
    for module in (rl_interrogate, rli.compat):
        with pytest.raises(ValueError, match="direction"):
            module.AblationHook(make_net(), 1)


# ---------------------------------------------------------------------------------------------- patching
def _patched_runs(module, x: torch.Tensor, counterfactual: torch.Tensor, layer: int) -> list[torch.Tensor]:
    net = make_net()
    patcher = module.ActivationPatcher(net, layer, counterfactual)
    with torch.no_grad():
        runs = [net(x)]
        net[0].weight.add_(0.05)  # the counterfactual is recomputed on every call: it follows the change
        runs.append(net(x))
    ablation = module.AblationHook(net, 1, direction=np.ones(64))
    with torch.no_grad():
        runs.append(net(x))  # hooks before the patched layer act on the counterfactual pass
    ablation.remove()
    patcher.remove()
    with torch.no_grad():
        runs.append(net(x))
    assert not any(m._forward_hooks for m in net.modules())
    return runs


@pytest.mark.parametrize("rows", [1, 32])
def test_patching_matches_the_reference(batch, rows):
    x = batch[:32]
    counterfactual = batch[100:100 + rows]
    theirs = _patched_runs(rl_interrogate, x, counterfactual, 3)
    ours = _patched_runs(rli.compat, x, counterfactual, 3)
    assert [r.shape for r in ours] == [r.shape for r in theirs]
    assert ours[0].shape[0] == rows  # one counterfactual row gives one output row, as in the reference
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(ours[0], ours[1]) and not torch.allclose(ours[1], ours[2])


def test_ablation_downstream_of_an_active_patch_matches(batch):
    outs = []
    for module in (rl_interrogate, rli.compat):
        net = make_net()
        patcher = module.ActivationPatcher(net, 3, batch[:1])
        hook = module.AblationHook(net, 5, direction=np.arange(32.0), alpha=0.5)
        with torch.no_grad():
            outs.append(net(batch[:8]))
        hook.remove()
        patcher.remove()
    assert outs[1].shape == outs[0].shape == (1, 4)
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-6)


def test_patching_with_one_unbatched_counterfactual(batch):
    counterfactual = batch[7]
    outs = []
    for module in (rl_interrogate, rli.compat):
        net = make_net()
        patcher = module.ActivationPatcher(net, 5, counterfactual)
        with torch.no_grad():
            outs.append(net(batch[:4]))
        patcher.remove()
    assert outs[1].shape == outs[0].shape == (4,)
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------- polarity
@pytest.mark.parametrize("indices", [[12], [12, 9, -16], [12, 12], []])
def test_polarity_test_matches(data, indices):
    obs, y = data
    theirs = rl_interrogate.PolarityTest(make_net(), indices, obs).run(5, y)
    ours = rli.compat.PolarityTest(make_net(), indices, obs).run(5, y)
    assert list(ours) == list(theirs) == ["r2_normal", "r2_inverted", "delta_r2"]
    for key in ours:
        assert isinstance(ours[key], float)
        assert abs(ours[key] - theirs[key]) <= 1e-6, key
    if indices in ([12, 12], []):  # listed twice = negated twice = not at all, as in the reference
        assert ours["r2_inverted"] == ours["r2_normal"]
    else:
        assert ours["delta_r2"] < 0


def test_polarity_test_does_not_modify_the_dataset(data):
    obs, y = data
    copy = obs.copy()
    rli.compat.PolarityTest(make_net(), [12], obs).run(1, y)
    np.testing.assert_array_equal(obs, copy)


def test_polarity_test_rejects_an_index_outside_the_observation(data):
    for module in (rl_interrogate, rli.compat):
        with pytest.raises(IndexError):
            module.PolarityTest(make_net(), [28], data[0])


@pytest.fixture(scope="module")
def td3_policy():
    return build_sb3("TD3").policy


def test_ddpg_polarity_test_matches(td3_policy):
    obs = np.random.default_rng(0).uniform(-1, 1, size=(300, 3)).astype(np.float32)
    direction = np.random.default_rng(1).normal(size=8)
    for layer_name in ("1", "3"):
        theirs = rl_interrogate.polarity.ddpg_polarity_test(td3_policy, obs, 1, direction, layer_name)
        ours = rli.compat.polarity.ddpg_polarity_test(td3_policy, obs, 1, direction, layer_name)
        assert list(ours) == list(theirs)
        for key, value in theirs.items():
            assert type(ours[key]) is type(value), key
            if isinstance(value, np.ndarray):
                np.testing.assert_allclose(ours[key], value, rtol=1e-6, atol=1e-7)
            elif isinstance(value, float):
                assert abs(ours[key] - value) <= 1e-6, key
            else:
                assert ours[key] == value, key
    for module in (rl_interrogate, rli.compat):
        with pytest.raises(ValueError, match="Probe direction dim"):
            module.polarity.ddpg_polarity_test(td3_policy, obs, 1, np.ones(5), "1")


def test_ddpg_polarity_test_fails_if_the_actor_changes_during_it(td3_policy):
    obs = np.random.default_rng(0).uniform(-1, 1, size=(50, 3)).astype(np.float32)
    weight = td3_policy.actor.mu[0].weight
    original = weight.detach().clone()

    def drift(_module, _inputs):
        with torch.no_grad():
            weight.add_(1e-3)

    for module in (rl_interrogate, rli.compat):
        handle = td3_policy.actor.mu[0].register_forward_pre_hook(drift)
        try:
            with pytest.raises(AssertionError, match="parameters changed"):
                module.polarity.ddpg_polarity_test(td3_policy, obs, 1, np.ones(8), "1")
        finally:
            handle.remove()
            with torch.no_grad():
                weight.copy_(original)


# ---------------------------------------------------------------------------------------------------- PCA
def test_pca_bases_ratios_and_projections_match(batch):
    acts = _outputs(make_net(), batch, 3)[0].numpy()
    for k in (1, 10):
        ours, ours_ratio = rli.compat.fit_pca(acts, k)
        theirs, theirs_ratio = rl_interrogate.fit_pca(acts, k=k)
        assert ours.shape == theirs.shape == (64, k) and ours.dtype == theirs.dtype == np.float32
        signs = np.sign(np.sum(ours * theirs, axis=0))
        assert np.all(signs != 0)
        np.testing.assert_allclose(ours * signs, theirs, atol=2e-4)
        np.testing.assert_allclose(ours_ratio, theirs_ratio, rtol=1e-4)
        assert ours_ratio.dtype == theirs_ratio.dtype
        projected = rli.compat.project_subspace(acts, theirs)
        reference = rl_interrogate.project_subspace(acts, theirs)
        assert projected.shape == reference.shape and projected.dtype == reference.dtype
        np.testing.assert_allclose(projected, reference, rtol=1e-5, atol=1e-5)
    single = rli.compat.project_subspace(acts.astype(np.float64), theirs[:, 0])
    assert single.shape == (len(acts),) and single.dtype == np.float64
    np.testing.assert_allclose(single, rl_interrogate.project_subspace(acts.astype(np.float64), theirs[:, 0]))


def test_pca_of_float64_activations_is_float64(batch):
    acts = _outputs(make_net(), batch, 1)[0].numpy().astype(np.float64)
    ours, theirs = rli.compat.fit_pca(acts, 3), rl_interrogate.fit_pca(acts, 3)
    assert ours[0].dtype == theirs[0].dtype == np.float64
    np.testing.assert_allclose(np.abs(ours[0]), np.abs(theirs[0]), atol=1e-8)


# ------------------------------------------------------------------------------------------- env wrapper
class _Walk(gym.Env):
    """Observations that change at every step (28 values), optionally as torch tensors or batches of one."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (28,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)

    def __init__(self, as_tensor: bool = False, batch_of_one: bool = False) -> None:
        self.as_tensor, self.batch_of_one = as_tensor, batch_of_one

    def _obs(self):
        obs = self._rng.normal(size=(1, 28) if self.batch_of_one else 28)
        return torch.from_numpy(obs) if self.as_tensor else obs

    def reset(self, *, seed=None, options=None):
        self._rng = np.random.default_rng(seed)
        return self._obs(), {"seed": seed}

    def step(self, action):
        return self._obs(), float(np.sum(action)), False, False, {}


@pytest.mark.parametrize("env_kwargs", [{}, {"as_tensor": True}, {"batch_of_one": True}])
@pytest.mark.parametrize("wrapper_kwargs", [{}, {"lateral_noise_std": 0.3, "sensor_zero_prob": 0.5,
                                                 "rel_lead_delay": 3, "seed": 7}])
def test_noisy_wrapper_gives_identical_observations(env_kwargs, wrapper_kwargs):
    envs = [module.NoisyObservationWrapper(_Walk(**env_kwargs), **wrapper_kwargs)
            for module in (rl_interrogate, rli.compat)]
    for episode in range(3):
        first = [env.reset(seed=episode) for env in envs]
        assert first[1][1] == first[0][1]
        np.testing.assert_array_equal(first[1][0], first[0][0])
        assert first[1][0].dtype == np.float32
        for _ in range(40):
            steps = [env.step(np.ones(4)) for env in envs]
            assert len(steps[1]) == 5 and steps[1][1:] == steps[0][1:]
            np.testing.assert_array_equal(steps[1][0], steps[0][0])
    assert envs[1]._rng.random() == envs[0]._rng.random()


@given(st.floats(0, 1), st.floats(0, 1), st.integers(1, 5), st.integers(0, 2**32 - 1))
def test_noisy_wrapper_matches_for_any_setting(noise, p, delay, seed):
    envs = [module.NoisyObservationWrapper(_Walk(), noise, p, delay, seed) for module in (rl_interrogate, rli.compat)]
    observations = [[env.reset(seed=seed)[0]] + [env.step(np.zeros(4))[0] for _ in range(8)] for env in envs]
    np.testing.assert_array_equal(np.array(observations[1]), np.array(observations[0]))


def test_noisy_wrapper_delays_zeroes_and_perturbs_only_its_entries():
    env = rli.compat.NoisyObservationWrapper(_Walk(), lateral_noise_std=0.1, sensor_zero_prob=1.0, rel_lead_delay=2)
    raw = _Walk()
    seen = [env.reset(seed=0)[0]]
    raws = [raw.reset(seed=0)[0]]
    for _ in range(5):
        seen.append(env.step(np.zeros(4))[0])
        raws.append(raw.step(np.zeros(4))[0])
    untouched = [i for i in range(28) if i not in (9, 10, 11, 12, 15)]
    for t, (obs, original) in enumerate(zip(seen, raws)):
        np.testing.assert_array_equal(obs[untouched], original[untouched].astype(np.float32))
        expected = raws[t - 2][9:12].astype(np.float32) if t >= 2 else np.zeros(3, np.float32)
        np.testing.assert_array_equal(obs[9:12], expected)
        assert obs[12] == 0.0 and obs[15] != np.float32(original[15])


def test_noisy_wrapper_rejects_a_delay_it_cannot_hold():
    with pytest.raises(rli.RliError, match="rel_lead_delay"):
        rli.compat.NoisyObservationWrapper(_Walk(), rel_lead_delay=0)


# ---------------------------------------------------------------------------------------------- figures
def _describe(fig: Figure) -> dict:
    axes = []
    for ax in fig.axes:
        legend = ax.get_legend()
        axes.append({
            "title": ax.get_title(), "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(),
            "legend": (legend.get_title().get_text(), [t.get_text() for t in legend.get_texts()]) if legend else None,
            "images": [(tuple(im.get_extent()), im.get_cmap().name, im.get_clim(), np.asarray(im.get_array()).tolist())
                       for im in ax.images],
            "lines": [(np.asarray(line.get_xdata()).tolist(), np.asarray(line.get_ydata()).tolist(), line.get_marker(),
                       line.get_label()) for line in ax.lines],
            "scatter": [(c.get_offsets().tolist(), np.asarray(c.get_array()).tolist(), c.get_cmap().name)
                        for c in ax.collections if c.get_offsets().size > 2],
            "grid": any(line.get_visible() for line in ax.get_xgridlines()),
        })
    return {"size": fig.get_size_inches().tolist(), "axes": axes}


@pytest.fixture
def saved_figures(monkeypatch):
    """Every figure saved with Figure.savefig (what plt.savefig calls too), still drawable after plt.close."""
    figures: list[Figure] = []
    original = Figure.savefig

    def spy(self, *args, **kwargs):
        figures.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    return figures


def test_figures_have_the_reference_panels_titles_and_labels(tmp_path, saved_figures):
    gx, gy = np.meshgrid(np.linspace(-6, 0, 8), np.linspace(-3, 3, 12), indexing="ij")
    true = np.sin(gy) * gx
    pred = true.ravel() + 0.1
    points = np.random.default_rng(0).normal(size=(60, 2))
    calls = [
        ("plot_probe_heatmap", (gx, gy, pred, true)),
        ("plot_ablation_curve", ([0.0, 0.5, 1.0], np.array([[0.7, 0.8, 1.0], [0.4, 0.6, 1.0]]), [1, 5])),
        ("plot_pca_scatter", (points, points[:, 1])),
    ]
    for name, args in calls:
        descriptions = []
        for label, module in (("theirs", rl_interrogate), ("ours", rli.compat)):
            path = tmp_path / f"{name}_{label}.png"
            assert getattr(module, name)(*args, str(path)) is None
            assert path.stat().st_size > 0
            descriptions.append(_describe(saved_figures[-1]))
        assert descriptions[1] == descriptions[0], name
        assert any(ax["title"] for ax in descriptions[1]["axes"])


def test_figures_leave_the_matplotlib_backend_alone(tmp_path):
    import matplotlib

    original = matplotlib.get_backend()
    try:
        matplotlib.use("svg")
        rli.compat.plot_pca_scatter(np.zeros((3, 2)), np.arange(3.0), str(tmp_path / "scatter.png"))
        assert matplotlib.get_backend() == "svg"  # rl_interrogate would have switched it to Agg
    finally:
        matplotlib.use(original)
