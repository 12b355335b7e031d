"""The one validation path (``rli.checks``), the one tensor→numpy conversion (``rli.tensors``) and the one progress
display (``rli.progress``): what each accepts, what it rejects and how it says so, against numpy, torch, scikit-learn
and tqdm as the references."""

from __future__ import annotations

import io
import re
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.utils import check_array

import rli
from rli import checks
from rli.progress import progress_bar, shown, stage_display
from rli.rollout import evaluate
from rli.tensors import to_numpy


# ------------------------------------------------------------------------------------------------ checks.array
def test_array_keeps_float64_input_without_a_copy_and_converts_others():
    x = np.arange(6.0).reshape(3, 2)
    assert checks.array(x, "acts") is x
    assert np.shares_memory(checks.array(x, "acts", dtype=np.float64), x)
    ints = np.arange(6).reshape(3, 2)
    out = checks.array(ints, "acts", dtype=np.float64)
    assert out.dtype == np.float64 and not np.shares_memory(out, ints)
    np.testing.assert_array_equal(out, ints)
    assert checks.array([[True, False]], "mask").dtype == np.bool_


def test_array_takes_a_tensor_that_needs_gradients_and_shares_its_memory():
    t = torch.arange(6.0).reshape(3, 2).requires_grad_()
    out = checks.array(t, "acts", ndim=2)
    assert out.shape == (3, 2) and np.shares_memory(out, t.detach().numpy())


@pytest.mark.parametrize(("value", "kwargs", "message"), [
    ([[1.0], [1.0, 2.0]], {}, r"^acts must be a numeric array of real numbers, not a ragged list$"),
    (np.ones(3) + 1j, {}, r"^acts must be a numeric array of real numbers, got ndarray of dtype complex128$"),
    (np.array(["a", "b"]), {}, r"^acts must be a numeric array of real numbers, got ndarray of dtype <U1$"),
    (None, {}, r"^acts must be a numeric array of real numbers, got NoneType of dtype object$"),
    (np.array([1, "a"], dtype=object), {"what": "an activation matrix (n × d)"},
     r"^acts must be an activation matrix \(n × d\), got ndarray of dtype object$"),
    (np.ones(3), {"ndim": 2}, r"^acts must be 2-dimensional; got shape \(3,\)$"),
    (np.ones(3), {"ndim": (2, 3), "hint": " (n rows of d)"},
     r"^acts must be 2-dimensional or 3-dimensional; got shape \(3,\) \(n rows of d\)$"),
    (np.ones((3, 2, 2)), {"ndim": 2, "shape": "a matrix (n, d)"}, r"^acts must be a matrix \(n, d\); got shape"),
    (np.ones((1, 2)), {"min_rows": 2}, r"^acts needs at least 2 rows, got shape \(1, 2\)$"),
    (np.array([[0.0, 1.0], [np.inf, np.nan]]), {"fix": "clean them"},
     r"^acts: 2 NaN/inf values \(first in row 1\); clean them$"),
])
def test_array_rejects_with_one_line_naming_the_argument(value, kwargs, message):
    with pytest.raises(rli.RliError, match=message):
        checks.array(value, "acts", **kwargs)


def test_array_finite_false_lets_nan_through_and_integers_are_never_checked_for_it():
    assert np.isnan(checks.array([np.nan, 1.0], "values", finite=False)).any()
    assert checks.array(np.arange(3), "values").dtype.kind == "i"


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=6),
                  elements=st.sampled_from([0.0, 1.5, -2.0, np.nan, np.inf, -np.inf])))
def test_array_rejects_exactly_what_scikit_learn_rejects_and_counts_like_numpy(x):
    """scikit-learn's ``check_array`` is the reference for "finite": the same arrays pass; the message's count and
    first row are numpy's."""
    try:
        with np.errstate(invalid="ignore", over="ignore"):  # scikit-learn's fast path sums inf and -inf
                check_array(x, ensure_all_finite=True, ensure_2d=False, allow_nd=True, ensure_min_samples=0,
                        ensure_min_features=0, dtype=None)
        sklearn_ok = True
    except ValueError:
        sklearn_ok = False
    bad = ~np.isfinite(x)
    if sklearn_ok:
        assert checks.array(x, "x") is x and not bad.any()
        return
    with pytest.raises(rli.RliError) as err:
        checks.array(x, "x")
    count, row = re.match(r"x: (\d+) NaN/inf values \(first in row (\d+)\)", str(err.value)).groups()
    assert (int(count), int(row)) == (int(bad.sum()), int(np.argwhere(bad)[0][0]))


# --------------------------------------------------------------------------------------- scalars: the hint
@pytest.mark.parametrize(("call", "message"), [
    (lambda: checks.count(1, "folds", minimum=2, hint=" (K of the K-fold split)"),
     r"^folds must be an integer of at least 2, got 1 \(K of the K-fold split\)$"),
    (lambda: checks.count(9, "folds", minimum=2, maximum=4, hint=" (at most 4 groups)"),
     r"^folds must be at most 4, got 9 \(at most 4 groups\)$"),
    (lambda: checks.real(-1.0, "sigma", minimum=0.0, hint=" (a standard deviation)"),
     r"^sigma must be a number ≥ 0, got -1.0 \(a standard deviation\)$"),
    (lambda: checks.real("a", "sigma", hint=" (a standard deviation)"),
     r"^sigma must be a finite number, got 'a' \(a standard deviation\)$"),
    (lambda: checks.flag("no", "trust", hint=" (a string would count as True)"),
     r"^trust must be True or False, not 'no' \(a string would count as True\)$"),
])
def test_scalar_checks_end_with_what_the_argument_is_for(call, message):
    with pytest.raises(rli.RliError, match=message):
        call()


@pytest.mark.parametrize(("call", "message"), [
    (lambda: rli.fit_pca(np.ones((4, 3)), 0), r"^k must be a positive integer, got 0 \(a whole number of principal components"),
    (lambda: rli.fit_pca(np.ones((4, 3)), True), r"^k must be a positive integer, got True"),
    (lambda: rli.cka([[1.0], [1.0, 2.0]], np.ones((2, 1))), "a must be an activation matrix .* not a ragged list"),
    (lambda: rli.stats.t_interval([1.0, np.nan]), r"^values: 1 NaN/inf values \(first in row 1\); drop or fix"),
    (lambda: rli.ObsSet(np.array([[0.0], [np.nan]])), r"^observations: 1 NaN/inf values \(first in row 1\)"),
])
def test_public_functions_route_their_checks_through_rli_checks(call, message):
    with pytest.raises(rli.RliError, match=message):
        call()


def test_sensor_noise_rejects_a_non_number_sigma_with_an_rli_error():
    """It raised numpy's TypeError (``np.isfinite("a")``) before it went through checks.real."""
    import gymnasium as gym

    from rli.wrappers import SensorNoise

    with pytest.raises(rli.RliError, match="sigma must be a finite number, got 'a'"):
        SensorNoise(gym.make("CartPole-v1"), sensors=[0], sigma="a")


# ------------------------------------------------------------------------------------------------- to_numpy
def test_to_numpy_is_detach_cpu_numpy_for_tensors_and_the_identity_otherwise():
    t = torch.linspace(0, 1, 5, dtype=torch.float64).requires_grad_()
    out = to_numpy(t)
    reference = t.detach().cpu().numpy()
    assert out.dtype == reference.dtype == np.float64
    np.testing.assert_array_equal(out, reference)
    assert np.shares_memory(out, reference)  # a CPU tensor's memory, as before: no copy
    for value in ([1, 2], np.ones(2), None, "a"):
        assert to_numpy(value) is value


# ------------------------------------------------------------------------------------------------- progress
class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


@pytest.mark.parametrize("tty", [True, False])
def test_progress_is_shown_on_a_terminal_only_unless_asked(monkeypatch, tty):
    monkeypatch.setattr(sys, "stderr", _Stream(tty))
    assert shown(None) is tty
    assert shown(True) is True and shown(False) is False
    with progress_bar(3, "work", unit="ep", progress=None) as bar:
        bar.update(3)
    with stage_display("rli interrogate", None) as stage:
        stage("probe")
    written = sys.stderr.getvalue()
    assert ("work" in written and "rli interrogate: probe" in written) is tty
    assert bool(written) is tty


def test_progress_rejects_a_value_that_is_not_true_false_or_none():
    with pytest.raises(rli.RliError, match=r"^progress must be True or False, not 'yes' \(or None"):
        shown("yes")


@pytest.fixture(scope="module")
def tiny() -> rli.Policy:
    torch.manual_seed(0)
    return rli.load_policy(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)), env="CartPole-v1")


def test_evaluate_shows_its_bar_when_asked_and_rejects_a_bad_progress(monkeypatch, tiny):
    monkeypatch.setattr(sys, "stderr", _Stream(False))
    before = [p.detach().clone() for p in tiny.module.parameters()]
    shown_run = evaluate(tiny, "CartPole-v1", 2, 0, max_steps=5, progress=True)
    assert re.search(r"evaluate CartPole-v1: .*\d/2 \[", sys.stderr.getvalue())  # a bar over the 2 episodes
    quiet = evaluate(tiny, "CartPole-v1", 2, 0, max_steps=5)
    np.testing.assert_array_equal(shown_run.returns, quiet.returns)  # the display never changes the numbers
    with pytest.raises(rli.RliError, match="progress must be True or False"):
        evaluate(tiny, "CartPole-v1", 2, 0, max_steps=5, progress="yes")
    assert all(torch.equal(a, b) for a, b in zip(before, tiny.module.parameters(), strict=True))
