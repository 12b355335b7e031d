"""The HTML reports in a real headless browser (Debian's chromium), through scripts/check_report_browser.py.

Skipped only when no Chromium is installed (``apt-get install chromium``).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import rli

SCRIPT = Path(__file__).parent.parent / "scripts" / "check_report_browser.py"
sys.path.insert(0, str(SCRIPT.parent))
from check_report_browser import external_references, find_browser  # noqa: E402

pytestmark = pytest.mark.skipif(find_browser() is None,
                                reason="no Chromium installed (Debian: apt-get install chromium); the browser check "
                                       "of the HTML reports needs one")


def _check(page: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(page), *args], capture_output=True, text=True,
                          timeout=300, check=False)


@pytest.fixture(scope="module")
def interrogation(tmp_path_factory) -> Path:
    """A full interrogation report (all eight figures: the four steps' five and the three causal ones) of a small
    CartPole policy."""
    torch.manual_seed(0)
    policy = rli.load_policy(nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(),
                                           nn.Linear(16, 2)), env="CartPole-v1")
    grid = rli.ObsSet.grid(np.zeros(4, dtype=np.float32), {0: np.linspace(-2, 2, 12), 2: np.linspace(-0.2, 0.2, 10)})
    report = rli.interrogate(policy, "CartPole-v1", target="obs[2]", sensors=[2], probe_obs=grid, episodes=3,
                             n_obs=200, ks=[1, 2], candidates=2, progress=False,
                             grid_axes=[{"index": 2, "label": "pole angle", "unit": "rad"},
                                        {"index": 0, "label": "cart position", "unit": "m"}])
    out = tmp_path_factory.mktemp("interrogation")
    report.save(out, command="rli interrogate tiny.pt")
    return out / "report.html"


def test_every_figure_of_the_interrogation_report_loads_in_chromium(interrogation, tmp_path):
    shot = tmp_path / "page.png"
    done = _check(interrogation, "--images", "8", "--screenshot", str(shot))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(": ok, ") == 8 and "all checks passed" in done.stdout
    assert shot.read_bytes().startswith(b"\x89PNG")


def test_the_pytest_session_report_renders_in_the_same_style(interrogation, tmp_path):
    from pytest_rli.report import write_session_report

    metric = {"assertion": "assert_probe_r2", "key": "k", "metric": "r2", "value": 0.98, "threshold": 0.95,
              "op": ">=", "higher_is_better": True, "passed": True, "ci": [0.97, 0.99], "layer": "actor.5",
              "target": "upwash", "baseline": None, "regressed": False, "details": {}}
    write_session_report(tmp_path, {"tests/test_x.py::test_upwash": {"outcome": "passed", "metrics": [metric]}})
    page = tmp_path / "report.html"
    done = _check(page, "--images", "0")
    assert done.returncode == 0, done.stdout + done.stderr

    def style(path: Path) -> str:
        return re.search(r"<style>(.*?)</style>", path.read_text(), re.DOTALL).group(1)

    assert style(page) == style(interrogation)


def test_the_checker_catches_a_broken_image_and_an_outside_reference(tmp_path):
    page = tmp_path / "report.html"
    page.write_text('<!doctype html><html><head><meta charset="utf-8"><link rel="stylesheet" href="style.css">'
                    '</head><body><img alt="broken" src="data:image/png;base64,AAAA"></body></html>')
    done = _check(page, "--images", "1")
    assert done.returncode == 1
    assert "image 0 did not load (broken)" in done.stdout and "refers outside the page: style.css" in done.stdout
    assert external_references('<img src="data:image/png;base64,x"><a href="#top">') == []
