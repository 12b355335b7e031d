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

CHUNKS = (512, 1024, 2048, 4096, 8192, 16384, 32768)


def chunked(model: torch.nn.Module, batch: torch.Tensor, size: int) -> Callable[[], None]:
    """The bare forward pass of ``batch`` in chunks of ``size`` rows (outputs discarded)."""
    def run() -> None:
        with torch.no_grad():
            for start in range(0, len(batch), size):
                model(batch[start:start + size])
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--calibration", type=int, default=5, help="rounds that choose the floor's chunk size")
    parser.add_argument("--chunks", type=int, nargs="+", default=list(CHUNKS), help="chunk sizes tried for the floor")
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

    sizes, _ = interleaved({str(c): chunked(model, batch, c) for c in args.chunks}, args.calibration)
    chunk = int(min(sizes, key=lambda c: min(sizes[c])))
    floor = f"best chunked forward (chunk {chunk})"

    def whole() -> None:
        with torch.no_grad():
            model(batch)

    def reference() -> float:
        return LinearProbe().fit(model, 5, obs, y).score()

    runs = {
        floor: chunked(model, batch, chunk),
        "bare forward pass (one batch)": whole,
        "rli.probe(layer=5)": lambda: rli.probe(policy, obs, y, 5, controls=False),
        "rli.probe_layers (all 7)": lambda: rli.probe_layers(policy, obs, y, controls=False),
        "reference LinearProbe(5)": reference,
    }
    times, results = interleaved(runs, args.repeats)
    load_end = os.getloadavg()[0]
    best = {name: min(t) for name, t in times.items()}
    median = {name: statistics.median(t) for name, t in times.items()}
    single, sweep = results["rli.probe(layer=5)"], results["rli.probe_layers (all 7)"]

    lines = [
        "## bench_probe",
        "",
        f"{datetime.datetime.now().isoformat(timespec='minutes')} · {os.cpu_count()} cores ({cpu_model()}) · "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), numpy {np.__version__} · load average "
        f"{load_start:.2f} at the start, {load_end:.2f} at the end · n = {args.n}, best/median of {args.repeats} "
        f"interleaved repeats",
        "",
        "Chunk sizes for the floor (best of " + str(args.calibration) + " rounds, s): "
        + ", ".join(f"{c}: {min(t):.3f}" for c, t in sizes.items()),
        "",
        "| run | best (s) | median (s) | best / floor | median / floor | held-out R² |",
        "|---|---|---|---|---|---|",
    ]
    r2 = {
        "rli.probe(layer=5)": f"{single.r2:.4f} [{single.ci[0]:.4f}, {single.ci[1]:.4f}] (5-fold, GCV)",
        "rli.probe_layers (all 7)": " / ".join(f"{v:.3f}" for v in sweep.r2),
        "reference LinearProbe(5)": f"{results['reference LinearProbe(5)']:.4f} (one 80/20 split, alpha 1)",
    }
    for name in runs:
        lines.append(f"| {name} | {best[name]:.3f} | {median[name]:.3f} | {best[name] / best[floor]:.2f}× | "
                     f"{median[name] / median[floor]:.2f}× | {r2.get(name, '')} |")
    lines += [
        "",
        f"- one layer / floor: {best['rli.probe(layer=5)'] / best[floor]:.2f}× best, "
        f"{median['rli.probe(layer=5)'] / median[floor]:.2f}× median (target ≤ 1.2×)",
        f"- full profile (7 layers) / floor: {best['rli.probe_layers (all 7)'] / best[floor]:.2f}× best, "
        f"{median['rli.probe_layers (all 7)'] / median[floor]:.2f}× median (target ≤ 2.5×)",
        f"- reference / one layer: {best['reference LinearProbe(5)'] / best['rli.probe(layer=5)']:.2f}×",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        args.write.write_text(text)


if __name__ == "__main__":
    main()
