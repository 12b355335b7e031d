"""Where the tasks of a sweep run: in this process, in local processes, on Ray, or on any ``concurrent.futures`` pool.

Every executor runs the same :func:`rli.runs.units.run_task` on the same tasks and the sweep
puts the results back in task order, so the table is identical whichever runs them. A task
that raises (a crashed worker, a broken pool) is reported as the failure of that
checkpoint's units; the others are kept.

* ``"inprocess"`` / :class:`InProcess` (default): one task after another, here.
* ``"processes"`` / :class:`Processes`: a ``ProcessPoolExecutor`` with the *spawn* start method
  (no forked torch state), one torch thread per worker.
* ``"ray"`` / :class:`RayExecutor`: Ray tasks (``pip install "rli[ray]"``) on the running Ray
  instance, else on a cluster at ``address=`` / ``$RAY_ADDRESS``, else on a local instance started
  for the sweep (and shut down after it). Tasks return rows, never policies.
* any :class:`concurrent.futures.Executor` (Dask's, submitit's, a thread pool): used as it is.

Example:
    >>> from rli.runs.executors import resolve_executor
    >>> resolve_executor(None), resolve_executor("processes", workers=2)
    (InProcess(), Processes(workers=2))
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from rli import checks
from rli.errors import RliError

Outcome = tuple[int, Any]  # (task index, its result, or the exception that ended it)
EXECUTORS = ("inprocess", "processes", "ray")


class InProcess:
    """Run the tasks one after another in this process."""

    def run(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> Iterator[Outcome]:
        """Yield ``(index, fn(task))`` (or the exception it raised) as each task finishes."""
        for index, task in enumerate(tasks):
            try:
                yield index, fn(task)
            except Exception as err:  # noqa: BLE001 — reported as the task's failure by the sweep
                yield index, err

    def __repr__(self) -> str:
        return "InProcess()"


def _run_futures(pool: concurrent.futures.Executor, fn: Callable[[Any], Any],
                 tasks: Sequence[Any]) -> Iterator[Outcome]:
    futures = {pool.submit(fn, task): index for index, task in enumerate(tasks)}
    try:
        for future in concurrent.futures.as_completed(futures):
            error = future.exception()
            yield futures[future], (error if error is not None else future.result())
    finally:  # interrupted (KeyboardInterrupt, the caller stopped): drop the tasks that have not started
        for future in futures:
            future.cancel()


class FuturesExecutor:
    """Any :class:`concurrent.futures.Executor` the caller owns (it is not shut down here)."""

    def __init__(self, pool: concurrent.futures.Executor) -> None:
        self.pool = pool

    def run(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> Iterator[Outcome]:
        """Submit every task and yield outcomes in completion order."""
        return _run_futures(self.pool, fn, tasks)

    def __repr__(self) -> str:
        return f"FuturesExecutor({type(self.pool).__name__})"


def _one_thread_worker() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)


class Processes:
    """A pool of ``workers`` local processes (spawn start method, one torch thread each), made for each sweep."""

    def __init__(self, workers: int | None = None) -> None:
        if workers is not None:
            checks.count(workers, "workers", hint=" (local processes)")
        self.workers = workers

    def run(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> Iterator[Outcome]:
        """Run the tasks on the pool; a worker that dies fails the tasks it took down, reported as such."""
        workers = self.workers or max(1, min(len(tasks), os.cpu_count() or 1))
        pool = concurrent.futures.ProcessPoolExecutor(max_workers=workers,
                                                      mp_context=multiprocessing.get_context("spawn"),
                                                      initializer=_one_thread_worker)
        try:
            yield from _run_futures(pool, fn, tasks)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def __repr__(self) -> str:
        return f"Processes(workers={self.workers})"


class RayExecutor:
    """Ray tasks, one CPU each, never retried (a failure is reported, and a rerun resumes from the store).

    ``address``: a cluster (``"ray://host:10001"`` or ``"auto"``); default ``$RAY_ADDRESS``, else
    the Ray instance already running in this process, else a local one with ``num_cpus`` CPUs,
    started for the sweep and shut down after it. Checkpoint paths (and the store) must be
    readable at the same paths on every node: a shared file system.
    """

    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        if num_cpus is not None:
            checks.count(num_cpus, "num_cpus", hint=" (CPUs of the local Ray instance)")
        self.address = address
        self.num_cpus = num_cpus

    def run(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> Iterator[Outcome]:
        """Submit every task to Ray and yield outcomes as they finish."""
        try:
            import ray
        except ImportError:
            raise RliError('executor="ray" needs Ray: pip install "rli[ray]" (or pip install ray)') from None
        started = False
        if not ray.is_initialized():
            address = self.address or os.environ.get("RAY_ADDRESS") or None
            ray.init(address=address, num_cpus=None if address else self.num_cpus, include_dashboard=False,
                     log_to_driver=False)
            started = True
        remote = ray.remote(num_cpus=1, max_retries=0)(fn)
        refs = {remote.remote(task): index for index, task in enumerate(tasks)}
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    try:
                        yield refs[ref], ray.get(ref)
                    except Exception as err:  # noqa: BLE001 — a crashed worker or a task error: this task's failure
                        yield refs[ref], err
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
            if started:
                ray.shutdown()

    def __repr__(self) -> str:
        return f"RayExecutor(address={self.address!r}, num_cpus={self.num_cpus})"


def resolve_executor(executor: Any, *, workers: int | None = None) -> Any:
    """``executor`` (None, a name, an rli executor or a ``concurrent.futures.Executor``) as an rli executor."""
    if executor is None or executor == "inprocess":
        return InProcess()
    if executor == "processes":
        return Processes(workers)
    if executor == "ray":
        return RayExecutor(num_cpus=workers)
    if isinstance(executor, (InProcess, Processes, RayExecutor, FuturesExecutor)):
        return executor
    if isinstance(executor, concurrent.futures.Executor):
        return FuturesExecutor(executor)
    raise RliError(f"executor must be one of {', '.join(EXECUTORS)}, an rli.runs executor (Processes(workers=N), "
                   f"RayExecutor(address=...)) or a concurrent.futures.Executor, not {executor!r}")
