"""Probe cost: 100k observations through a 28→256→256→128→4 Tanh MLP, target a non-linear function of them.

Times (best and median of interleaved repeats after a warm-up, same data, same process):

* the floor: the best *chunked* bare forward pass (``model(x[i:i + c])`` under ``no_grad``
  for every chunk); the chunk size ``c`` is chosen first, the fastest of
  ``--chunks`` on ``--calibration`` interleaved rounds, and reported;
* the bare forward pass of the whole batch at once (what earlier versions measured against);
* ``rli.probe(policy, obs, y, layer=5, controls=False)``: capture, 5-fold ridge with the
  penalty chosen by GCV inside each training fold, 95% CI;
* ``rli.probe_layers(policy, obs, y, controls=False)``: every layer of the actor trunk
  from one capture (the full profile), each with the same CV'd ridge;
* the reference toolkit: ``LinearProbe().fit(model, 5, obs, y)`` + ``score()`` (one 80/20
  split, ``Ridge(alpha=1.0)``).

The floor is the best time of the chosen chunk size over every round it ran (calibration and
timed), and every timed run starts after a ``--settle`` pause, so that no run pays for the
worker threads the run before it left spinning.

Beside the runs, the floors of the two other parts of an exact probe are timed on the
captured activations themselves, each at its best on both cores (one call per set with two
BLAS threads, or the calls shared by two threads with one BLAS thread each):

* the float64 Gram products, one ``xᵀx`` per (layer, fold) over all of the fold's rows;
* the eigendecompositions, one per (layer, training set) and per layer for the full fit.

Their sum with the forward floor is a lower bound for any engine that computes the same
float64 statistics (it leaves out centring, casting and everything else), and the ratio of
rli to it says how much of the time is the engine's own.

The load average (1 minute) is printed before and after: the ratios, measured side by side
in one process, are what to compare between machines.

Run: ``python benchmarks/bench_probe.py [--n 100000] [--repeats 7] [--write FILE]``
(``--write benchmarks/results_probe.md`` keeps the markdown section in a file).
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from common import cpu_model, interleaved, reference_mlp

import rli
from rli.threads import one_blas_thread, run_all

CHUNKS = (512, 1024, 2048, 4096, 8192, 16384, 32768)
GRAM_BLOCKS = (1024, 2048, 4096, 8192)


def chunked(model: torch.nn.Module, batch: torch.Tensor, size: int) -> Callable[[], None]:
    """The bare forward pass of ``batch`` in chunks of ``size`` rows (outputs discarded)."""
    def run() -> None:
        with torch.no_grad():
            for start in range(0, len(batch), size):
                model(batch[start:start + size])
    return run


def both_cores(tasks: list[Callable[[], object]]) -> dict[str, Callable[[], None]]:
    """Two ways to run ``tasks`` on every core: one after another with multi-threaded BLAS, or shared by the
    worker threads with one BLAS thread each (the faster of the two is the floor)."""
    def serial() -> None:
        for task in tasks:
            task()

    def threads() -> None:
        with one_blas_thread():
            run_all(tasks)  # type: ignore[arg-type]  # the tasks' results are discarded
    return {"serial": serial, "threads": threads}


def part_floors(layers: dict[str, np.ndarray], single: str, folds: int,
                repeats: int) -> dict[str, tuple[float, float]]:
    """The best seconds of the float64 Gram products and of the eigendecompositions, for the layer ``single``
    alone (``"one"``) and for all ``layers`` (``"all"``).

    Rows go to ``folds`` folds at random. The Gram products of every (layer, fold) are timed in blocks of
    each of :data:`GRAM_BLOCKS` rows (whole folds too) and the best kept; the eigendecompositions are those of
    each training set's and of all rows' Gram matrix, ``folds + 1`` per layer.
    """
    ids = np.random.default_rng(1).permutation(len(layers[single])) % folds
    centred, trains = {}, {}
    for name, values in layers.items():
        parts = [np.ascontiguousarray(values[ids == f], dtype=np.float64) for f in range(folds)]
        centred[name] = [part - part.mean(axis=0) for part in parts]
        grams = [part.T @ part for part in centred[name]]
        total = sum(grams)
        trains[name] = [total - g for g in grams] + [total]
    floors = {}
    for set_name, names in (("one", [single]), ("all", list(layers))):
        runs: dict[str, Callable[[], None]] = {}
        for block in (*GRAM_BLOCKS, None):
            blocks = [a[i:i + (block or len(a))] for name in names for a in centred[name]
                      for i in range(0, len(a), block or len(a))]
            runs |= {f"gram {block} {how}": run for how, run in both_cores([lambda b=b: b.T @ b for b in blocks]).items()}
        runs |= {f"eigh {how}": run for how, run in both_cores(
            [lambda g=g: np.linalg.eigh(g) for name in names for g in trains[name]]).items()}  # dsyevd, GIL released
        times, _ = interleaved(runs, repeats)
        floors[set_name] = (min(min(t) for run, t in times.items() if run.startswith("gram")),
                            min(min(t) for run, t in times.items() if run.startswith("eigh")))
    return floors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--calibration", type=int, default=5, help="rounds that choose the floor's chunk size")
    parser.add_argument("--chunks", type=int, nargs="+", default=list(CHUNKS), help="chunk sizes tried for the floor")
    parser.add_argument("--settle", type=float, default=0.2, help="seconds of pause before each timed run")
    parser.add_argument("--write", type=Path, help="also write the markdown section to this file")
    args = parser.parse_args()

    from rl_interrogate.probing import LinearProbe

    model = reference_mlp()
    policy = rli.load_policy(model)
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(args.n, 28)).astype(np.float32)
    y = np.sin(obs[:, 0]) + np.tanh(2 * obs[:, 1]) + 0.1 * obs[:, 2] ** 3
    batch = torch.from_numpy(obs)
    load_start = os.getloadavg()[0]

    sizes, _ = interleaved({str(c): chunked(model, batch, c) for c in args.chunks}, args.calibration, args.settle)
    chunk = int(min(sizes, key=lambda c: min(sizes[c])))
    floor = f"best chunked forward (chunk {chunk})"

    def whole() -> None:
        with torch.no_grad():
            model(batch)

    def reference() -> float:
        return LinearProbe().fit(model, 5, obs, y).score()

    single_name, sweep_name = "rli.probe(layer=5)", "rli.probe_layers (all 7)"
    runs = {
        floor: chunked(model, batch, chunk),
        "bare forward pass (one batch)": whole,
        single_name: lambda: rli.probe(policy, obs, y, 5, controls=False),
        sweep_name: lambda: rli.probe_layers(policy, obs, y, controls=False),
        "reference LinearProbe(5)": reference,
    }
    times, results = interleaved(runs, args.repeats, args.settle)
    times[floor] += sizes[str(chunk)]  # the floor is its best over every round it ran
    activations = rli.capture(policy, obs)
    parts = part_floors(dict(activations), policy.layer(5).name, folds=5, repeats=args.repeats)
    load_end = os.getloadavg()[0]
    best = {name: min(t) for name, t in times.items()}
    median = {name: statistics.median(t) for name, t in times.items()}
    single, sweep = results[single_name], results[sweep_name]
    bound = {single_name: best[floor] + sum(parts["one"]), sweep_name: best[floor] + sum(parts["all"])}

    lines = [
        "## bench_probe",
        "",
        f"{datetime.datetime.now().isoformat(timespec='minutes')} · {os.cpu_count()} cores ({cpu_model()}) · "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), numpy {np.__version__} · load average "
        f"{load_start:.2f} at the start, {load_end:.2f} at the end · n = {args.n}, best/median of {args.repeats} "
        f"interleaved repeats, {args.settle:g} s pause before each",
        "",
        "Chunk sizes for the floor (best of " + str(args.calibration) + " rounds, s): "
        + ", ".join(f"{c}: {min(t):.3f}" for c, t in sizes.items()),
        "",
        "| run | best (s) | median (s) | best / floor | median / floor | held-out R² |",
        "|---|---|---|---|---|---|",
    ]
    r2 = {
        single_name: f"{single.r2:.4f} [{single.ci[0]:.4f}, {single.ci[1]:.4f}] (5-fold, GCV)",
        sweep_name: " / ".join(f"{v:.3f}" for v in sweep.r2),
        "reference LinearProbe(5)": f"{results['reference LinearProbe(5)']:.4f} (one 80/20 split, alpha 1)",
    }
    for name in runs:
        lines.append(f"| {name} | {best[name]:.3f} | {median[name]:.3f} | {best[name] / best[floor]:.2f}× | "
                     f"{median[name] / median[floor]:.2f}× | {r2.get(name, '')} |")
    lines += [
        "",
        "Floors of the other parts (best s, on the captured activations, 5 folds): layer 5 "
        f"{parts['one'][0]:.3f} Gram + {parts['one'][1]:.3f} eigh; all 7 layers {parts['all'][0]:.3f} Gram + "
        f"{parts['all'][1]:.3f} eigh",
        "",
        "| | rli best / floor | target | lower bound (forward + Gram + eigh floors) / floor | rli / lower bound |",
        "|---|---|---|---|---|",
    ]
    for name, target in ((single_name, 1.2), (sweep_name, 2.5)):
        lines.append(f"| {name} | {best[name] / best[floor]:.2f}× | ≤ {target}× | {bound[name] / best[floor]:.2f}× | "
                     f"{best[name] / bound[name]:.2f}× |")
    lines += ["", f"- reference / one layer: {best['reference LinearProbe(5)'] / best[single_name]:.2f}×"]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        args.write.write_text(text)


if __name__ == "__main__":
    main()
