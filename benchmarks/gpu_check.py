"""Device check (#19): capture, probes and rollouts on another device give the CPU's numbers within float tolerance.

Run from the repository root::

    python benchmarks/gpu_check.py --device cuda            # the shipped formation and CartPole checkpoints
    python benchmarks/gpu_check.py --device cuda --json out.json

Each shipped checkpoint is loaded twice, on the reference device (``--reference``, the CPU) and on
``--device``. Observations are collected once, by the reference policy (``--probe-episodes`` episodes of
rollouts, ``--n-obs`` rows), and both policies see the same ones. Compared, with a tolerance fixed here in
advance (not tuned to a result):

* capture: for every actor layer, ``max |a_device - a_cpu| / max |a_cpu|`` ≤ 1e-4 (float32 kernels sum
  in another order; a wrong weight, dtype or normaliser gives differences of order 1);
* ``rli.probe_layers`` held-out R² per layer (same folds): ``|ΔR²|`` ≤ 1e-5;
* ``rli.evaluate`` over ``--episodes`` seeded episodes: the same seeds give the same episode lengths and
  returns within 1e-4 × max(1, |return|); any episode that diverges is a row of its own.

Exit status: 0 when every row is within tolerance, 1 when any is not (the table says which), 2 when
the device is not available (the message says why). benchmarks/README.md records the runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

import rli
from rli.observations import ObsSet

ROOT = Path(__file__).resolve().parents[1]
#: name -> (checkpoint, environment, probe target: a label of the rollouts)
CHECKPOINTS: dict[str, tuple[Path, str, str]] = {
    "formation": (ROOT / "examples" / "checkpoints" / "formation_ppo_seed42.zip", "rli/FormationFlight-v0",
                  "true_upwash"),
    "cartpole": (ROOT / "examples" / "checkpoints" / "cartpole_ppo_seed0.zip", "CartPole-v1", "step"),
}
CAPTURE_TOL = 1e-4
R2_TOL = 1e-5
RETURN_TOL = 1e-4


@dataclass(frozen=True)
class Row:
    """One comparison: ``diff`` is the discrepancy in the units of ``tolerance`` (see the module docstring)."""

    checkpoint: str
    quantity: str
    where: str
    reference: float
    other: float
    diff: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return bool(self.diff <= self.tolerance)


def compare_capture(name: str, reference: rli.Policy, other: rli.Policy, obs: Any) -> list[Row]:
    """Rows for every actor layer: the largest activation difference relative to the reference's scale."""
    layers = [layer.name for layer in reference.actor_layers]
    expected, got = rli.capture(reference, obs, layers), rli.capture(other, obs, layers)
    rows = []
    for layer in reference.actor_layers:
        a, b = expected[layer.name].astype(np.float64), got[layer.name].astype(np.float64)
        scale = float(np.abs(a).max()) or 1.0
        diff = float(np.abs(a - b).max()) / scale if a.shape == b.shape else float("inf")
        rows.append(Row(name, "capture max|Δ|/scale", layer.name, scale, float(np.abs(b).max()), diff, CAPTURE_TOL))
    return rows


def compare_probes(name: str, reference: rli.Policy, other: rli.Policy, obs: Any, target: Any,
                   alpha: float | None = None) -> list[Row]:
    """Rows for every actor layer: the held-out R² of the same ridge probe (same folds) on both devices.

    ``alpha`` fixes the ridge penalty; by default it is chosen in-fold, as :func:`rli.probe` does.
    """
    layers = [layer.name for layer in reference.actor_layers]
    expected = rli.probe_layers(reference, obs, target, layers, controls=False, alphas=alpha)
    got = rli.probe_layers(other, obs, target, layers, controls=False, alphas=alpha)
    return [Row(name, "probe R²", a.layer, a.r2, b.r2, abs(a.r2 - b.r2), R2_TOL)
            for a, b in zip(expected.results, got.results, strict=True)]


def compare_returns(name: str, reference: rli.Policy, other: rli.Policy, env: str, episodes: int, seed: int,
                    max_steps: int | None = None) -> list[Row]:
    """Rows for every seeded episode: returns relative to max(1, |return|); a length mismatch is a divergence."""
    expected = rli.evaluate(reference, env, episodes, seed, max_steps=max_steps)
    got = rli.evaluate(other, env, episodes, seed, max_steps=max_steps)
    rows = []
    for i, (a, b, n_a, n_b) in enumerate(zip(expected.returns, got.returns, expected.lengths, got.lengths,
                                             strict=True)):
        diff = abs(float(a) - float(b)) / max(1.0, abs(float(a))) if n_a == n_b else float("inf")
        where = f"episode seed {int(expected.seeds[i])}" + ("" if n_a == n_b else f" (length {n_a} vs {n_b})")
        rows.append(Row(name, "return", where, float(a), float(b), diff, RETURN_TOL))
    return rows


def check(device: str, reference: str = "cpu", names: tuple[str, ...] = tuple(CHECKPOINTS), *, n_obs: int = 1000,
          episodes: int = 5, probe_episodes: int = 10, seed: int = 0, max_steps: int | None = None,
          alpha: float | None = None) -> list[Row]:
    """Every comparison for the checkpoints ``names``; raises :class:`rli.RliError` if a device is unavailable."""
    rows = []
    for name in names:
        path, env, label = CHECKPOINTS[name]
        ref = rli.load_policy(path, device=reference)
        other = rli.load_policy(path, device=device)
        obs = ObsSet.from_rollouts(env, ref, n=n_obs, seed=seed, episodes=probe_episodes, max_episode_steps=max_steps)
        rows += compare_capture(name, ref, other, obs)
        rows += compare_probes(name, ref, other, obs, obs.labels[label], alpha)
        rows += compare_returns(name, ref, other, env, episodes, seed, max_steps)
    return rows


def table(rows: list[Row]) -> str:
    """The rows as a fixed-width table, one line each, then a verdict line."""
    lines = [f"{'checkpoint':<10} {'quantity':<21} {'where':<34} {'reference':>12} {'other':>12} {'diff':>10} "
             f"{'tol':>7}  ok"]
    for r in rows:
        lines.append(f"{r.checkpoint:<10} {r.quantity:<21} {r.where:<34} {r.reference:>12.6g} {r.other:>12.6g} "
                     f"{r.diff:>10.3g} {r.tolerance:>7.0e}  {'yes' if r.ok else 'NO'}")
    bad = [r for r in rows if not r.ok]
    lines.append(f"{len(rows) - len(bad)} of {len(rows)} within tolerance" + (
        "" if not bad else f"; beyond it: {', '.join(sorted({f'{r.checkpoint} {r.quantity}' for r in bad}))}"))
    return "\n".join(lines)


def machine(device: str) -> dict[str, str]:
    """What ran the check: torch's version and the device's name."""
    import torch

    info = {"torch": torch.__version__, "device": device}
    if torch.device(device).type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(torch.device(device))
    return info


def main(argv: list[str] | None = None) -> int:
    """The command line: prints the table; returns the exit status (0 ok, 1 mismatch, 2 device unavailable)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="the device to check (default cuda)")
    parser.add_argument("--reference", default="cpu", help="the device whose numbers are the reference (default cpu)")
    parser.add_argument("--only", nargs="+", choices=sorted(CHECKPOINTS), default=list(CHECKPOINTS))
    parser.add_argument("--n-obs", type=int, default=1000, help="observations captured and probed")
    parser.add_argument("--episodes", type=int, default=5, help="seeded episodes evaluated")
    parser.add_argument("--probe-episodes", type=int, default=10,
                        help="episodes of rollouts captured and probed (folds are split by episode)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, help="cut episodes at this many steps (default: the env's own limit)")
    parser.add_argument("--alpha", type=float, help="fix the probes' ridge penalty (default: chosen in-fold)")
    parser.add_argument("--json", type=Path, help="also write the rows and the machine here")
    args = parser.parse_args(argv)
    from torch import nn

    for device in (args.reference, args.device):
        try:  # rli's own device check, on a one-layer network, before any heavy work
            rli.load_policy(nn.Sequential(nn.Linear(1, 1)), device=device)
        except rli.RliError as err:
            print(f"gpu_check: {err}", file=sys.stderr)
            return 2
    rows = check(args.device, args.reference, tuple(args.only), n_obs=args.n_obs, episodes=args.episodes,
                 probe_episodes=args.probe_episodes, seed=args.seed, max_steps=args.max_steps, alpha=args.alpha)
    print(f"{args.device} against {args.reference}: {machine(args.device)}")
    print(table(rows))
    if args.json is not None:
        args.json.write_text(json.dumps({"machine": machine(args.device), "reference": args.reference,
                                         "rows": [dict(asdict(r), ok=r.ok) for r in rows]}, indent=1))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
