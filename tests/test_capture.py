"""rli.capture / rli.iter_activations: exact activations, hooks gone, parameters and modes untouched."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import rli

ACTIVATIONS = [nn.Tanh, nn.ReLU, nn.ELU, nn.Sigmoid]


def _hook_count(module: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in module.modules())


def _state(module: nn.Module) -> dict[str, bytes]:
    return {k: v.detach().numpy().tobytes() for k, v in module.state_dict().items()}


@st.composite
def mlp_and_layers(draw):
    widths = draw(st.lists(st.integers(1, 12), min_size=2, max_size=5))
    activation = draw(st.sampled_from(ACTIVATIONS))
    layers: list[nn.Module] = []
    for fan_in, fan_out in pairwise(widths):
        layers += [nn.Linear(fan_in, fan_out), activation()]
    torch.manual_seed(draw(st.integers(0, 2**16)))
    model = nn.Sequential(*layers)
    chosen = draw(st.lists(st.integers(0, len(layers) - 1), min_size=1, max_size=len(layers), unique=True))
    n = draw(st.integers(1, 40))
    chunk = draw(st.integers(1, 50))
    obs = np.random.default_rng(draw(st.integers(0, 2**16))).normal(size=(n, widths[0])).astype(np.float32)
    return model, chosen, obs, chunk


@given(mlp_and_layers())
def test_capture_equals_slicing_the_forward_pass(case):
    model, chosen, obs, chunk = case
    policy = rli.load_policy(model)
    before = _state(model)
    acts = rli.capture(policy, obs, layers=chosen, chunk_size=chunk)
    for index in chosen:
        expected = model[: index + 1](torch.as_tensor(obs)).detach().numpy()
        np.testing.assert_allclose(acts[index], expected, rtol=1e-6, atol=1e-6)
        assert acts[index].dtype == np.float32
    assert _hook_count(model) == 0
    assert _state(model) == before


@given(mlp_and_layers())
def test_streaming_equals_capture(case):
    model, chosen, obs, chunk = case
    policy = rli.load_policy(model)
    whole = rli.capture(policy, obs, layers=chosen)
    parts = list(rli.iter_activations(policy, obs, layers=chosen, chunk_size=chunk))
    assert [p.start for p in parts] == list(range(0, len(obs), chunk))
    for index in chosen:
        name = policy.layer(index).name
        # BLAS kernels differ with batch size, so equal up to float32 rounding
        np.testing.assert_allclose(np.concatenate([p.activations[name] for p in parts]), whole[index], atol=1e-6)
    assert _hook_count(model) == 0


def test_streaming_from_a_generator_and_a_memmap(tmp_path):
    policy = rli.load_policy(nn.Sequential(nn.Linear(3, 4), nn.Tanh()))
    obs = np.random.default_rng(0).normal(size=(100, 3)).astype(np.float32)
    np.save(tmp_path / "obs.npy", obs)
    mapped = np.load(tmp_path / "obs.npy", mmap_mode="r")
    expected = rli.capture(policy, obs, layers=[1])[1]
    from_map = np.concatenate([c.activations["1"] for c in rli.iter_activations(policy, mapped, [1], chunk_size=7)])
    from_gen = np.concatenate([c.activations["1"] for c in rli.iter_activations(policy, (obs[i:i + 30] for i in
                                                                                         range(0, 100, 30)), [1])])
    np.testing.assert_allclose(from_map, expected, atol=1e-6)
    np.testing.assert_allclose(from_gen, expected, atol=1e-6)


def test_hooks_removed_and_modes_restored_when_the_forward_pass_raises():
    class Explodes(nn.Module):
        armed = False

        def forward(self, x):
            if self.armed:
                raise RuntimeError("boom")
            return x

    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), Explodes(), nn.Linear(4, 2))
    policy = rli.load_policy(model)
    assert policy.layers
    model.train()
    model[2].armed = True
    before = _state(model)
    with pytest.raises(RuntimeError, match="boom"):
        rli.capture(policy, np.zeros((5, 3)), layers=[0, 3])
    assert _hook_count(model) == 0
    assert all(m.training for m in model.modules())
    assert _state(model) == before


def test_capture_stops_after_the_deepest_requested_layer():
    calls = []

    class Spy(nn.Module):
        def forward(self, x):
            calls.append(1)
            return x

    policy = rli.load_policy(nn.Sequential(nn.Linear(3, 4), nn.Tanh(), Spy(), nn.Linear(4, 2)))
    assert policy.layers
    calls.clear()
    rli.capture(policy, np.zeros((10, 3)), layers=[1])
    assert calls == []
    rli.capture(policy, np.zeros((10, 3)), layers=[3])
    assert calls == [1]


def test_inplace_activation_does_not_corrupt_the_captured_linear():
    model = nn.Sequential(nn.Linear(3, 6), nn.ReLU(inplace=True), nn.Linear(6, 2))
    policy = rli.load_policy(model)
    obs = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    pre = rli.capture(policy, obs, layers=[0, 1])
    assert (pre[0] < 0).any()
    np.testing.assert_allclose(pre[0], model[0](torch.as_tensor(obs)).detach().numpy(), atol=1e-6)


def test_critic_layers_capture_the_value_trunk(sb3_zip):
    model, path = sb3_zip("PPO")
    policy = rli.load_policy(path)
    obs = np.random.default_rng(0).normal(size=(9, 3)).astype(np.float32)
    acts = rli.capture(policy, obs, layers=["critic.5", "actor.5"])
    with torch.no_grad():
        value_hidden = model.policy.mlp_extractor.value_net(torch.as_tensor(obs)).numpy()
        policy_hidden = model.policy.mlp_extractor.policy_net(torch.as_tensor(obs)).numpy()
    np.testing.assert_allclose(acts["critic.5"], value_hidden, atol=1e-6)
    np.testing.assert_allclose(acts[5], policy_hidden, atol=1e-6)


def test_lstm_layer_capture_matches_a_fresh_state_forward(sb3_zip):
    model, path = sb3_zip("RecurrentPPO")
    policy = rli.load_policy(path)
    obs = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    lstm = rli.capture(policy, obs, layers=["lstm_actor"], recurrent_state="fresh")["lstm_actor"]
    with torch.no_grad():
        expected, _ = model.policy.lstm_actor(torch.as_tensor(obs)[None])
    np.testing.assert_allclose(lstm, expected[0].numpy(), atol=1e-6)


def test_capture_bad_requests(sb3_zip):
    policy = rli.load_policy(sb3_zip("SAC")[1])
    with pytest.raises(rli.RliError, match="does not run"):
        rli.capture(policy, np.zeros((2, 3)), layers=["critic_target.qf0.0"])
    with pytest.raises(rli.RliError, match="unknown layer"):
        rli.capture(policy, np.zeros((2, 3)), layers=["nope"])
    with pytest.raises(rli.RliError, match="no layers"):
        rli.capture(policy, np.zeros((2, 3)), layers=[])
    with pytest.raises(rli.RliError, match="chunk_size"):
        rli.capture(policy, np.zeros((2, 3)), chunk_size=0)


def test_activations_mapping(sb3_zip):
    policy = rli.load_policy(sb3_zip("PPO")[1])
    acts = rli.capture(policy, np.zeros((3, 3)), layers=[1, 5])
    assert list(acts) == ["mlp_extractor.policy_net.1", "mlp_extractor.policy_net.5"]
    assert acts.n == 3 and len(acts) == 2
    with pytest.raises(rli.RliError, match="was not captured"):
        acts[3]
