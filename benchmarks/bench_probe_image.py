"""Probe cost on an image policy: what the controls add when the raw observation is wide.

A small SB3-style CNN (``Conv2d`` trunk, ``Flatten``, ``Linear(·, 256)``, ``ReLU``, a 4-action head)
over 3×36×36 observations with uint8-like pixel values (integers 0..255, as float32), 2,000 rows,
target a smooth function of the image (mean brightness of one quadrant of one channel, plus a
contrast term). Times (best and median of interleaved repeats after a warm-up, same data, same
process):

* the bare forward pass of the 2,000 images (``model(x)`` under ``no_grad``, one batch), the floor
  of any probe;
* ``rli.probe(policy, obs, y, layer=<the 256-wide ReLU>, controls=False)``;
* the same probe with controls (3 untrained networks, 3 label shuffles and the raw-observation
  control: ridge on d = 3,888 pixel features from 2,000 rows, which is wider than it is tall, so
  rli solves it in the dual, n×n kernel form);
* the raw-observation control alone, as rli computes it inside the probe (:mod:`rli.moments`: the
  5 folds' standardised dual-form fits, penalty by GCV, held-out R²), and as scikit-learn would:
  ``make_pipeline(StandardScaler(), RidgeCV(alphas=grid))`` on the same 5 folds (its ``RidgeCV``
  also switches to the kernel form when d > n).

Target: controls add at most 3× to a probe (with controls / without ≤ 3).

Run: ``python benchmarks/bench_probe_image.py [--n 2000] [--repeats 5] [--write FILE]``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
from pathlib import Path

import numpy as np
import torch
from common import cpu_model, interleaved
from torch import nn

import rli
from rli.moments import accumulate, fold_order, ridge_moments


def image_cnn() -> nn.Sequential:
    """NatureCNN-like trunk for 3×36×36 inputs scaled to [0, 1] inside, built after ``torch.manual_seed(0)``."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 32, 5, stride=2), nn.ReLU(), nn.Conv2d(32, 64, 3, stride=2), nn.ReLU(),
                         nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(), nn.Flatten(), nn.Linear(64 * 5 * 5, 256),
                         nn.ReLU(), nn.Linear(256, 4))


def images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` 3×36×36 images of integer pixel values 0..255 (a dark border stays 0: constant pixels) and a target."""
    rng = np.random.default_rng(seed)
    blobs = rng.uniform(0, 1, size=(n, 3, 1, 1)) * np.sin(np.linspace(0, np.pi, 36))[None, None, :, None]
    x = 200 * blobs * np.sin(np.linspace(0, np.pi, 36))[None, None, None, :] + rng.uniform(0, 55, size=(n, 3, 36, 36))
    x[:, :, :2, :] = 0.0
    x = np.floor(x).astype(np.float32)
    y = x[:, 0, :18, :18].mean(axis=(1, 2)) / 255 + 0.5 * (x[:, 1].std(axis=(1, 2)) / 255)
    return x, y.astype(np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--write", type=Path, help="also write the markdown section to this file")
    args = parser.parse_args()

    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = image_cnn()
    policy = rli.load_policy(model, obs_shape=(3, 36, 36))
    layer = 8  # the 256-wide ReLU, the last hidden layer
    obs, y = images(args.n)
    batch = torch.from_numpy(obs)
    grid = tuple(10.0 ** np.linspace(-2, 4, 13))

    def forward() -> None:
        with torch.no_grad():
            model(batch)

    flat = obs.reshape(len(obs), -1)
    ids = np.empty(len(obs), dtype=np.int64)
    for f, (_, test) in enumerate(KFold(5, shuffle=True, random_state=0).split(flat)):
        ids[test] = f

    def rli_raw() -> float:
        moments = ridge_moments(5, flat.shape[1], len(flat))
        accumulate([(moments, flat, y[:, None])], *fold_order(ids, 5))
        scores = []
        for f in range(5):
            fit = moments.fit(f, standardize=True)
            scores.append(moments.r2(f, *fit.coef(fit.choose(grid, slice(0, 1)), slice(0, 1)), slice(0, 1))[0])
        return float(np.mean(scores))

    def sklearn_raw() -> float:
        pipe = make_pipeline(StandardScaler(), RidgeCV(alphas=grid))
        return float(np.mean(cross_val_score(pipe, obs.reshape(len(obs), -1).astype(np.float64), y,
                                             cv=KFold(5, shuffle=True, random_state=0))))

    runs = {
        "bare forward pass": forward,
        "rli.probe, controls=False": lambda: rli.probe(policy, obs, y, layer, controls=False),
        "rli.probe, controls=True": lambda: rli.probe(policy, obs, y, layer),
        "rli raw-pixel control alone (5 folds)": rli_raw,
        "scikit-learn raw-pixel RidgeCV (5 folds)": sklearn_raw,
    }
    times, results = interleaved(runs, args.repeats)
    best = {name: min(t) for name, t in times.items()}
    plain, full = results["rli.probe, controls=False"], results["rli.probe, controls=True"]
    raw = full.controls["raw_obs"]

    lines = [
        "## bench_probe_image",
        "",
        f"{datetime.date.today().isoformat()} · {os.cpu_count()} cores ({cpu_model()}) · torch {torch.__version__}, "
        f"numpy {np.__version__} · load average {os.getloadavg()[0]:.2f} at the end · n = {args.n} images "
        f"3×36×36 (raw width {obs[0].size}), best/median of {args.repeats} interleaved repeats",
        "",
        "| run | best (s) | median (s) | held-out R² |",
        "|---|---|---|---|",
    ]
    r2 = {
        "bare forward pass": "",
        "rli.probe, controls=False": f"{plain.r2:.4f}",
        "rli.probe, controls=True": f"{full.r2:.4f}; raw_obs control {raw:.4f}, untrained "
                                    f"{full.controls['untrained']:.4f}, shuffled {full.controls['shuffled']:.4f}",
        "rli raw-pixel control alone (5 folds)": f"{results['rli raw-pixel control alone (5 folds)']:.4f}",
        "scikit-learn raw-pixel RidgeCV (5 folds)": f"{results['scikit-learn raw-pixel RidgeCV (5 folds)']:.4f}",
    }
    for name, t in times.items():
        lines.append(f"| {name} | {best[name]:.3f} | {statistics.median(t):.3f} | {r2[name]} |")
    lines += [
        "",
        f"- with controls / without: {best['rli.probe, controls=True'] / best['rli.probe, controls=False']:.2f}× "
        "(target ≤ 3×)",
        f"- without controls / bare forward pass: "
        f"{best['rli.probe, controls=False'] / best['bare forward pass']:.2f}×",
        f"- floor of the ratio with these controls (3 untrained forward passes, nothing else): "
        f"{1 + 3 * best['bare forward pass'] / best['rli.probe, controls=False']:.2f}×",
        f"- scikit-learn / rli raw-pixel control: "
        f"{best['scikit-learn raw-pixel RidgeCV (5 folds)'] / best['rli raw-pixel control alone (5 folds)']:.2f}×",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        args.write.write_text(text)


if __name__ == "__main__":
    main()
