"""Interrupted work leaves nothing behind.

A KeyboardInterrupt or an exception in the middle of a capture, a probe, an
intervention or a rollout (sync or asynchronous) leaves the policy exactly as it
was: no forward hook or pre-hook on any module, bit-identical parameters, every
module's train/eval flag, grad mode, torch's thread count, torch's random state and
the BLAS thread limits restored; interventions are inactive again; vector-env worker
processes are gone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info
from torch import nn

import rli


class Tripwire(nn.Module):
    """Identity until armed; then its ``calls``-th forward raises ``error``."""

    def __init__(self) -> None:
        super().__init__()
        self.error: BaseException | None = None
        self.calls = 0

    def arm(self, error: BaseException, after: int) -> None:
        self.error, self.calls = error, after

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.error is not None:
            self.calls -= 1
            if self.calls <= 0:
                error, self.error = self.error, None
                raise error
        return x


def _policy(env: str | None = None) -> tuple[rli.Policy, Tripwire]:
    torch.manual_seed(0)
    wire = Tripwire()
    module = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), wire, nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 2))
    module.train()
    module[3].eval()  # mixed modes: each flag must come back as it was, not all to one value
    return rli.load_policy(module, env=env) if env else rli.load_policy(module), wire


def _hooks(module: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in module.modules())


def _children() -> set[int]:
    """Live (not zombie) child processes of this process, read from /proc."""
    me, found = str(os.getpid()), set()
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError):
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
            if fields.get("PPid", "").strip() == me and not fields.get("State", "").startswith("Z"):
                found.add(int(status.parent.name))
    return found


@contextlib.contextmanager
def exactly_restored(policy: rli.Policy) -> Iterator[None]:
    raw = {k: v.detach().clone() for k, v in policy.module.state_dict().items()}
    fingerprint = policy.fingerprint
    modes = [m.training for m in policy.module.modules()]
    state = (torch.get_num_threads(), torch.is_grad_enabled(), torch.random.get_rng_state())
    blas = [(pool["internal_api"], pool["num_threads"]) for pool in threadpool_info()]
    children = _children()
    yield
    assert _hooks(policy.module) == 0
    assert policy.fingerprint == fingerprint
    after = policy.module.state_dict()
    assert all(torch.equal(raw[k], after[k]) for k in raw)
    assert [m.training for m in policy.module.modules()] == modes
    assert torch.get_num_threads() == state[0] and torch.is_grad_enabled() == state[1]
    assert torch.equal(torch.random.get_rng_state(), state[2])
    assert [(pool["internal_api"], pool["num_threads"]) for pool in threadpool_info()] == blas
    deadline = time.monotonic() + 5
    while _children() - children and time.monotonic() < deadline:  # terminated workers take a moment to go
        time.sleep(0.05)
    assert not _children() - children, "worker processes were left running"


ERRORS = [KeyboardInterrupt(), RuntimeError("boom")]


@pytest.mark.parametrize("error", ERRORS, ids=["KeyboardInterrupt", "RuntimeError"])
@pytest.mark.parametrize("after", [1, 3])
def test_capture_interrupted_in_the_middle(error, after):
    policy, wire = _policy()
    obs = np.random.default_rng(0).normal(size=(40, 4))
    expected = rli.capture(policy, obs, layers=[1, 4])
    with exactly_restored(policy):
        wire.arm(error, after)
        with pytest.raises(type(error)):
            rli.capture(policy, obs, layers=[1, 4], chunk_size=10)  # the after-th chunk of four fails
    again = rli.capture(policy, obs, layers=[1, 4])
    np.testing.assert_array_equal(again[4], expected[4])


@pytest.mark.parametrize("error", ERRORS, ids=["KeyboardInterrupt", "RuntimeError"])
def test_streaming_interrupted_or_abandoned(error):
    policy, wire = _policy()
    obs = np.random.default_rng(0).normal(size=(50, 4))
    with exactly_restored(policy):
        stream = rli.iter_activations(policy, obs, layers=[4], chunk_size=10)
        next(stream)
        stream.close()  # abandoned between chunks
        wire.arm(error, 2)
        with pytest.raises(type(error)):
            list(rli.iter_activations(policy, obs, layers=[4], chunk_size=10))

        def batches():
            yield obs[:10]
            raise error  # the user's generator dies mid-stream
        with pytest.raises(type(error)):
            list(rli.iter_activations(policy, batches(), layers=[4]))


@pytest.mark.parametrize("error", ERRORS, ids=["KeyboardInterrupt", "RuntimeError"])
def test_probe_interrupted_in_the_middle(error):
    policy, wire = _policy()
    obs = np.random.default_rng(0).normal(size=(300, 4))
    target = obs[:, 0] - obs[:, 1]
    expected = rli.probe(policy, obs, target, 4, control_seeds=2)
    with exactly_restored(policy):
        wire.arm(error, 3)
        with pytest.raises(type(error)):
            rli.probe(policy, obs, target, 4, control_seeds=2, chunk_size=50)
    wire.error = None  # the untrained copies carry an armed copy of the wire: whichever fires first, disarm
    again = rli.probe(policy, obs, target, 4, control_seeds=2)
    assert (again.r2, again.ci, again.controls) == (expected.r2, expected.ci, expected.controls)


@pytest.mark.parametrize("error", ERRORS, ids=["KeyboardInterrupt", "RuntimeError"])
def test_exception_inside_interventions(error):
    policy, _ = _policy()
    obs = np.random.default_rng(0).normal(size=(30, 4))
    before = policy.act(obs)
    cut = rli.ablate(policy, 1, "pc1-2", obs=obs)
    mean = rli.mean_ablate(policy, 4, "pc1", obs)
    erase = rli.erase(policy, 4, obs, obs[:, 0])
    with exactly_restored(policy):
        with pytest.raises(type(error)):
            with cut, mean, erase:
                policy.act(obs)
                raise error
        assert not (cut.active or mean.active or erase.active)
        with pytest.raises(rli.RliError, match="already active"):
            with cut, cut:  # entering twice fails on the second; the first is undone
                pass
        assert not cut.active
    np.testing.assert_array_equal(policy.act(obs), before)
    with cut:  # still reusable
        assert cut.active


def test_intervention_hook_failing_inside_a_capture():
    policy, _ = _policy()
    obs = np.random.default_rng(0).normal(size=(8, 4))
    swap = rli.patch(policy, 4, obs)  # 8 source rows: a batch of another size is refused inside the hook
    with exactly_restored(policy):
        with swap:
            with pytest.raises(rli.RliError, match="holds 8 source activations"):
                rli.capture(policy, np.zeros((5, 4)), layers=[5])
        assert not swap.active


class StepBomb(gym.Wrapper):
    """CartPole whose ``bomb_at``-th step (counted per env) raises ``error``; picklable for worker processes."""

    def __init__(self, error: BaseException, bomb_at: int, delay: float = 0.0) -> None:
        super().__init__(gym.make("CartPole-v1"))
        self.error, self.bomb_at, self.delay, self.steps = error, bomb_at, delay, 0

    def step(self, action):
        self.steps += 1
        time.sleep(self.delay)
        if self.steps == self.bomb_at:
            raise self.error
        return self.env.step(action)


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("error", ERRORS, ids=["KeyboardInterrupt", "RuntimeError"])
def test_rollout_interrupted_by_the_env(asynchronous, error):
    policy, _ = _policy("CartPole-v1")
    cut = rli.ablate(policy, 1, np.ones(16), alpha=0.5)
    with exactly_restored(policy):
        with pytest.raises(type(error)):
            rli.evaluate(policy, lambda: StepBomb(error, bomb_at=5), episodes=4, seed=0, intervention=cut,
                         n_envs=2, asynchronous=asynchronous, progress=False)
        assert not cut.active


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_rollout_interrupted_by_the_policy(asynchronous):
    policy, wire = _policy("CartPole-v1")
    with exactly_restored(policy):
        wire.arm(KeyboardInterrupt(), 4)  # the fourth batched forward pass, between env steps
        with pytest.raises(KeyboardInterrupt):
            rli.evaluate(policy, "CartPole-v1", episodes=4, seed=0, n_envs=2, asynchronous=asynchronous,
                         progress=False)


def test_async_rollout_interrupted_while_workers_hang():
    """Ctrl-C while the parent waits on workers stuck in a step: the step is abandoned and the workers
    terminated at once (waiting for them would hang as long as they do)."""
    policy, _ = _policy("CartPole-v1")

    def interrupt(*_):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        with exactly_restored(policy):
            signal.setitimer(signal.ITIMER_REAL, 1.0)
            start = time.monotonic()
            with pytest.raises(KeyboardInterrupt):
                rli.evaluate(policy, lambda: StepBomb(RuntimeError("never reached"), bomb_at=10**9, delay=60.0),
                             episodes=2, seed=0, n_envs=2, asynchronous=True, progress=False)
            assert time.monotonic() - start < 15
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_a_completed_rollout_after_an_interrupted_one_is_unchanged():
    policy, _ = _policy("CartPole-v1")
    expected = rli.evaluate(policy, "CartPole-v1", episodes=3, seed=5, progress=False)
    with pytest.raises(KeyboardInterrupt):
        rli.evaluate(policy, lambda: StepBomb(KeyboardInterrupt(), bomb_at=3), episodes=3, seed=5, n_envs=2,
                     asynchronous=True, progress=False)
    again = rli.evaluate(policy, "CartPole-v1", episodes=3, seed=5, progress=False)
    np.testing.assert_array_equal(again.returns, expected.returns)
