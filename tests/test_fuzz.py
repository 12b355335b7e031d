"""Garbage in, rli.RliError out: the public API fuzzed with hypothesis.

Each example breaks one argument (or none) and draws the others valid, so every
argument's check is reached and valid calls get all the way through. A broken
argument is garbage (None, bools, huge ints, NaN/inf, strings, bytes, ragged lists,
object and complex arrays, tensors, dicts, empty arrays) or a near miss (the wrong
width, extreme values such as 1e300 or 1e-310, too few rows, a constant target, a
mismatched length). Whatever comes in, a call returns a normal result (with finite
numbers) or raises :class:`rli.RliError` with a one-line message; any other
exception is a bug at rli's boundary. After every call the policy is exactly as
before: the same parameters, no forward hook or pre-hook on any module, every
module's train/eval flag, grad mode and torch's thread count unchanged.

Example counts come from the hypothesis profile in tests/conftest.py (25 by default);
``--hypothesis-show-statistics`` shows how many examples ended in a result.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch import nn

import rli
from rli import stats
from rli.subspace import orthonormalize

OBS_DIM, WIDTH = 4, 8
fuzz = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def policy() -> rli.Policy:
    """A small CartPole-shaped MLP in train mode (so a forgotten mode restore shows)."""
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(OBS_DIM, WIDTH), nn.Tanh(), nn.Linear(WIDTH, WIDTH), nn.Tanh(),
                           nn.Linear(WIDTH, 2))
    module.train()
    return rli.load_policy(module, env="CartPole-v1")


# ------------------------------------------------------------------------------------------ strategies
DTYPES = [np.float64, np.float32, np.float16, np.int64, np.int8, np.uint8, np.bool_, np.complex128, np.dtype("U3")]
FINITE = st.floats(-10, 10, allow_nan=False)
EXTREME = st.one_of(FINITE, st.sampled_from([0.0, 1e-310, -1e-300, 1e30, -3e38, 1e300, np.nan, np.inf, -np.inf]))
# Integers are small or astronomically large: a count of 10**6..10**12 (episodes, observations) is valid and
# merely slow or big, and rli must run it, not refuse it.
HUGE_OR_SMALL = st.integers(-100, 100) | st.integers(10**13, 2**70) | st.integers(-2**70, -10**13)
GARBAGE = st.one_of(
    st.none(), st.booleans(), HUGE_OR_SMALL, st.floats(), st.text(max_size=4), st.binary(max_size=3),
    st.lists(st.floats(), max_size=4), st.lists(st.lists(st.integers(-3, 3), max_size=3), min_size=2, max_size=3),
    hnp.arrays(st.sampled_from(DTYPES), hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)),
    st.just(np.array([None, "a", 1.5], dtype=object)), st.just(object()),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    st.builds(torch.as_tensor, hnp.arrays(np.float32, st.tuples(st.integers(0, 4), st.just(OBS_DIM)))),
)
LAYERS = st.sampled_from([0, 1, 3, -1, "actor.3", "3", np.int64(2)])
BAD_LAYERS = st.one_of(st.sampled_from([9, -9, "nope", 1.5, None, True, "", "critic.9", "pc1"]), GARBAGE)


def observations(n: int) -> st.SearchStrategy:
    """Valid observations: seeded normal draws (hypothesis' own arrays shrink towards all-equal rows)."""
    return st.integers(0, 2**16).map(lambda seed: np.random.default_rng(seed).normal(size=(n, OBS_DIM)) * 2)


def bad_observations(n: int) -> st.SearchStrategy:
    return st.one_of(
        hnp.arrays(np.float64, (n, OBS_DIM), elements=EXTREME),
        hnp.arrays(np.float32, (n, 3), elements=FINITE), hnp.arrays(np.float64, (n, OBS_DIM, 1), elements=FINITE),
        hnp.arrays(st.sampled_from(DTYPES), (n, OBS_DIM)), st.just(np.zeros((0, OBS_DIM))), GARBAGE,
    )


def bad_targets(n: int) -> st.SearchStrategy:
    return st.one_of(
        hnp.arrays(np.float64, n, elements=EXTREME), st.builds(np.ones, st.sampled_from([0, 1, n - 1, n + 1])),
        FINITE.map(lambda value: np.full(n, value)), hnp.arrays(st.sampled_from(DTYPES), n),
        hnp.arrays(np.float64, (n, 2, 2), elements=FINITE), st.sampled_from(["y", "nope"]), GARBAGE,
    )


def drawn(data: st.DataObject, valid: dict[str, st.SearchStrategy], bad: dict[str, st.SearchStrategy]) -> dict:
    """Every argument valid (half the time), or all but one, drawn from its bad values."""
    broken = data.draw(st.sampled_from([*[None] * len(valid), *valid]), label="broken argument")
    event(f"broken: {broken}")
    return {name: data.draw(bad.get(name, GARBAGE) if name == broken else strategy, label=name)
            for name, strategy in valid.items()}


# ----------------------------------------------------------------------------------------- invariants
def _hooks(module: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in module.modules())


@contextlib.contextmanager
def untouched(policy: rli.Policy) -> Iterator[None]:
    """The policy after the block is the policy before it: parameters, hooks, modes, grad mode, torch threads."""
    fingerprint = policy.fingerprint
    raw = {k: v.detach().clone() for k, v in policy.module.state_dict().items()}
    modes = [m.training for m in policy.module.modules()]
    threads, grad = torch.get_num_threads(), torch.is_grad_enabled()
    yield
    assert _hooks(policy.module) == 0, "a hook was left on the policy"
    assert policy.fingerprint == fingerprint
    after = policy.module.state_dict()
    assert all(torch.equal(raw[k], after[k]) for k in raw)
    assert [m.training for m in policy.module.modules()] == modes
    assert (torch.get_num_threads(), torch.is_grad_enabled()) == (threads, grad)


def outcome(call: Callable[[], Any]) -> Any:
    """``call()``'s result, or the RliError it raised (one line); any other exception fails the test."""
    try:
        result = call()
    except rli.RliError as err:
        assert "\n" not in str(err), f"a multi-line error message: {err}"
        event("→ RliError")
        event(f"→ RliError: {str(err)[:50]}")
        return err
    event("→ a result")
    return result


def finite(*values: Any) -> bool:
    return bool(np.all(np.isfinite(np.asarray(values, dtype=np.float64))))


# -------------------------------------------------------------------------------------------- capture
@fuzz
@given(data=st.data())
def test_capture_takes_any_input(policy, data):
    n = data.draw(st.integers(1, 40))
    args = drawn(data, {"obs": observations(n), "layers": st.none() | LAYERS | st.lists(LAYERS, min_size=1, max_size=3),
                        "chunk_size": st.integers(1, 50), "pool": st.sampled_from(["flatten", "channel"])},
                 {"obs": bad_observations(n), "layers": BAD_LAYERS | st.just([]) | st.lists(BAD_LAYERS, min_size=1),
                  "chunk_size": st.integers(-3, 0) | GARBAGE})
    with untouched(policy):
        result = outcome(lambda: rli.capture(policy, **args))
        if isinstance(result, rli.Activations):
            assert all(v.dtype == np.float32 and v.shape[0] == result.n and np.isfinite(v).all()
                       for v in result.values())
        streamed = outcome(lambda: [chunk.stop for chunk in rli.iter_activations(policy, **args)])
        if isinstance(result, rli.Activations) and isinstance(args["obs"], np.ndarray) and args["obs"].ndim == 2:
            assert streamed[-1] == result.n == len(args["obs"])


@fuzz
@given(data=st.data())
def test_act_takes_any_observations(policy, data):
    n = data.draw(st.integers(1, 40))
    args = drawn(data, {"obs": observations(n), "chunk_size": st.integers(1, 50)},
                 {"obs": bad_observations(n), "chunk_size": st.integers(-3, 0) | GARBAGE})
    with untouched(policy):
        result = outcome(lambda: policy.act(**args))
    if isinstance(result, np.ndarray):  # one action per observation (a bad batch may still be a batch)
        assert result.ndim == 1 and set(np.unique(result)) <= {0, 1}
        if args["obs"] is not None and np.shape(args["obs"]) == (n, OBS_DIM):
            assert len(result) == n


# --------------------------------------------------------------------------------------------- probes
def _probe_args(data: st.DataObject, kinds: list[str], *, without: tuple[str, ...] = (),
                extra: tuple[dict, dict] = ({}, {})) -> tuple[dict, int]:
    n = data.draw(st.integers(12, 40))
    x = data.draw(observations(n))
    as_obsset = data.draw(st.booleans())
    valid = {"obs": st.just(rli.ObsSet(x, labels={"y": np.sin(x[:, 0]) + x[:, 1]}) if as_obsset else x),
             "target": st.just("y") if as_obsset else st.sampled_from([1.0, -3.0, 1e-200, 1e200]).map(
                 lambda scale: (np.sin(x[:, 0]) + x[:, 1]) * scale),
             "layer": LAYERS, "kind": st.sampled_from(kinds), "folds": st.integers(2, 4), "seed": st.integers(0, 2**32 - 1),
             "alphas": st.none() | st.floats(1e-3, 1e3) | st.lists(st.floats(1e-3, 1e3), min_size=1, max_size=3),
             "controls": st.booleans(), "control_seeds": st.integers(1, 2), "chunk_size": st.integers(1, 64),
             "standardize": st.booleans()}
    bad = {"obs": bad_observations(n), "target": bad_targets(n), "layer": BAD_LAYERS,
           "kind": st.sampled_from(["Ridge", "pca", ""]) | GARBAGE, "folds": st.integers(-1, 1) | GARBAGE,
           "seed": st.sampled_from([-1, 2**32, 1.5]) | GARBAGE, "alphas": st.sampled_from([0.0, -1.0, [], [[1.0]], "a"]),
           "control_seeds": st.sampled_from([0, 10**30, 2.5]) | GARBAGE, "chunk_size": st.integers(-2, 0) | GARBAGE}
    valid = {name: value for name, value in {**valid, **extra[0]}.items() if name not in without}
    return drawn(data, valid, {**bad, **extra[1]}), n


@fuzz
@given(data=st.data())
def test_probe_takes_any_input(policy, data):
    args, n = _probe_args(data, ["ridge", "ridge", "ridge", "lasso", "logistic"])
    if isinstance(args["kind"], str) and args["kind"] == "logistic" and isinstance(args["target"], np.ndarray) and \
            args["target"].dtype.kind == "f" and args["target"].shape == (n,):
        args["target"] = (args["target"] > np.median(args["target"])).astype(int)
    if isinstance(args["kind"], str) and args["kind"] in ("lasso", "logistic") and args["controls"] is True:
        args["controls"] = False  # scikit-learn controls cost seconds per example; ridge fuzzes the controls
    with untouched(policy):
        result = outcome(lambda: rli.probe(policy, **args))
    if isinstance(result, rli.ProbeResult):
        assert finite(result.score, *result.ci, *result.controls.values()) and result.score <= 1.0
        assert result.n == n


@fuzz
@given(data=st.data())
def test_probe_layers_takes_any_input(policy, data):
    args, _ = _probe_args(data, ["ridge"], without=("layer",), extra=(
        {"layers": st.none() | st.lists(LAYERS, min_size=1, max_size=3)}, {"layers": BAD_LAYERS | st.just([])}))
    with untouched(policy):
        result = outcome(lambda: rli.probe_layers(policy, **args))
    if isinstance(result, rli.LayerProfile):
        assert finite(*result.r2, *result.deltas)


@fuzz
@given(data=st.data())
def test_polarity_test_takes_any_input(policy, data):
    args, _ = _probe_args(data, ["ridge"], without=("kind", "controls", "control_seeds"), extra=(
        {"sensors": st.integers(0, 3) | st.lists(st.integers(-4, 3), min_size=1, max_size=3)},
        {"sensors": st.sampled_from([4, -5, [], [[0]], True, 1.5, [[0], [1, 2]]]) | GARBAGE}))
    with untouched(policy):
        result = outcome(lambda: rli.polarity_test(policy, **args))
        negated = outcome(lambda: rli.negate_sensors(args["obs"], args["sensors"]))
    if isinstance(result, rli.PolarityResult):
        assert finite(result.r2_normal, result.r2_inverted, result.drop, *result.drop_ci, result.cosine)
    assert negated is not None


# -------------------------------------------------------------------------------------- interventions
DIRECTIONS = st.one_of(
    hnp.arrays(np.float64, st.sampled_from([(WIDTH,), (WIDTH, 2), (WIDTH, 3)]), elements=st.floats(-1e3, 1e3)),
    st.sampled_from(["pc1", "pc1-3", "pc2"]),
)
BAD_DIRECTIONS = st.one_of(
    hnp.arrays(np.float64, st.sampled_from([(WIDTH,), (WIDTH, 9), (5,), (2, WIDTH), (WIDTH, 1, 1), (WIDTH, 0)]),
               elements=EXTREME),
    st.sampled_from(["pc0", "pc3-1", "pc99", "up", "", np.zeros(WIDTH), np.c_[np.ones(WIDTH), np.ones(WIDTH)]]),
    GARBAGE,
)


@fuzz
@given(data=st.data(), builder=st.sampled_from(["ablate", "reflect", "mean_ablate", "keep_subspace", "erase", "patch"]),
       raise_inside=st.booleans())
def test_interventions_take_any_input(policy, data, builder, raise_inside):
    n = data.draw(st.integers(6, 30))
    x = data.draw(observations(n))
    args = drawn(data, {"layer": LAYERS, "direction": DIRECTIONS, "obs": st.just(x), "alpha": st.floats(-2, 2),
                        "concept": st.just(np.sin(x[:, 0]) + x[:, 1]) | st.just((x[:, 0] > 0).astype(int))},
                 {"layer": BAD_LAYERS, "direction": BAD_DIRECTIONS, "obs": bad_observations(n), "alpha": GARBAGE,
                  "concept": bad_targets(n)})
    layer, direction, obs = args["layer"], args["direction"], args["obs"]
    build = {
        "ablate": lambda: rli.ablate(policy, layer, direction, alpha=args["alpha"], obs=obs),
        "reflect": lambda: rli.reflect(policy, layer, direction, obs=obs),
        "mean_ablate": lambda: rli.mean_ablate(policy, layer, direction, obs),
        "keep_subspace": lambda: rli.keep_subspace(policy, layer, direction, obs=obs),
        "erase": lambda: rli.erase(policy, layer, obs, args["concept"]),
        "patch": lambda: rli.patch(policy, layer, obs),
    }[builder]
    batch = x[:1] if data.draw(st.booleans()) else x  # a patch from n sources refuses other batch sizes in its hook
    with untouched(policy):
        made = outcome(build)
        if isinstance(made, rli.Intervention):
            with contextlib.suppress(KeyError):
                with made:
                    result = outcome(lambda: policy.act(batch))
                    assert isinstance(result, (np.ndarray, rli.RliError))
                    if raise_inside:
                        raise KeyError("raised inside the with block")
            assert not made.active


# -------------------------------------------------------------------------------------- subspaces, CKA
def matrices(rows: int, cols: int) -> st.SearchStrategy:
    return hnp.arrays(np.float64, (rows, cols), elements=st.floats(-1e3, 1e3))


BAD_MATRICES = st.one_of(hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=6),
                                    elements=EXTREME), GARBAGE)


@fuzz
@given(data=st.data())
def test_subspace_functions_take_any_input(data):
    n, d = data.draw(st.integers(2, 20)), data.draw(st.integers(1, 6))
    args = drawn(data, {"acts": matrices(n, d), "k": st.integers(1, min(n, d)), "basis": matrices(d, 2)},
                 {"acts": BAD_MATRICES, "k": st.integers(-1, 0) | st.just(min(n, d) + 1) | GARBAGE,
                  "basis": BAD_MATRICES})
    fitted = outcome(lambda: rli.fit_pca(args["acts"], args["k"]))
    if isinstance(fitted, tuple):
        pcs, ratio = fitted
        assert np.allclose(pcs.T @ pcs, np.eye(pcs.shape[1]), atol=1e-8)
        assert finite(*ratio) and 0 <= ratio.sum() <= 1 + 1e-9
    projected = outcome(lambda: rli.project_subspace(args["acts"], args["basis"]))
    if isinstance(projected, np.ndarray):
        assert np.isfinite(projected).all()
    ortho = outcome(lambda: orthonormalize(args["basis"]))
    if isinstance(ortho, np.ndarray):
        assert np.allclose(ortho.T @ ortho, np.eye(ortho.shape[1]), atol=1e-8)


@fuzz
@given(data=st.data())
def test_cka_takes_any_input(data):
    n = data.draw(st.integers(2, 20))
    args = drawn(data, {"a": matrices(n, data.draw(st.integers(1, 5))), "b": matrices(n, data.draw(st.integers(1, 5)))},
                 {"a": BAD_MATRICES, "b": BAD_MATRICES})
    value = outcome(lambda: rli.cka(**args, n_boot=20, n_permutations=20))
    if isinstance(value, rli.CKAResult):  # the debiased estimate may dip below 0; its CI brackets it
        assert -1.0 - 1e-9 <= value.value <= 1.0 + 1e-9 and 0.0 < value.p_value <= 1.0
        assert value.ci[0] <= value.ci[1]


# --------------------------------------------------------------------------------------------- ObsSet
@fuzz
@given(data=st.data())
def test_obsset_takes_any_input(data):
    n = data.draw(st.integers(0, 8))
    args = drawn(data, {"obs": hnp.arrays(np.float64, (n, 3), elements=FINITE),
                        "labels": st.none() | st.fixed_dictionaries({"y": hnp.arrays(np.float64, n, elements=FINITE)}),
                        "meta": st.none() | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
                        "index": st.slices(max(n, 1)) | (st.integers(-n, n - 1) | st.lists(st.integers(-n, n - 1),
                                                                                             max_size=3) if n else
                                                          st.just([]))},
                 {"obs": hnp.arrays(np.float64, (n, 3), elements=EXTREME) | GARBAGE,
                  "labels": st.fixed_dictionaries({"y": bad_targets(n)}) | GARBAGE,
                  "index": st.sampled_from([n, -n - 1, 10**30, None, "y", 1.5, (0, 1), [0.5]]) | GARBAGE})
    made = outcome(lambda: rli.ObsSet(args["obs"], args["labels"], meta=args["meta"]))
    if isinstance(made, rli.ObsSet):
        part = outcome(lambda: made[args["index"]])
        assert isinstance(part, (rli.ObsSet, rli.RliError))
        assert len(list(made)) == len(made)  # iteration stops: an out-of-range index is an IndexError too


@fuzz
@given(data=st.data())
def test_obsset_sample_takes_any_input(data):
    args = drawn(data, {"space": st.sampled_from([gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(3),
                                                  gym.spaces.Box(0, 255, (2, 2), np.uint8)]),
                        "n": st.integers(1, 20), "seed": st.integers(0, 2**32 - 1)},
                 {"n": st.sampled_from([0, -1, 2.5, 10**30]) | GARBAGE, "seed": st.sampled_from([-1, 2**32, None, 1.5])})
    made = outcome(lambda: rli.ObsSet.sample(**args))
    if isinstance(made, rli.ObsSet):
        assert len(made) == args["n"]


# ------------------------------------------------------------------------------------------- rollouts
@fuzz
@given(data=st.data())
def test_evaluate_validates_its_arguments(policy, data):
    cut = rli.ablate(policy, 1, np.ones(WIDTH))
    args = drawn(data, {"env": st.just("CartPole-v1"), "episodes": st.integers(1, 3), "seed": st.integers(0, 2**32 - 4),
                        "intervention": st.sampled_from([None, cut, [cut]]), "n_envs": st.none() | st.integers(1, 3),
                        "max_steps": st.none() | st.integers(1, 30)},
                 {"env": st.sampled_from(["Pendulum-v1", "NoSuchEnv-v0", "bad id", lambda: 5]) | GARBAGE,
                  "episodes": st.sampled_from([0, -1, 2.5, 10**30]) | GARBAGE,
                  "seed": st.sampled_from([-1, 2**32, 1.5, None]),
                  "intervention": st.sampled_from([5, "ablate", object(), [cut, 5], np.ones(3), {"a": cut}]),
                  "n_envs": st.sampled_from([0, -1, 1.5]) | GARBAGE.filter(lambda v: v is not None),
                  "max_steps": st.sampled_from([0, -1, 1.5]) | GARBAGE.filter(lambda v: v is not None)})
    with untouched(policy):
        result = outcome(lambda: rli.evaluate(policy, progress=False, **args))
    assert not cut.active
    if isinstance(result, rli.EvalResult):
        assert len(result.returns) == args["episodes"] and result.seeds[0] == args["seed"]


# ---------------------------------------------------------------------------------------------- stats
@fuzz
@given(data=st.data())
def test_stats_take_any_input(data):
    n = data.draw(st.integers(2, 8))
    args = drawn(data, {"values": hnp.arrays(np.float64, n, elements=st.floats(-1e6, 1e6)),
                        "other": hnp.arrays(np.float64, n, elements=st.floats(-1e6, 1e6)),
                        "confidence": st.floats(0.5, 0.99), "seed": st.integers(0, 2**32 - 1),
                        "n_resamples": st.integers(1, 200), "ratio": st.none() | st.floats(0, 2)},
                 {"values": hnp.arrays(np.float64, st.integers(0, 8), elements=EXTREME) | GARBAGE,
                  "other": hnp.arrays(np.float64, st.integers(0, 8), elements=EXTREME) | GARBAGE,
                  "confidence": st.sampled_from([0.0, 1.0, -0.5, np.nan, "0.9"]) | GARBAGE,
                  "seed": st.sampled_from([-1, 2**32, None, 1.5]), "n_resamples": st.sampled_from([0, -1, 10**30]),
                  "ratio": st.sampled_from([-1.0, np.nan, np.inf, "a"])})
    values, other, confidence = args["values"], args["other"], args["confidence"]
    results = [
        outcome(lambda: stats.t_interval(values, confidence=confidence)),
        outcome(lambda: stats.cv_interval(values, test_train_ratio=args["ratio"], confidence=confidence)),
        outcome(lambda: stats.bootstrap_ci(values, confidence=confidence, n_resamples=args["n_resamples"],
                                           seed=args["seed"])),
        outcome(lambda: stats.paired_ttest(values, other)),
        outcome(lambda: stats.cohens_d(values, other)),
        outcome(lambda: stats.iqm(values)),
        outcome(lambda: stats.paired_comparison(values, other, confidence=confidence, n_resamples=args["n_resamples"],
                                                seed=args["seed"])),
    ]
    for result in results:
        if isinstance(result, (tuple, float)):
            assert not np.isnan(result).any()


# ---------------------------------------------------------------------------------------- load_policy
@fuzz
@given(data=st.data())
def test_load_policy_takes_any_arguments(data):
    args = drawn(data, {"src": st.sampled_from(["module", "examples/checkpoints/cartpole_ppo_seed0.zip"]),
                        "arch": st.none(), "obs_shape": st.none() | st.just((OBS_DIM,)),
                        "device": st.sampled_from(["cpu", torch.device("cpu")]), "trust": st.booleans()},
                 {"src": st.sampled_from(["", "no/such.zip", "README.md", "rli"]) | GARBAGE,
                  "arch": st.fixed_dictionaries({"mlp": st.lists(st.integers(-1, 5), max_size=3)}) | GARBAGE,
                  "obs_shape": st.sampled_from([(5,), (-1,), (), 4, (2.5,)]) | GARBAGE,
                  "device": st.sampled_from(["gpu", "cuda", 5]) | GARBAGE, "trust": GARBAGE})
    if isinstance(args["src"], str) and args["src"] == "module":
        args["src"] = nn.Sequential(nn.Linear(OBS_DIM, 3))
    made = outcome(lambda: rli.load_policy(**args))
    assert isinstance(made, (rli.Policy, rli.RliError))


# ----------------------------------------------------------------------------- named arguments, named fixes
def _overflowing() -> rli.Policy:
    layer = nn.Linear(OBS_DIM, 2)
    with torch.no_grad():
        layer.weight.fill_(10.0)
    return rli.load_policy(layer)


def _cases(policy: rli.Policy) -> list[tuple[str, Callable[[], Any], str]]:
    x = np.random.default_rng(0).normal(size=(30, OBS_DIM))
    cut = rli.ablate(policy, 1, np.ones(WIDTH))
    return [
        ("capture chunk_size", lambda: rli.capture(policy, x, [1], chunk_size=2.5), "chunk_size must be a positive"),
        ("capture pool", lambda: rli.capture(policy, x, [1], pool="max"), "pool must be 'flatten'"),
        ("capture policy", lambda: rli.capture(None, x, [1]), r"policy must be an rli\.Policy \(use rli\.load_policy"),
        ("complex observations", lambda: rli.capture(policy, x + 1j, [1]), "observations must be numeric"),
        ("observations overflowing float32", lambda: policy.act(np.full((2, OBS_DIM), 1e300)),
         "beyond the largest float32.*rescale or clip"),
        ("activations overflowing", lambda: rli.capture(_overflowing(), np.full((2, OBS_DIM), 3e38), [0]),
         "NaN/inf activations.*rescale or clip"),
        ("probe seed", lambda: rli.probe(policy, x, x[:, 0], 1, seed=-1), "seed must be an integer between 0 and"),
        ("probe control_seeds", lambda: rli.probe(policy, x, x[:, 0], 1, control_seeds=10**30),
         "control_seeds must be at most"),
        ("probe alphas", lambda: rli.probe(policy, x, x[:, 0], 1, alphas="a"), "alphas must be positive finite"),
        ("probe ragged target", lambda: rli.probe(policy, x, [[1], [1, 2]] * 15, 1), "target must be an array"),
        ("probe complex target", lambda: rli.probe(policy, x, x[:, 0] + 1j, 1), "give real numbers"),
        ("probe mixed classes", lambda: rli.probe(policy, x, np.array(["a", 1] * 15, dtype=object), 1,
                                                   kind="logistic"), "class labels as integers or strings"),
        ("probe_layers layers", lambda: rli.probe_layers(policy, x, x[:, 0], layers=2.5), "layers must be a list"),
        ("ablate alpha", lambda: rli.ablate(policy, 1, np.ones(WIDTH), alpha=10**400), "alpha must be a finite number"),
        ("ablate policy", lambda: rli.ablate(None, 1, np.ones(WIDTH)), r"policy must be an rli\.Policy"),
        ("ablate complex direction", lambda: rli.ablate(policy, 1, np.ones(WIDTH) + 1j),
         "the direction must be a numeric array of real numbers"),
        ("ablate None direction", lambda: rli.ablate(policy, 1, None), "the direction must be a numeric array"),
        ("erase ragged concept", lambda: rli.erase(policy, 1, x, [[1], [1, 2]] * 15),
         "concept must be an array with one value.*not a ragged list"),
        ("erase categorical", lambda: rli.erase(policy, 1, x, x[:, 0], categorical="yes"),
         "categorical must be True, False or None"),
        ("cka ragged", lambda: rli.cka([[1], [1, 2]], x), "a must be an activation matrix"),
        ("cka strings", lambda: rli.cka("abc", x), "a must be an activation matrix"),
        ("cka one row", lambda: rli.cka(x[:1], x[:1]), "at least 2 observations"),
        ("fit_pca strings", lambda: rli.fit_pca(np.array([["1", "2"], ["3", "5"]]), 1),
         "activations must be a numeric array"),
        ("ObsSet labels", lambda: rli.ObsSet(x, labels=[1, 2]), "labels must be a mapping"),
        ("ObsSet meta", lambda: rli.ObsSet(x, meta=5), "meta must be a mapping"),
        ("ObsSet ragged", lambda: rli.ObsSet([[1], [1, 2]]), "not a ragged list"),
        ("ObsSet index", lambda: rli.ObsSet(x)["a"], "for a label use obs.labels"),
        ("ObsSet index range", lambda: rli.ObsSet(x)[30], "observation 30 is out of range for 30"),
        ("ObsSet.sample seed", lambda: rli.ObsSet.sample(policy, 5, None), "seed must be an integer"),
        ("ObsSet.sample n", lambda: rli.ObsSet.sample(policy, 2.5, 0), "n must be a positive integer"),
        ("ObsSet.grid axes", lambda: rli.ObsSet.grid(np.zeros(OBS_DIM), [1, 2]), "axes must map observation indices"),
        ("from_rollouts policy", lambda: rli.ObsSet.from_rollouts("CartPole-v1", None, 5, 0),
         r"policy must be an rli\.Policy"),
        ("evaluate seed", lambda: rli.evaluate(policy, "CartPole-v1", 2, -1), "seed must be an integer between 0"),
        ("evaluate n_envs", lambda: rli.evaluate(policy, "CartPole-v1", 2, 0, n_envs=0), "n_envs must be a positive"),
        ("evaluate episodes", lambda: rli.evaluate(policy, "CartPole-v1", 10**30, 0), "episodes must be at most"),
        ("evaluate intervention", lambda: rli.evaluate(policy, "CartPole-v1", 2, 0, intervention=5),
         "intervention must be an rli intervention"),
        ("evaluate factory", lambda: rli.evaluate(policy, lambda: 5, 2, 0), "factory returned int"),
        ("compare episodes", lambda: rli.compare(policy, "CartPole-v1", cut, "a", 0), "at least 2 episodes"),
        ("compare baseline", lambda: rli.compare(policy, "CartPole-v1", cut, 2, 0, baseline=[1.0, 2.0]),
         "baseline= must be an EvalResult"),
        ("minimal_subspace tolerance", lambda: rli.minimal_subspace(policy, "CartPole-v1", 1, x, tolerance="a"),
         "tolerance is a fraction"),
        ("minimal_subspace candidates", lambda: rli.minimal_subspace(policy, "CartPole-v1", 1, x, candidates="a"),
         "candidates must be at least 1"),
        ("ablation_curve ks", lambda: rli.ablation_curve(policy, "CartPole-v1", 1, x, ks="ab"),
         "ks must be a list of positive numbers"),
        ("stats confidence", lambda: stats.t_interval([1.0, 2.0], confidence="a"), "confidence must be a finite"),
        ("stats huge values", lambda: stats.t_interval([1e300, -1e300]), "rescale them"),
        ("stats n_resamples", lambda: stats.bootstrap_ci([1.0, 2.0], n_resamples=0), "n_resamples must be a positive"),
        ("load_policy trust", lambda: rli.load_policy(nn.Linear(2, 2), trust="no"), "trust must be True or False"),
        ("load_policy device", lambda: rli.load_policy(nn.Linear(2, 2), device="gpu"), "device must be 'cpu' or"),
        ("load_policy obs_shape", lambda: rli.load_policy(nn.Linear(2, 2), obs_shape=(5,)),
         r"pass the right obs_shape="),
        ("build_arch sizes", lambda: rli.build_arch({"mlp": [4, 2**40]}), "more memory than there is"),
        ("ObsNormalizer", lambda: rli.ObsNormalizer(mean="a", var=[1.0]), "mean and var must be arrays of numbers"),
    ]


def test_bad_arguments_are_named_with_the_fix(policy):
    failures = []
    for label, call, message in _cases(policy):
        with untouched(policy):
            try:
                call()
            except rli.RliError as err:
                if not re.search(message, str(err)) or "\n" in str(err):
                    failures.append(f"{label}: {err}")
            except Exception as err:  # noqa: BLE001 — the point is to list whatever escapes
                failures.append(f"{label}: {type(err).__name__}: {err}")
            else:
                failures.append(f"{label}: no error")
    assert not failures, "\n".join(failures)


def test_a_lone_linear_module_is_a_one_layer_policy():
    policy = rli.load_policy(nn.Linear(OBS_DIM, 2))
    assert [layer.index for layer in policy.layers] == [0]
    assert rli.capture(policy, np.ones((3, OBS_DIM)), [0])[0].shape == (3, 2)


def test_extreme_targets_give_the_same_probe_as_ordinary_ones(policy):
    """A target in 1e-300 or 1e300 units is the same target: the ridge probe rescales it exactly."""
    x = np.random.default_rng(0).normal(size=(200, OBS_DIM))
    y = x[:, 0] - 0.5 * x[:, 1]
    plain = rli.probe(policy, x, y, 3, controls=False)
    for scale in (2.0**-990, 2.0**990):  # powers of two: the scaled target is the same numbers, exactly
        scaled = rli.probe(policy, x, y * scale, 3, controls=False)
        assert scaled.r2 == plain.r2 and scaled.ci == plain.ci and scaled.alpha == plain.alpha
        np.testing.assert_array_equal(scaled.coef, plain.coef * scale)
    for scale in (1e-300, 1e300):
        assert rli.probe(policy, x, y * scale, 3, controls=False).r2 == pytest.approx(plain.r2, abs=1e-12)
        assert rli.polarity_test(policy, x, y * scale, [0], 3).r2_normal == pytest.approx(plain.r2, abs=1e-12)


def test_extreme_activations_and_concepts_keep_their_meaning():
    rng = np.random.default_rng(0)
    acts = rng.normal(size=(100, 5)) * [5.0, 2.0, 1.0, 0.5, 0.1]
    basis, ratio = rli.fit_pca(acts, 2)
    for scale in (2.0**-1000, 2.0**1000):
        scaled_basis, scaled_ratio = rli.fit_pca(acts * scale, 2)
        np.testing.assert_array_equal(scaled_basis, basis)
        np.testing.assert_array_equal(scaled_ratio, ratio)
        assert rli.cka(acts * scale, acts[:, :3]) == rli.cka(acts, acts[:, :3])
        np.testing.assert_array_equal(orthonormalize(acts[:, :2] * scale), orthonormalize(acts[:, :2]))
    torch.manual_seed(0)
    policy = rli.load_policy(nn.Sequential(nn.Linear(3, 6), nn.Tanh()))
    x = rng.normal(size=(300, 3))
    for scale in (1e-300, 1.0, 1e300):
        with rli.erase(policy, 1, x, x[:, 0] * scale) as eraser:
            erased = rli.capture(policy, x, [1])[1].astype(np.float64)
        assert eraser.to_dict()["rank"] == 1
        centred = erased - erased.mean(axis=0)
        assert np.abs(centred.T @ (x[:, 0] - x[:, 0].mean())).max() < 1e-3 * len(x)
