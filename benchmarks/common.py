"""Helpers shared by the benchmark scripts in this folder.

The scripts are run as ``python benchmarks/bench_x.py``, so this folder is ``sys.path[0]``
and they import these with ``from common import ...`` (benchmarks is not a package).

torch is imported only inside :func:`reference_mlp`, so that importing this module costs
nothing to scripts that do not build the model (bench_env) or that import torch late on
purpose (bench_memory, whose fresh child processes measure their own peak memory).
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn


def cpu_model() -> str:
    """The CPU's "model name" from /proc/cpuinfo; else ``platform.processor()``, else ``"unknown"``."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def interleaved(runs: dict[str, Callable[[], object]], repeats: int,
                settle: float = 0.0) -> tuple[dict[str, list[float]], dict[str, object]]:
    """Seconds per run of every variant, and the last result of each.

    Every variant is called once as a warm-up, then ``repeats`` rounds each run every variant
    once, in order, so that changes in machine load hit them alike. With ``settle`` (seconds),
    each run starts after that long a pause, so that no run pays for the worker threads the
    run before it left spinning (OpenBLAS's and OpenMP's threads busy-wait for a while after
    their work: measured, the bench_probe floor right after the reference's threaded scikit-learn
    fit took 1.6–1.8× its time after a 0.2 s pause).
    """
    results = {name: run() for name, run in runs.items()}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            time.sleep(settle)
            start = time.perf_counter()
            results[name] = run()
            times[name].append(time.perf_counter() - start)
    return times, results


def reference_mlp() -> nn.Sequential:
    """The benchmarks' 28→256→256→128→4 Tanh MLP, built right after ``torch.manual_seed(0)`` (same weights every time)."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(28, 256), nn.Tanh(), nn.Linear(256, 256), nn.Tanh(),
                         nn.Linear(256, 128), nn.Tanh(), nn.Linear(128, 4))
