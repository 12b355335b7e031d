"""Cache effect of the plugin's assertions: twenty assertions on one policy vs one.

Runs real pytest sessions (subprocesses, so each starts cold) on the shipped
FormationFlight checkpoint and the reference probe grid:

* one test with one ``assert_probe_r2``;
* twenty tests about the same claim (layer 5, upwash) with different thresholds and
  assertion kinds (``assert_probe_r2`` / ``assert_probe_selective``), as a suite that
  pins one claim from several angles would;
* twenty tests over five targets (four each), where only repeated claims hit the cache.

Prints wall times (pytest start-up included) and the ratios to the one-assertion run.

    python benchmarks/bench_plugin.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = f'''
import pytest
import rli
from rli.envs.formation import probe_grid

@pytest.fixture
def rli_policy():
    return rli_policy.cached

rli_policy.cached = rli.load_policy({str(ROOT / "examples/checkpoints/formation_ppo_seed42.zip")!r})
GRID = probe_grid(nominal="reference")

@pytest.fixture
def rli_obs():
    return GRID
'''


def session(body: str) -> float:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "test_bench.py"
        path.write_text(HEADER + textwrap.dedent(body))
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path)],
                                capture_output=True, text=True, cwd=folder, check=False)
        elapsed = time.perf_counter() - start
        if result.returncode != 0:
            raise SystemExit(result.stdout[-3000:])
        return elapsed


def main() -> None:
    one = session("""
        def test_one(rli):
            rli.assert_probe_r2(layer=5, target="upwash", min=0.9)
    """)
    same = session("".join(f"""
def test_same_{i}(rli):
    rli.{f"assert_probe_r2(layer=5, target='upwash', min=0.{50 + i})" if i % 2 else
         f"assert_probe_selective(layer=5, target='upwash', min_selectivity=0.0{i})"}
""" for i in range(20)))
    targets = ["upwash", "rel_x", "rel_y", "distance", "power_saving"]
    mixed = session("".join(f"""
def test_mixed_{i}(rli):
    rli.assert_probe_r2(layer=5, target={targets[i % 5]!r}, min=-1.0)
""" for i in range(20)))
    print(f"1 assertion                         {one:6.1f} s")
    print(f"20 assertions, one claim            {same:6.1f} s   ({same / one:.2f}x)")
    print(f"20 assertions, five targets         {mixed:6.1f} s   ({mixed / one:.2f}x)")


if __name__ == "__main__":
    main()
