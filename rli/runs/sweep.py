"""`sweep`: analyses over the checkpoints of training runs → a :class:`~rli.runs.table.SweepTable`.

Example:
    >>> import rli.runs
    >>> spec = rli.runs.Probe(obs=rli.runs.Obs.grid("rli.envs:probe_grid", n_x=3, n_y=3), target="true_upwash",
    ...                       layer=1)
    >>> rli.runs.sweep(["no/such/rl_model_10_steps.zip"], spec)
    Traceback (most recent call last):
    ...
    rli.errors.RliError: no such checkpoint: 'no/such/rl_model_10_steps.zip' (give an existing file, a run directory or a glob)
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from rli import checks
from rli.progress import progress_bar
from rli.runs.checkpoints import Checkpoint, discover
from rli.runs.executors import resolve_executor
from rli.runs.specs import Spec, check_specs
from rli.runs.store import Store
from rli.runs.table import Failure, SweepTable, UnitCounts
from rli.runs.units import Task, TaskResult, run_task


def sweep(checkpoints: Any, analyses: Any, *, executor: Any = None, store: str | Path | Store | None = None,
          progress: bool | None = None, trust: bool = False, workers: int | None = None) -> SweepTable:
    """Run every analysis on every checkpoint → a tidy :class:`~rli.runs.table.SweepTable`.

    Args:
        checkpoints: a glob (``"runs/*/rl_model_*_steps.zip"``), a training-run directory,
            a path, or a list of them (:func:`rli.runs.discover`: steps from SB3's
            ``CheckpointCallback`` names, seeds from the card or the path).
        analyses: a spec or a list of specs (:class:`~rli.runs.Probe`, :class:`~rli.runs.Profile`,
            :class:`~rli.runs.Polarity`, :class:`~rli.runs.Ablation`, :class:`~rli.runs.CKA`,
            :class:`~rli.runs.Custom`), or their dicts.
        executor: ``None``/``"inprocess"``, ``"processes"``, ``"ray"``, an rli executor
            (:class:`~rli.runs.Processes`, :class:`~rli.runs.RayExecutor`) or any
            ``concurrent.futures.Executor``. The rows are the same whichever.
        store: a result directory (or :class:`~rli.runs.Store`): finished units are read back
            instead of recomputed, so an interrupted sweep resumes where it stopped.
        progress: a progress bar over the units (default: on a terminal).
        trust: allow full unpickling of checkpoints, and analyses or observation builders outside rli.
        workers: processes for ``"processes"``, CPUs of a local Ray instance for ``"ray"``.

    A unit that fails (an analysis raising, a checkpoint that will not load, a worker that
    dies) is listed in ``table.failures`` naming its checkpoint and left out of the rows;
    rerunning with the same store recomputes only the units missing. A KeyboardInterrupt
    stops the sweep (finished units are in the store).
    """
    found = discover(checkpoints)
    specs = check_specs(analyses)
    checks.flag(trust, "trust")
    root = None
    if store is not None:
        root = str((store if isinstance(store, Store) else Store(store)).root)
    runner = resolve_executor(executor, workers=workers)
    tasks = [Task(checkpoint, specs, root, trust) for checkpoint in found]
    results: list[Any] = [None] * len(tasks)
    with progress_bar(len(tasks) * len(specs), "rli sweep", unit="unit", progress=progress) as bar:
        for index, outcome in runner.run(run_task, tasks):
            results[index] = outcome
            bar.update(len(specs))
    return _table(found, specs, results)


def _table(found: list[Checkpoint], specs: tuple[Spec, ...], results: list[Any]) -> SweepTable:
    rows: list[dict[str, Any]] = []
    failures: list[Failure] = []
    notes: list[str] = []
    counts = {"computed": 0, "cached": 0, "recomputed_corrupt": 0, "failed": 0}
    for checkpoint, result in zip(found, results):
        if not isinstance(result, TaskResult):  # the task itself died: a crashed worker, a broken pool
            error = f"{type(result).__name__}: {' '.join(str(result).split())[:500]}" if result is not None else \
                "did not run"
            failures += [Failure(checkpoint.path, spec.name, spec.key(), error) for spec in specs]
            counts["failed"] += len(specs)
            continue
        for spec, unit in zip(specs, result.units):
            counts[unit.status] += 1
            if unit.note:
                notes.append(f"{checkpoint.path}: {unit.note}")
            if unit.status == "failed":
                failures.append(Failure(checkpoint.path, spec.name, spec.key(), unit.error or "failed"))
                continue
            rows += [{"checkpoint": checkpoint.path, "step": checkpoint.step, "seed": checkpoint.seed, **row}
                     for row in unit.rows]
    for note in notes:
        warnings.warn(note, stacklevel=3)
    return SweepTable(rows, failures=failures, counts=UnitCounts(**counts), notes=notes)
