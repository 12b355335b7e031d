"""PCA of captured activations: ``rli.fit_pca`` against the reference toolkit and a full SVD.

Activations of layer 5 (128 wide) and layer 3 (256 wide) of the benchmarks' 28→256→256→128→4
Tanh MLP on n observations, float64. Times, best and median of interleaved repeats after a warm-up:

* ``rli.fit_pca(acts, 8)``: eigendecomposition of the d×d scatter matrix (tall data);
* ``rl_interrogate.fit_pca(acts, 8)``: scikit-learn's ``PCA(n_components=8)``;
* a full SVD of the centred n×d activations (what ``rli.fit_pca`` did before, kept as the floor
  of the exact-SVD route).

Checks that the three bases agree up to sign (1e-8) and the variance ratios (1e-10); exit status
1 if not.

Run: ``python benchmarks/bench_pca.py [--n 100000] [--repeats 7]``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys

import numpy as np
import rl_interrogate
import torch
from common import cpu_model, interleaved, reference_mlp

import rli


def _svd_pca(acts: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    centred = acts - acts.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    variance = singular**2
    return vt[:k].T, variance[:k] / variance.sum()


def _same_up_to_sign(a: np.ndarray, b: np.ndarray) -> bool:
    signs = np.sign(np.sum(a * b, axis=0))
    return bool(np.all(signs != 0) and np.allclose(a * signs, b, atol=1e-8))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    policy = rli.load_policy(reference_mlp())
    obs = np.random.default_rng(0).normal(size=(args.n, 28)).astype(np.float32)
    captured = rli.capture(policy, obs, [3, 5])
    print(f"{datetime.date.today().isoformat()} · {os.cpu_count()} cores ({cpu_model()}) · torch {torch.__version__}, "
          f"numpy {np.__version__} · n = {args.n}, best/median of {args.repeats} interleaved repeats\n")
    print("| activations | rli.fit_pca (ms) | reference fit_pca / sklearn PCA (ms) | full SVD (ms) | "
          "reference / rli | SVD / rli |")
    print("|---|---|---|---|---|---|")
    agree = True
    for layer in (5, 3):
        acts = captured[layer].astype(np.float64)
        times, results = interleaved({
            "rli": lambda acts=acts: rli.fit_pca(acts, 8),
            "reference": lambda acts=acts: rl_interrogate.fit_pca(acts, 8),
            "svd": lambda acts=acts: _svd_pca(acts, 8),
        }, args.repeats)
        ours = results["rli"]
        for other in ("reference", "svd"):
            agree &= _same_up_to_sign(ours[0], results[other][0]) and np.allclose(ours[1], results[other][1],
                                                                                   rtol=1e-10)
        best = {name: min(t) * 1e3 for name, t in times.items()}
        median = {name: statistics.median(t) * 1e3 for name, t in times.items()}
        print(f"| {acts.shape[0]:,} × {acts.shape[1]} (layer {layer}) | {best['rli']:.1f} / {median['rli']:.1f} | "
              f"{best['reference']:.1f} / {median['reference']:.1f} | {best['svd']:.1f} / {median['svd']:.1f} | "
              f"{best['reference'] / best['rli']:.1f}× | {best['svd'] / best['rli']:.1f}× |")
    print(f"\nbases (up to sign, 1e-8) and variance ratios (1e-10) agree: {agree}; "
          f"load average {os.getloadavg()[0]:.2f} at the end")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
