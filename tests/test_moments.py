"""Sufficient statistics accumulated on several threads are bit-identical to a serial run."""

from __future__ import annotations

import multiprocessing
import os
import time

import numpy as np
import pytest
import torch
from torch import nn

import rli
from rli import threads
from rli.moments import Moments, accumulate, fold_order


def _chunks(seed: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(300, 20)).astype(np.float32), rng.normal(size=(300, 8)).astype(np.float32),
             rng.normal(size=(300, 2))) for _ in range(3)]


def _sums(workers: int, monkeypatch: pytest.MonkeyPatch, single: bool) -> list[np.ndarray]:
    monkeypatch.setattr(threads, "WORKERS", workers)
    wide, narrow = Moments(5), Moments(5)
    ids = np.arange(900) % 5
    for i, (a, b, y) in enumerate(_chunks(0)):
        order, bounds = fold_order(ids[i * 300:(i + 1) * 300], 5)
        accumulate([(wide, a, y)] if single else [(narrow, b, y), (wide, a, y)], order, bounds)
    return [s for m in (wide, narrow) if m.width is not None for s in (m.n, m.mean_x, m.cxx, m.mean_y, m.cyy, m.cxy)]


@pytest.mark.parametrize("single", [True, False], ids=["one-feature-set", "feature-sets-in-parallel"])
@pytest.mark.parametrize("workers", [2, 3])
def test_threads_give_the_serial_sums_bit_for_bit(workers: int, single: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    serial = _sums(1, monkeypatch, single)
    parallel = _sums(workers, monkeypatch, single)
    assert all(np.array_equal(a, b) for a, b in zip(serial, parallel, strict=True))


def test_add_is_accumulate_of_one(monkeypatch: pytest.MonkeyPatch) -> None:
    a, _, y = _chunks(1)[0]
    order, bounds = fold_order(np.arange(300) % 5, 5)
    one, other = Moments(5), Moments(5)
    one.add(a, y, order, bounds)
    monkeypatch.setattr(threads, "WORKERS", 1)
    accumulate([(other, a, y)], order, bounds)
    assert np.array_equal(one.cxx, other.cxx) and np.array_equal(one.cxy, other.cxy)


def test_layer_profile_does_not_depend_on_the_number_of_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    policy = rli.load_policy(nn.Sequential(nn.Linear(6, 32), nn.Tanh(), nn.Linear(32, 16), nn.Tanh(), nn.Linear(16, 2)))
    obs = np.random.default_rng(0).normal(size=(2000, 6)).astype(np.float32)
    y = np.sin(obs[:, 0]) + obs[:, 1] ** 2

    def profile(workers: int) -> list:
        monkeypatch.setattr(threads, "WORKERS", workers)
        result = rli.probe_layers(policy, obs, y, chunk_size=512)
        return [r.to_dict() for r in (result[name] for name in result.layers)]

    assert profile(1) == profile(2)


def test_a_failing_update_cancels_the_rest_and_leaves_blas_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    """After the call raises, no update runs on any more (one running on after the BLAS limit is lifted would call
    threaded OpenBLAS beside the caller's next call: a deadlock), and the queued ones never start."""
    from threadpoolctl import threadpool_info

    monkeypatch.setattr(threads, "WORKERS", 2)
    limits = [(info["internal_api"], info["num_threads"]) for info in threadpool_info()]
    sets = [Moments(5) for _ in range(8)]
    started, folds_added = [], {id(m): 0 for m in sets}
    add_rows, add_fold = Moments._add_rows, Moments._add_fold

    def failing_first(self, x, y, order, folds):
        started.append(self)
        if len(started) == 1:
            raise KeyboardInterrupt
        add_rows(self, x, y, order, folds)

    def counted(self, f, xs, ys):
        add_fold(self, f, xs, ys)
        folds_added[id(self)] += 1

    monkeypatch.setattr(Moments, "_add_rows", failing_first)
    monkeypatch.setattr(Moments, "_add_fold", counted)
    rng = np.random.default_rng(2)
    a, y = rng.normal(size=(4000, 300)), rng.normal(size=(4000, 1))  # ~10 ms per update: the failure comes first
    order, bounds = fold_order(np.arange(4000) % 5, 5)
    with pytest.raises(KeyboardInterrupt):
        accumulate([(m, a, y) for m in sets], order, bounds)
    snapshot = dict(folds_added)
    assert all(snapshot[id(m)] == 5 for m in started[1:])  # every update that started had finished
    assert len(started) < len(sets)  # the queued ones never started
    time.sleep(0.1)
    assert folds_added == snapshot and len(started) == len(set(map(id, started)))
    assert [(info["internal_api"], info["num_threads"]) for info in threadpool_info()] == limits


def _accumulate_in_child(queue) -> None:
    a, b, y = _chunks(3)[0]
    wide, narrow = Moments(5), Moments(5)
    accumulate([(wide, a, y), (narrow, b, y)], *fold_order(np.arange(300) % 5, 5))
    queue.put(wide.cxx.sum())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is a POSIX start method")
def test_a_forked_child_gets_its_own_worker_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "WORKERS", 2)
    _sums(2, monkeypatch, single=False)  # the parent's pool exists now
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_accumulate_in_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    alive = child.is_alive()
    if alive:
        child.kill()
    assert not alive, "the forked child hung on the parent's worker threads"
    assert child.exitcode == 0 and np.isfinite(queue.get(timeout=5))


def test_statistics_are_the_two_pass_ones_whatever_the_chunks_and_a_constant_feature_stays_constant() -> None:
    """Chunks centred on their own means and merged exactly (Chan et al.): each training set's scatter is numpy's
    two-pass one, and a feature constant over it (not over the other rows) has no variance, whatever came first."""
    from rli.moments import RidgeFit

    rng = np.random.default_rng(4)
    x = rng.normal(size=(700, 6)) * [1, 10, 1e-3, 1, 1, 1] + [0, 1e4, 5, 0, 0, 0]
    ids = rng.integers(0, 5, size=700)
    x[:, 3] = 0.0
    x[ids == 2, 3] = 255.0  # a pixel that lights up only in fold 2, the first chunk's rows among them
    y = x[:, :2] @ [[1.0], [0.1]] + rng.normal(size=(700, 1))
    m = Moments(5)
    for start, stop in [(0, 13), (13, 250), (250, 251), (251, 700)]:
        m.add(x[start:stop], y[start:stop], *fold_order(ids[start:stop], 5))
    for f in range(5):
        rows = x[ids != f]
        s = m.train(f)
        assert s.n == len(rows)
        np.testing.assert_allclose(s.mean_x, rows.mean(axis=0), rtol=1e-12, atol=1e-12)
        centred = rows - rows.mean(axis=0)
        exact = centred.T @ centred
        scale = np.sqrt(np.outer(np.diag(exact), np.diag(exact)))  # an entry's rounding is relative to these
        assert np.all(np.abs(s.cxx - exact) <= 1e-12 * scale)
    assert np.diag(m.train(2).cxx)[3] == 0.0  # constant 0 in training: exactly no variance
    assert RidgeFit(m.train(2), standardize=True).scale[3] == 1.0  # left unscaled, given no weight


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_statistics_that_overflow_float64_are_refused_not_scored_nan() -> None:
    """A float64 network takes observations of 1e200; the raw-observation control's sums of squares overflow, and
    the probe says so instead of reporting a NaN control (as it did before)."""
    torch.manual_seed(0)
    policy = rli.load_policy(nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2)).double())
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(500, 3))
    obs[:, 2] *= 1e200
    assert np.isfinite(rli.probe(policy, obs, obs[:, 0], 1, controls=False).r2)  # activations are finite (tanh)
    with pytest.raises(rli.RliError, match=r"overflow float64.*rescale"):
        rli.probe(policy, obs, obs[:, 0], 1, controls=True)


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_the_dual_form_refuses_overflowing_rows_too() -> None:
    from rli.moments import KernelFit

    x = np.random.default_rng(0).normal(size=(20, 50))
    x[:, 3] *= 1e200
    with pytest.raises(rli.RliError, match="overflow float64"):
        KernelFit(x, np.zeros((20, 1)), standardize=True)
