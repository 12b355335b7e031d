"""rli.sb3.ProbeCallback: logs to SB3's logger and the store, and does not change training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.logger import configure

import rli.sb3 as rli_sb3
from rli.emergence import emergence_from_records
from rli.errors import RliError
from rli.loading import load_policy
from rli.observations import ObsSet
from rli.probes import probe
from rli.sb3 import STORE_FILE, ProbeCallback

STEPS = 256


@pytest.fixture(scope="module")
def probe_obs() -> ObsSet:
    rng = np.random.default_rng(0)
    obs = rng.uniform(-1, 1, size=(300, 4)).astype(np.float32)
    return ObsSet(obs, labels={"pole_angle": obs[:, 2]})


def _model(seed: int = 3) -> PPO:
    return PPO("MlpPolicy", "CartPole-v1", seed=seed, device="cpu", n_steps=128, batch_size=64, n_epochs=2,
               policy_kwargs={"net_arch": [16, 16]})


def _params(model: PPO) -> list[np.ndarray]:
    return [p.detach().clone().numpy() for p in model.policy.state_dict().values()]


def _bit_identical(probe_obs, store, controls: bool) -> None:
    torch.manual_seed(11)
    plain = _model()
    plain.learn(STEPS)
    state_plain = (torch.random.get_rng_state(), np.random.get_state()[1].copy())
    torch.manual_seed(11)
    probed = _model()
    callback = ProbeCallback(probe_obs, "pole_angle", layers=[3], every=256, store=store, controls=controls)
    probed.learn(STEPS, callback=callback)
    for a, b in zip(_params(plain), _params(probed)):
        assert np.array_equal(a, b)
    assert torch.equal(state_plain[0], torch.random.get_rng_state())
    assert np.array_equal(state_plain[1], np.random.get_state()[1])
    assert [r["step"] for r in callback.history] == [0, 256]
    assert all(not m._forward_hooks for m in probed.policy.modules())
    assert torch.is_grad_enabled()


def test_training_is_bit_identical_with_and_without_the_callback(probe_obs, tmp_path):
    _bit_identical(probe_obs, tmp_path / "store", controls=False)


@pytest.mark.slow
def test_training_is_bit_identical_with_probe_controls(probe_obs, tmp_path):
    """The untrained-network control re-initialises a network: the global RNG must still be left as found."""
    _bit_identical(probe_obs, tmp_path / "store", controls=True)


def test_logged_numbers_and_store_lines_are_rli_probe_of_the_live_model(probe_obs, tmp_path):
    model = _model()
    first = probe(load_policy(_model()), probe_obs, "pole_angle", 3, controls=False)  # same seed: the initial weights
    model.set_logger(configure(str(tmp_path / "log"), ["csv"]))
    callback = ProbeCallback(probe_obs, "pole_angle", layers=[3], every=256, store=tmp_path)
    model.learn(256, callback=callback)
    start = callback.history[0]
    assert start["step"] == 0 and start["value"] == first.r2 and (start["ci_low"], start["ci_high"]) == first.ci
    lines = [json.loads(line) for line in (tmp_path / STORE_FILE).read_text().splitlines()]
    assert lines == callback.history
    assert set(lines[0]) == {"checkpoint", "step", "seed", "analysis", "layer", "target", "metric", "value", "ci_low",
                             "ci_high", "spec_key"}
    assert lines[-1]["step"] == 256
    header, *rows = (tmp_path / "log" / "progress.csv").read_text().splitlines()
    column = header.split(",").index("rli/probe_r2/3")
    logged = [float(row.split(",")[column]) for row in rows if row.split(",")[column]]
    assert logged[-1] == pytest.approx(lines[-1]["value"])
    assert "rli/probe_r2_ci_low/3" in header
    e = emergence_from_records(lines, threshold=-10.0, layer=3, target="pole_angle")  # the store feeds emergence
    assert e.step == 0


def test_modes_restored_when_the_probe_is_interrupted(probe_obs, monkeypatch):
    model = _model()
    callback = ProbeCallback(probe_obs, "pole_angle", layers=[1], every=128)

    def interrupted(*args, **kwargs):
        for module in model.policy.modules():
            module.train(not module.training)
        torch.set_grad_enabled(False)
        raise KeyboardInterrupt

    monkeypatch.setattr(rli_sb3, "probe_layers", interrupted)
    model.policy.set_training_mode(False)
    before = _params(model)
    with pytest.raises(KeyboardInterrupt):
        model.learn(128, callback=callback)
    assert torch.is_grad_enabled()
    assert not any(m.training for m in model.policy.modules())
    assert all(np.array_equal(a, b) for a, b in zip(before, _params(model)))


def test_bad_target_names_the_step(probe_obs):
    model = _model()
    with pytest.raises(RliError, match="ProbeCallback at step 0") as info:
        model.learn(128, callback=ProbeCallback(probe_obs, "no_such_label", layers=[1], every=128))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"every": 0}, "every"), ({"layers": 5}, "layers"), ({"layers": []}, "layers"), ({"kind": "svm"}, "kind"),
])
def test_bad_arguments_are_rejected_before_training(probe_obs, kwargs, match):
    options = {"layers": [1], "every": 128, **kwargs}
    with pytest.raises(RliError, match=match):
        ProbeCallback(probe_obs, "pole_angle", **options)


def test_store_must_be_a_directory(probe_obs, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(RliError, match="directory"):
        ProbeCallback(probe_obs, "pole_angle", layers=[1], every=128, store=tmp_path / "file")
