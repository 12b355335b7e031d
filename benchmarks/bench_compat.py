"""rli.compat against rl_interrogate 0.1.0: the 100k-observation probe, same process, same numbers.

``LinearProbe().fit(model, 5, obs, y).score()`` on 100,000 observations through a
28→256→256→128→4 Tanh MLP (layer 5: the third Tanh, width 128), for the reference and
for ``rli.compat``, interleaved in every repeat after one warm-up each; then the same
for the activation capture alone (the reference's ``_extract_activations`` against
rli.compat's, i.e. ``rli.capture``), and the per-call cost of ``AblationHook`` and
``ActivationPatcher`` on one observation. Checks that the two R² agree to 1e-6 (exit
status 1 if not) and prints the machine.

Run: ``python benchmarks/bench_compat.py [--n 100000] [--repeats 7]``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import timeit

import numpy as np
import rl_interrogate
import rl_interrogate.probing
import torch
from common import cpu_model, interleaved, reference_mlp
from torch import nn

import rli.compat
import rli.compat.probing


def _per_call_us(model: nn.Module, x: torch.Tensor, number: int = 500) -> float:
    with torch.no_grad():
        return min(timeit.repeat(lambda: model(x), number=number, repeat=5)) / number * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    model = reference_mlp()
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(args.n, 28)).astype(np.float32)
    y = np.sin(obs[:, 12]) + 0.5 * obs[:, 9] * obs[:, 10] + 0.1 * rng.normal(size=args.n)

    times, results = interleaved({
        "reference `LinearProbe().fit(model, 5, obs, y).score()`":
            lambda: rl_interrogate.LinearProbe().fit(model, 5, obs, y).score(),
        "rli.compat `LinearProbe().fit(model, 5, obs, y).score()`":
            lambda: rli.compat.LinearProbe().fit(model, 5, obs, y).score(),
        "reference activations only (`_extract_activations`: 512-row chunks, whole network)":
            lambda: rl_interrogate.probing._extract_activations(model, 5, obs),
        "rli.compat activations only (`rli.capture`: 8192-row chunks, stops after layer 5)":
            lambda: rli.compat.probing._extract_activations(model, 5, obs),
    }, args.repeats)
    names = list(times)
    r2_reference, r2_compat = results[names[0]], results[names[1]]
    same_activations = np.array_equal(results[names[2]], results[names[3]])

    x, counterfactual = torch.from_numpy(obs[:1]), torch.from_numpy(obs[1:2])
    direction = np.random.default_rng(1).normal(size=128)
    per_call = {"bare forward": _per_call_us(model, x)}
    for label, module in (("reference", rl_interrogate), ("rli.compat", rli.compat)):
        hook = module.AblationHook(model, 5, direction=direction)
        per_call[f"{label} AblationHook"] = _per_call_us(model, x)
        hook.remove()
        patcher = module.ActivationPatcher(model, 5, counterfactual)
        per_call[f"{label} ActivationPatcher"] = _per_call_us(model, x)
        patcher.remove()

    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"{datetime.date.today().isoformat()}: nproc {os.cpu_count()}, CPU {cpu_model()!r}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), load average {load}; n = {args.n}, {args.repeats} repeats\n")
    print("| variant | best s | median s |")
    print("|---|---:|---:|")
    for name in names:
        print(f"| {name} | {min(times[name]):.3f} | {statistics.median(times[name]):.3f} |")
    best = [min(times[name]) for name in names]
    median = [statistics.median(times[name]) for name in names]
    print(f"\nspeed-up of rli.compat (reference time / compat time): probe {best[0] / best[1]:.2f}× best, "
          f"{median[0] / median[1]:.2f}× median; activations {best[2] / best[3]:.2f}× best, "
          f"{median[2] / median[3]:.2f}× median")
    print(f"R²: reference {r2_reference!r}, rli.compat {r2_compat!r}, |difference| {abs(r2_reference - r2_compat):.3g}; "
          f"activations bit-identical: {same_activations}")
    print("\nper forward pass on one observation (best of 5 × 500 calls, µs): "
          + ", ".join(f"{name} {us:.0f}" for name, us in per_call.items()))
    return 0 if abs(r2_reference - r2_compat) <= 1e-6 else 1


if __name__ == "__main__":
    sys.exit(main())
