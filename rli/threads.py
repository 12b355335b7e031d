"""Threads for rli's own linear algebra: one BLAS thread where it pays, and a shared worker pool.

Example:
    >>> from rli.threads import one_blas_thread, run_all
    >>> done = []
    >>> with one_blas_thread():
    ...     run_all([lambda: done.append(1), lambda: done.append(2)])
    >>> sorted(done)
    [1, 2]
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

# Worker threads: the cores this process may use (at most 8: the Gram updates are memory-bound beyond), and never
# more than torch.get_num_threads() at the time of the call.
WORKERS = max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))
_threadpools: Any = None
_pools: dict[int, ThreadPoolExecutor] = {}
if hasattr(os, "register_at_fork"):  # a forked child inherits the pools but not their threads: it starts afresh
    os.register_at_fork(after_in_child=_pools.clear)


def one_blas_thread(when: bool = True) -> contextlib.AbstractContextManager:
    """Limit numpy/scipy's BLAS to one thread (``when`` it pays).

    For the per-fold Gram updates (a few thousand rows each) and small solves, BLAS
    threads cost more than they save, and several times more on a busy machine
    (pytest-xdist workers, other jobs): measured on 2 cores under load, Gram updates
    run 4× and a small logistic fit 20× faster on one thread. Torch's threads (the
    forward pass) are not affected.
    """
    global _threadpools
    if not when:
        return contextlib.nullcontext()
    if _threadpools is None:
        from threadpoolctl import ThreadpoolController

        _threadpools = ThreadpoolController()
    return _threadpools.limit(limits=1, user_api="blas")


def run_all(tasks: Sequence[Callable[[], None]]) -> None:
    """Run ``tasks`` on shared worker threads and return when all have finished.

    As many threads as torch may use (``torch.set_num_threads``), at most :data:`WORKERS`;
    in this thread when that is one, or when there is one task. Call it inside
    :func:`one_blas_thread`: OpenBLAS deadlocks when two threads make threaded calls at once.
    """
    workers = min(WORKERS, torch.get_num_threads())
    if workers == 1 or len(tasks) == 1:
        for task in tasks:
            task()
        return
    if workers not in _pools:
        _pools[workers] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rli-worker")
    futures = [_pools[workers].submit(task) for task in tasks]
    try:
        for future in futures:
            future.result()
    except BaseException:  # KeyboardInterrupt or a failed task: drop what has not started (it would be discarded),
        for future in futures:  # and wait for what has: a task still running after the caller lifts the BLAS limit
            future.cancel()  # would make threaded BLAS calls beside the caller's next one
        concurrent.futures.wait(futures)
        raise


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """One torch intra-op thread for the duration (restored after, also on errors).

    For tiny batches (one environment step, a rollout's 16-row blocks, SB3 building a policy's
    orthogonal init): extra threads only synchronise, and on a busy machine spin-wait (measured:
    10× slower LSTM steps, a 3-env CartPole step 200× slower, 0.2-0.3 s instead of 0.3 ms per QR).
    The numbers are the same on one thread.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)

