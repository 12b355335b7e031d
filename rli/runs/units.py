"""One task of a sweep: load a checkpoint once, then run (or read from the store) each of its analyses.

:func:`run_task` is what every executor runs, in this process or another one or on a Ray
worker; it takes and returns plain picklable values (paths, specs, rows), never a policy.
Each unit runs on one torch and one BLAS thread, so its numbers are the same bits whatever
the executor, the worker count or the machine's load.

Example:
    >>> from rli.runs.units import Task, run_task
    >>> from rli.runs.checkpoints import Checkpoint
    >>> from rli.runs.specs import Obs, Probe
    >>> spec = Probe(obs=Obs.grid("rli.envs:probe_grid", n_x=3, n_y=3), target="true_upwash", layer=1)
    >>> done = run_task(Task(Checkpoint("missing.zip", None, None, "."), (spec,), None, False))
    >>> done.units[0].status, "missing.zip" in done.units[0].error
    ('failed', True)
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any

from rli.runs.checkpoints import Checkpoint
from rli.runs.specs import ObsCache, Spec, rli_version
from rli.runs.store import Store, unit_key


@dataclass(frozen=True)
class Task:
    """A checkpoint and the analyses to run on it; ``store`` is the store's directory (or None)."""

    checkpoint: Checkpoint
    specs: tuple[Spec, ...]
    store: str | None
    trust: bool


@dataclass(frozen=True)
class UnitResult:
    """One analysis of one checkpoint: ``status`` computed / cached / recomputed_corrupt / failed."""

    rows: tuple[dict[str, Any], ...]
    status: str
    error: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class TaskResult:
    """The units of a task, in the order of its specs."""

    units: tuple[UnitResult, ...]


def _error_text(err: BaseException) -> str:
    last = traceback.extract_tb(err.__traceback__)[-1:] if err.__traceback__ else []
    where = f" (at {last[0].filename.rsplit('/', 1)[-1]}:{last[0].lineno})" if last else ""
    return f"{type(err).__name__}: {' '.join(str(err).split())}{where}"


def run_task(task: Task) -> TaskResult:
    """Run ``task``; a failing analysis becomes a failed unit (with its error), the others still run."""
    from rli.threads import one_blas_thread, one_torch_thread

    with one_torch_thread(), one_blas_thread():
        try:
            policy = task.checkpoint.load(trust=task.trust)
            fingerprint = policy.fingerprint
        except Exception as err:  # noqa: BLE001 — reported as the failure of this checkpoint's units
            failed = UnitResult((), "failed", f"loading {task.checkpoint.path} failed: {_error_text(err)}")
            return TaskResult(tuple(failed for _ in task.specs))
        store = Store(task.store) if task.store is not None else None
        cache = ObsCache()
        return TaskResult(tuple(_run_unit(spec, policy, fingerprint, store, cache, task.trust)
                                for spec in task.specs))


def _run_unit(spec: Spec, policy: Any, fingerprint: str, store: Store | None, cache: ObsCache,
              trust: bool) -> UnitResult:
    note = None
    try:
        key = unit_key(fingerprint + spec.policy_inputs(policy), spec)
        if store is not None:
            found = store.get(key)
            if found.status == "hit" and found.rows is not None:
                return UnitResult(tuple(found.rows), "cached")
            if found.status == "corrupt":
                note = f"corrupt store entry recomputed: {found.problem}"
        rows = spec.run(policy, trust=trust, cache=cache)
        if store is not None:
            store.put(key, rows, fingerprint=fingerprint, spec=spec.to_dict(), rli_version=rli_version(),
                      source=str(policy.source))
    except Exception as err:  # noqa: BLE001 — one failed analysis must not lose the others
        return UnitResult((), "failed", _error_text(err), note)
    return UnitResult(tuple(rows), "recomputed_corrupt" if note else "computed", None, note)
