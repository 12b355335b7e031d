"""Policy: layer addressing, the layer table, observation validation, fingerprint, modes, recurrent steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import rli


@pytest.fixture
def mlp() -> rli.Policy:
    torch.manual_seed(0)
    return rli.load_policy(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8),
                                         nn.Tanh(), nn.Linear(8, 2)))


def test_layers_table_prints_every_layer(mlp):
    text = str(mlp.layers)
    assert text.splitlines()[0].split() == ["index", "alias", "name", "type", "width"]
    assert len(text.splitlines()) == 8
    assert "actor.5" in text


@pytest.mark.parametrize("spec", [5, "5", "actor.5", np.int64(5), -2])
def test_layer_addresses_resolve_to_the_same_layer(mlp, spec):
    assert mlp.layer(spec).name == "5"


@pytest.mark.parametrize("spec", [7, "actor.9", "critic.0", "nope", 2.5, True, None])
def test_wrong_layer_lists_the_valid_ones(mlp, spec):
    with pytest.raises(rli.RliError, match=r"valid layers are indices 0\.\.6") as info:
        mlp.layer(spec)
    assert "\n" not in str(info.value)


def test_nested_sequential_is_flattened_and_containers_addressable():
    policy = rli.load_policy(nn.Sequential(nn.Sequential(nn.Linear(3, 5), nn.ReLU()), nn.Linear(5, 2)))
    assert [layer.name for layer in policy.actor_layers] == ["0.0", "0.1", "1"]
    container = policy.layer("0")
    assert (container.type, container.width) == ("Sequential", 5)
    obs = np.random.default_rng(0).normal(size=(4, 3))
    np.testing.assert_array_equal(rli.capture(policy, obs, layers=["0"])["0"], rli.capture(policy, obs, layers=[1])[1])


@pytest.mark.parametrize(("obs", "message"), [
    (np.zeros((3, 5)), r"shape \(3, 5\) but this policy takes \(n, 4\)"),
    (np.zeros((3, 4, 1)), "shape"),
    (np.zeros((0, 4)), "empty"),
    (np.array([[0.0, np.nan, 0, 0]]), "1 NaN/inf values \\(first in row 0\\)"),
    (np.array([[0.0, np.inf, 0, 0], [0, 0, 0, -np.inf]]), "2 NaN/inf"),
    (np.array([["a", "b", "c", "d"]]), "numeric"),
    ([[0, 1], [2]], "numeric array"),
])
def test_bad_observations_are_rejected_with_a_reason(mlp, obs, message):
    with pytest.raises(rli.RliError, match=message):
        mlp.act(obs)


def test_single_observation_is_a_batch_of_one(mlp):
    assert mlp.act(np.zeros(4)).shape == (1, 2)
    assert mlp.act(torch.zeros(3, 4)).shape == (3, 2)


def test_fingerprint_tracks_parameters(mlp):
    before = mlp.fingerprint
    assert before == mlp.fingerprint
    with torch.no_grad():
        mlp.module[0].weight[0, 0] += 1e-6
    assert mlp.fingerprint != before


def test_act_restores_training_mode_and_grad_state(mlp):
    mlp.module.train()
    mlp.module[1].eval()
    mlp.act(np.zeros((2, 4)))
    assert mlp.module.training and mlp.module[0].training and not mlp.module[1].training
    assert torch.is_grad_enabled()


def test_dropout_is_off_when_acting():
    policy = rli.load_policy(nn.Sequential(nn.Linear(4, 64), nn.Dropout(0.5), nn.Linear(64, 2)))
    policy.module.train()
    obs = np.ones((5, 4))
    np.testing.assert_array_equal(policy.act(obs), policy.act(obs))


def test_recurrent_step_carries_state_like_sb3(sb3_zip):
    model, path = sb3_zip("RecurrentPPO")
    policy = rli.load_policy(path)
    assert policy.is_recurrent
    rng = np.random.default_rng(1)
    state, sb3_state = None, None
    starts = np.array([True, True])
    for _ in range(5):
        obs = rng.normal(size=(2, 4)).astype(np.float32)
        actions, state = policy.step(obs, state, starts)
        expected, sb3_state = model.predict(obs, state=sb3_state, episode_start=starts, deterministic=True)
        np.testing.assert_array_equal(actions, expected)
        starts = np.array([False, False])
    np.testing.assert_allclose(state[0].numpy(), sb3_state[0], atol=1e-6)


def test_repr_names_kind_and_fingerprint(mlp):
    assert repr(mlp).startswith("Policy(Sequential, obs (4,), 7 actor layers")
    assert mlp.fingerprint[:12] in repr(mlp)


def test_reversed_and_strided_views_act_and_capture_like_copies():
    policy = rli.load_policy(nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)))
    x = np.random.default_rng(0).normal(size=(12, 3)).astype(np.float32)
    for view in (x[::-1], x[::-2], x[:, ::-1]):
        np.testing.assert_array_equal(policy.act(view), policy.act(view.copy()))
        np.testing.assert_array_equal(rli.capture(policy, view, [1])[1], rli.capture(policy, view.copy(), [1])[1])
