"""rli.negate_sensors / rli.polarity_test."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import rli


def sensor_policy(reads_sensor: bool = True, seed: int = 3) -> rli.Policy:
    """Linear(3, 16) + Tanh; observation 0 is the sensor, cut off when ``reads_sensor`` is False."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(3, 16), nn.Tanh())
    if not reads_sensor:
        with torch.no_grad():
            net[0].weight[:, 0] = 0.0
    return rli.load_policy(net)


def observations(n: int = 500, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 3)).astype(np.float32)


# ------------------------------------------------------------------------------ negate_sensors
def test_negate_sensors_copies_arrays():
    obs = np.arange(6.0).reshape(2, 3)
    out = rli.negate_sensors(obs, [2, 0, 2])
    assert out.tolist() == [[-0.0, 1.0, -2.0], [-3.0, 4.0, -5.0]]
    assert obs.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert rli.negate_sensors(obs, -1)[:, 2].tolist() == [-2.0, -5.0]
    assert rli.negate_sensors(torch.ones(2, 3), 1)[:, 1].tolist() == [-1.0, -1.0]
    assert rli.negate_sensors(np.ones(3), 0).tolist() == [-1.0, 1.0, 1.0]


def test_negate_sensors_keeps_obsset_labels():
    obs = rli.ObsSet(np.ones((4, 3)), labels={"upwash": np.arange(4.0)}, meta={"grid_shape": [2, 2]})
    out = rli.negate_sensors(obs, 0)
    assert isinstance(out, rli.ObsSet)
    assert out.obs[:, 0].tolist() == [-1.0] * 4 and obs.obs[:, 0].tolist() == [1.0] * 4
    assert out.labels["upwash"].tolist() == [0.0, 1.0, 2.0, 3.0] and out.meta == obs.meta


def test_negate_sensors_indexes_flattened_image_observations():
    obs = np.ones((2, 2, 3))
    assert (rli.negate_sensors(obs, 4)[:, 1, 1] == -1).all()


@pytest.mark.parametrize(("obs", "indices", "message"), [
    (np.ones((2, 3)), 3, "outside the observation"),
    (np.ones((2, 3)), [], "index or a list"),
    (np.ones((2, 3)), 1.5, "index or a list"),
    (np.ones((2, 3), dtype=bool), 0, "signed numbers"),
    (np.ones((2, 3), dtype=np.uint8), 0, "signed numbers"),
])
def test_negate_sensors_rejects_bad_input(obs, indices, message):
    with pytest.raises(rli.RliError, match=message):
        rli.negate_sensors(obs, indices)


# ------------------------------------------------------------------------------- polarity_test
def test_a_layer_that_reads_the_sensor_fails_under_inversion():
    x = observations()
    result = rli.polarity_test(sensor_policy(), x, x[:, 0], sensors=[0], layer=1)
    assert result.r2_normal > 0.95
    assert result.r2_inverted < -2  # the same probe now predicts -x0: R² ≈ 1 - 4
    assert result.drop == pytest.approx(result.r2_normal - result.r2_inverted)
    assert result.drop_ci[0] > 2
    assert result.flipped and result.readout_correlation < -0.95 and result.cosine < 0 and result.r2_refit > 0.95


def test_a_layer_that_ignores_the_sensor_is_unchanged():
    x = observations()
    result = rli.polarity_test(sensor_policy(reads_sensor=False), x, x[:, 1], sensors=0, layer=1)
    assert result.r2_normal > 0.95
    assert result.r2_inverted == pytest.approx(result.r2_normal, abs=1e-9)
    assert result.drop_ci[0] <= 0 <= result.drop_ci[1] + 1e-9
    assert not result.flipped and result.cosine == pytest.approx(1.0) and result.readout_correlation == pytest.approx(1.0)


def test_polarity_matches_a_probe_on_normal_observations_and_streams():
    policy = sensor_policy()
    x = observations(600)
    y = np.sin(x[:, 0]) + x[:, 2]
    result = rli.polarity_test(policy, x, y, sensors=[0], layer=1, seed=4)
    probe = rli.probe(policy, x, y, 1, seed=4, controls=False)
    assert result.r2_normal == pytest.approx(probe.r2, abs=1e-12) and result.alpha == probe.alpha
    chunked = rli.polarity_test(policy, x, y, sensors=[0], layer=1, seed=4, chunk_size=64)
    for key in ("r2_normal", "r2_inverted", "drop", "r2_refit", "cosine", "readout_correlation"):
        assert getattr(chunked, key) == pytest.approx(getattr(result, key), abs=1e-8)


def test_polarity_with_an_obsset_label():
    x = observations()
    obs = rli.ObsSet(x, labels={"wind": x[:, 0] * 3.0})
    result = rli.polarity_test(sensor_policy(), obs, "wind", sensors=[0], layer="actor.1")
    assert result.target == "wind" and result.flipped
    data = json.loads(json.dumps(result.to_dict()))
    assert data["sensors"] == [0] and data["flipped"] is True
    text = str(result)
    assert "sensors [0] negated" in text and "flipped" in text and f"{result.r2_inverted:.3f}" in text


def test_polarity_test_leaves_the_policy_alone():
    policy = sensor_policy()
    before = policy.fingerprint
    x = observations(100)
    rli.polarity_test(policy, x, x[:, 0], sensors=[0], layer=1)
    assert policy.fingerprint == before


def test_polarity_test_notices_a_policy_changing_underneath():
    policy = sensor_policy()

    def drift(module, _inputs, _output):
        with torch.no_grad():
            module.weight.add_(1e-3)

    policy.module[0].register_forward_hook(drift)
    x = observations(100)
    with pytest.raises(RuntimeError, match="parameters changed"):
        rli.polarity_test(policy, x, x[:, 0], sensors=[0], layer=1)


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(target=np.c_[np.arange(100.0), np.arange(100.0) ** 2]), "one target column"),
    (dict(sensors=[7]), "outside the observation"),
    (dict(target=np.arange(90.0)), "90 values but obs has 100"),
    (dict(target="wind"), "label name"),
    (dict(layer=4), "out of range"),
])
def test_polarity_test_rejects_bad_input(kwargs, message):
    x = observations(100)
    call = dict(obs=x, target=x[:, 0], sensors=[0], layer=1) | kwargs
    with pytest.raises(rli.RliError, match=message):
        rli.polarity_test(sensor_policy(), **call)
