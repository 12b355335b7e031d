"""Peak memory of a ridge probe over 1M observations: streamed, it stays far below 1 GiB.

Each measurement runs in a fresh Python process and reports that process's peak resident
set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``), so nothing measured earlier
inflates it:

* ``baseline``: import rli, build the 28→256→256→128→4 Tanh MLP, nothing else (the floor);
* ``generator``: ``rli.probe(policy, batches(), y, layer=5, controls=False)`` with the 1M
  observations produced 8,192 at a time by a generator (never all in memory);
* ``memmap``: the same observations from a ``np.load(..., mmap_mode="r")`` ``.npy`` file
  (112 MB of float32 on disk; the pages read count as resident while mapped);
* ``in-memory``: the same observations as one float32 array (112 MB) — for contrast.

The answer is checked too: on a 100k subset, the probe streamed from a generator gives
the same R² and CI as the probe on the in-memory array (exactly: same chunks, same sums),
and all 1M-observation modes agree with each other.

Run: ``python benchmarks/bench_memory.py [--n 1000000] [--write FILE]``.
Exits with status 1 if a streamed mode peaks at 1 GiB or more.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import cpu_model, reference_mlp

CHUNK = 8192
LIMIT_MIB = 1024


def _chunk(i: int, rows: int):
    import numpy as np

    return np.random.default_rng([0, i]).normal(size=(rows, 28)).astype(np.float32)


def _batches(n: int):
    for i, start in enumerate(range(0, n, CHUNK)):
        yield _chunk(i, min(CHUNK, n - start))


def _target(obs):
    import numpy as np

    return np.sin(obs[:, 0]) + np.tanh(2 * obs[:, 1]) + 0.1 * obs[:, 2].astype(np.float64) ** 3


def _child(mode: str, n: int, path: str) -> dict:
    """One measurement, in this (fresh) process."""
    import numpy as np

    import rli

    policy = rli.load_policy(reference_mlp())
    y = np.concatenate([_target(batch) for batch in _batches(n)])  # 8 bytes per observation, as a user would hold
    start = time.perf_counter()
    result = None
    if mode == "generator":
        result = rli.probe(policy, _batches(n), y, 5, controls=False, chunk_size=CHUNK)
    elif mode == "memmap":
        result = rli.probe(policy, np.load(path, mmap_mode="r"), y, 5, controls=False, chunk_size=CHUNK)
    elif mode == "in-memory":
        result = rli.probe(policy, np.concatenate(list(_batches(n))), y, 5, controls=False, chunk_size=CHUNK)
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"mode": mode, "n": n, "peak_mib": peak_mib, "seconds": seconds,
            "r2": None if result is None else result.r2, "ci": None if result is None else list(result.ci)}


def _measure(mode: str, n: int, path: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--n", str(n), "--path", path],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--subset", type=int, default=100_000, help="observations for the exactness check")
    parser.add_argument("--write", type=Path, help="also write the markdown results to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--path", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.n, args.path)))
        return 0

    import numpy as np
    import torch

    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "obs.npy")
        stored = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(args.n, 28))
        for i, start in enumerate(range(0, args.n, CHUNK)):
            stored[start:start + CHUNK] = _chunk(i, min(CHUNK, args.n - start))
        stored.flush()
        del stored
        rows = [_measure(mode, args.n, path) for mode in ("baseline", "generator", "memmap", "in-memory")]
        small = [_measure(mode, args.subset, path) for mode in ("generator", "in-memory")]

    exact = small[0]["r2"] == small[1]["r2"] and small[0]["ci"] == small[1]["ci"]
    agree = len({(row["r2"], tuple(row["ci"])) for row in rows[1:]}) == 1
    stamp = datetime.date.today().isoformat()
    lines = [
        f"# Memory: a ridge probe over {args.n:,} observations",
        "",
        f"`python benchmarks/bench_memory.py --n {args.n}` on {stamp}: {os.cpu_count()} cores (nproc), {cpu_model()}, "
        f"Python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}; a machine shared "
        "with other jobs, so the times are indicative, the memory is not affected.",
        "",
        f"`rli.probe(policy, obs, y, layer=5, controls=False)` (5-fold ridge, penalty by GCV inside each fold, 95% CI) "
        f"on a 28→256→256→128→4 Tanh MLP, layer 5 = the 128-wide Tanh, {args.n:,} observations, chunks of {CHUNK:,}. "
        "Peak RSS is `ru_maxrss` of a fresh process per row; `baseline` is that process with rli imported and the "
        "policy built, before any observation exists. The target `y` (8 bytes per observation) is held in memory in "
        "every row.",
        "",
        "| observations from | n | peak RSS | over baseline | probe time | held-out R² [95% CI] |",
        "|---|---:|---:|---:|---:|---|",
    ]
    base = rows[0]["peak_mib"]
    for row in rows:
        score = "—" if row["r2"] is None else f"{row['r2']:.4f} [{row['ci'][0]:.4f}, {row['ci'][1]:.4f}]"
        timing = "—" if row["r2"] is None else f"{row['seconds']:.1f} s"
        lines.append(f"| {row['mode']} | {row['n']:,} | {row['peak_mib']:.0f} MiB | {row['peak_mib'] - base:+.0f} MiB "
                     f"| {timing} | {score} |")
    streamed_peak = max(row["peak_mib"] for row in rows if row["mode"] in ("generator", "memmap"))
    lines += [
        "",
        f"Streamed (generator, memmap) peak: **{streamed_peak:.0f} MiB**, under the 1 GiB budget: "
        f"{'yes' if streamed_peak < LIMIT_MIB else 'NO'}. All three {args.n:,}-observation modes give the same R² and CI: "
        f"{'yes' if agree else 'NO'}.",
        f"Exactness on a {args.subset:,} subset: streamed from a generator R² {small[0]['r2']!r}, CI {small[0]['ci']}; "
        f"in-memory array R² {small[1]['r2']!r}, CI {small[1]['ci']} — identical: {'yes' if exact else 'NO'}.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        args.write.write_text(text)
    return 0 if streamed_peak < LIMIT_MIB and exact and agree else 1


if __name__ == "__main__":
    sys.exit(main())
