"""Probe cost: 100k observations through a 28→256→256→128→4 Tanh MLP, target a non-linear function of them.

Times (best and median of interleaved repeats after a warm-up, same data, same process):

* the bare forward pass (``model(x)`` under ``no_grad``, one batch);
* ``rli.probe(policy, obs, y, layer=5, controls=False)``: capture, 5-fold ridge with the
  penalty chosen by GCV inside each training fold, 95% CI;
* ``rli.probe_layers(policy, obs, y, controls=False)``: every layer of the actor trunk
  from one capture, each with the same CV'd ridge;
* the reference toolkit: ``LinearProbe().fit(model, 5, obs, y)`` + ``score()`` (one 80/20
  split, ``Ridge(alpha=1.0)``).

Run: ``python benchmarks/bench_probe.py [--n 100000] [--repeats 7] [--write FILE]``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
from pathlib import Path

import numpy as np
import torch
from common import cpu_model, interleaved, reference_mlp

import rli


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--write", type=Path, help="also write the markdown section to this file")
    args = parser.parse_args()

    from rl_interrogate.probing import LinearProbe

    model = reference_mlp()
    policy = rli.load_policy(model)
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(args.n, 28)).astype(np.float32)
    y = np.sin(obs[:, 0]) + np.tanh(2 * obs[:, 1]) + 0.1 * obs[:, 2] ** 3
    batch = torch.from_numpy(obs)

    def forward() -> None:
        with torch.no_grad():
            model(batch)

    def reference() -> float:
        return LinearProbe().fit(model, 5, obs, y).score()

    runs = {
        "bare forward pass": forward,
        "rli.probe(layer=5)": lambda: rli.probe(policy, obs, y, 5, controls=False),
        "rli.probe_layers (all 7)": lambda: rli.probe_layers(policy, obs, y, controls=False),
        "reference LinearProbe(5)": reference,
    }
    times, results = interleaved(runs, args.repeats)
    best = {name: min(t) for name, t in times.items()}
    single, sweep = results["rli.probe(layer=5)"], results["rli.probe_layers (all 7)"]

    lines = [
        "## bench_probe",
        "",
        f"{datetime.date.today().isoformat()} · {os.cpu_count()} cores ({cpu_model()}) · torch {torch.__version__}, "
        f"numpy {np.__version__} · load average {os.getloadavg()[0]:.2f} at the end · n = {args.n}, "
        f"best/median of {args.repeats} interleaved repeats",
        "",
        "| run | best (s) | median (s) | held-out R² |",
        "|---|---|---|---|",
    ]
    r2 = {
        "bare forward pass": "",
        "rli.probe(layer=5)": f"{single.r2:.4f} [{single.ci[0]:.4f}, {single.ci[1]:.4f}] (5-fold, GCV)",
        "rli.probe_layers (all 7)": " / ".join(f"{v:.3f}" for v in sweep.r2),
        "reference LinearProbe(5)": f"{results['reference LinearProbe(5)']:.4f} (one 80/20 split, alpha 1)",
    }
    for name, t in times.items():
        lines.append(f"| {name} | {best[name]:.3f} | {statistics.median(t):.3f} | {r2[name]} |")
    lines += [
        "",
        f"- single layer / bare forward pass: {best['rli.probe(layer=5)'] / best['bare forward pass']:.2f}× "
        "(target ≤ 1.5×)",
        f"- reference / single layer: {best['reference LinearProbe(5)'] / best['rli.probe(layer=5)']:.2f}× "
        "(target ≥ 2×)",
        f"- sweep of every layer / reference single layer: "
        f"{best['rli.probe_layers (all 7)'] / best['reference LinearProbe(5)']:.2f}× (target ≤ 1×)",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        args.write.write_text(text)


if __name__ == "__main__":
    main()
