"""Logistic probe cost on the MiniGrid CNN features (issue #20): the old search (GridSearchCV, lbfgs) against
rli's (warm-started Newton-Cholesky paths, :mod:`rli.logistic_path`), each relative to one plain scikit-learn fit.

Data: 100 DoorKey-5x5 episodes of the shipped checkpoint (seed 2000), the 64 CNN features
(layer 8), the heading (4 classes), folds by episode (5), C chosen among 5 values by grouped
inner 3-fold CV in each training fold: 96 fits per probe run, on the features as they are
(``standardize=False``, the probe's default). Two targets: the heading, and
the heading shuffled between episodes (what the label-shuffle control fits; lbfgs ran into
its 2,000-iteration limit there). Every variant uses the same folds and the same inner
splits; CPU seconds (this process) and wall seconds, best of ``--repeats``
interleaved rounds, with the load average. Also ``rli.probe(..., kind="logistic",
control_seeds=2)`` with every control (once).

Run: ``python benchmarks/bench_probe_logistic.py [--repeats 1] [--write FILE]``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from common import cpu_model
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from threadpoolctl import threadpool_limits

import rli
from rli.envs.minigrid_env import minigrid_obs
from rli.logistic_path import LogisticPath
from rli.probes import fold_split, group_folds

CHECKPOINT = Path(__file__).parent.parent / "examples" / "checkpoints" / "minigrid_doorkey_ppo_seed0.zip"
CS = [100.0, 10.0, 1.0, 0.1, 0.01]  # C = 1/alpha for rli's default grid, in its order


def inner(groups: np.ndarray, labels: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The grouped, stratified inner 3-fold splits rli builds (``group_folds`` on the training rows)."""
    ids = group_folds(np.unique(groups, return_inverse=True)[1], 3, 0, labels)
    return [(np.flatnonzero(ids != g), np.flatnonzero(ids == g)) for g in range(3)]


def nested(search: Callable[[list], object], x: np.ndarray, y: np.ndarray, ids: np.ndarray,
           groups: np.ndarray) -> Callable[[], list[float]]:
    """Five outer folds, each search fitted on its training rows, plus the full fit."""
    def run() -> list[float]:
        scores = []
        with threadpool_limits(1, user_api="blas"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # lbfgs's ConvergenceWarnings (counted in the README)
            for f in range(5):
                train, test = ids != f, ids == f
                model = search(inner(groups[train], y[train])).fit(x[train], y[train])
                scores.append(float(np.mean(model.predict(x[test]) == y[test])))
            search(inner(groups, y)).fit(x, y)
        return scores
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--write", type=Path, help="also write the markdown section to this file")
    args = parser.parse_args()

    policy = rli.load_policy(CHECKPOINT)
    obs = minigrid_obs(policy, episodes=100, seed=2000)
    y = np.asarray(obs.labels["agent_dir"]).astype(int)
    x = rli.capture(policy, obs, [8])[8].astype(np.float64)
    split = fold_split(obs, y, 5, 0, stratify=True)
    episode = np.asarray(obs.labels["episode"])
    starts = np.flatnonzero(np.r_[True, episode[1:] != episode[:-1]])
    pieces = np.split(y, starts[1:])
    order = np.random.default_rng(0).permutation(len(pieces))
    shuffled = np.concatenate([np.resize(pieces[j], len(p)) for p, j in zip(pieces, order)])
    load_start = os.getloadavg()[0]

    def plain() -> object:
        with threadpool_limits(1, user_api="blas"):
            return LogisticRegression(max_iter=2000).fit(x, y)

    old = lambda cv: GridSearchCV(LogisticRegression(max_iter=2000), {"C": CS}, cv=cv)  # noqa: E731
    new = lambda cv: LogisticPath(tuple(CS), cv)  # noqa: E731
    runs: dict[str, Callable[[], object]] = {"one plain fit (lbfgs, C=1, all rows)": plain}
    for label, target in (("heading", y), ("heading shuffled between episodes", shuffled)):
        runs[f"before: GridSearchCV + lbfgs, {label}"] = nested(old, x, target, split.ids, split.groups)
        runs[f"after: LogisticPath (Newton), {label}"] = nested(new, x, target, split.ids, split.groups)
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    wall: dict[str, list[float]] = {name: [] for name in runs}
    results: dict[str, object] = {}
    for _ in range(args.repeats):
        for name, run in runs.items():
            c, w = time.process_time(), time.perf_counter()
            results[name] = run()
            cpu[name].append(time.process_time() - c)
            wall[name].append(time.perf_counter() - w)
    c, w = time.process_time(), time.perf_counter()
    full = rli.probe(policy, obs, "agent_dir", 8, kind="logistic", control_seeds=2)
    full_cpu, full_wall = time.process_time() - c, time.perf_counter() - w
    load_end = os.getloadavg()[0]

    unit = min(cpu["one plain fit (lbfgs, C=1, all rows)"])
    lines = [
        "## bench_probe_logistic",
        "",
        f"{datetime.datetime.now().isoformat(timespec='minutes')} · {os.cpu_count()} cores ({cpu_model()}) · "
        f"torch {torch.__version__} · load average {load_start:.2f} at the start, {load_end:.2f} at the end · "
        f"n = {len(y)} observations, 64 features, 4 classes, best of {args.repeats}",
        "",
        "| run | CPU (s) | wall (s) | CPU / one plain fit | held-out accuracy per fold |",
        "|---|---|---|---|---|",
    ]
    for name in runs:
        scores = results[name]
        text = " ".join(f"{s:.4f}" for s in scores) if isinstance(scores, list) else ""
        lines.append(f"| {name} | {min(cpu[name]):.2f} | {min(wall[name]):.2f} | {min(cpu[name]) / unit:.0f}× | {text} |")
    lines.append(f"| rli.probe(kind='logistic', control_seeds=2), all controls | {full_cpu:.2f} | {full_wall:.2f} | "
                 f"{full_cpu / unit:.0f}× | {full.score:.4f}; controls "
                 + ", ".join(f"{k} {v:.3f}" for k, v in full.controls.items()) + " |")
    for label in ("heading", "heading shuffled between episodes"):
        before, after = min(cpu[f"before: GridSearchCV + lbfgs, {label}"]), min(cpu[f"after: LogisticPath (Newton), {label}"])
        lines.append(f"\n- {label}: before / after {before / after:.1f}× (CPU)")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        args.write.write_text(text)


if __name__ == "__main__":
    main()
