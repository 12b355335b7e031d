"""rli.training_plots draws the records' numbers (not pixels checked), and docs/training_runs.md runs as written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats as st

from rli.errors import RliError
from rli.runstats import stratified_bootstrap
from rli.training_plots import metric_curves, what_when_where
from tests.doc_examples import python_blocks, run_blocks

ROOT = Path(__file__).parent.parent


def _records() -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for target in ("upwash", "roll"):
        for layer in (1, 3, 5):
            for step in (0, 10_000, 30_000):
                for seed in ((0,) if step < 30_000 else (0, 1, 2)):
                    value = float(rng.uniform(0, 1))
                    half = 0.02 if layer != 1 else 0.08
                    rows.append({"checkpoint": f"seed_{seed}/rl_model_{step}_steps.zip", "step": step, "seed": seed,
                                 "analysis": "probe", "layer": layer, "target": target, "metric": "r2",
                                 "value": value, "ci_low": value - half, "ci_high": value + half, "spec_key": "k"})
    return rows


def test_what_when_where_draws_the_records():
    rows = _records()
    fig = what_when_where(rows, targets=["roll", "upwash"], wide=0.1)
    assert len(fig.axes) == 3  # two panels and the colour bar
    for ax, target in zip(fig.axes[:2], ["roll", "upwash"]):
        data = fig.rli_data[target]
        assert data["layers"] == [1, 3, 5] and data["steps"] == [0, 10_000, 30_000]
        image = ax.get_images()[0].get_array()
        assert np.array_equal(np.asarray(image), data["values"])
        for i, layer in enumerate(data["layers"]):
            for j, step in enumerate(data["steps"]):
                cell = [r for r in rows if r["target"] == target and r["layer"] == layer and r["step"] == step]
                if len(cell) == 1:
                    assert data["values"][i, j] == cell[0]["value"]
                    assert (data["ci_low"][i, j], data["ci_high"][i, j]) == (cell[0]["ci_low"], cell[0]["ci_high"])
                else:  # three seeds: IQM and its stratified bootstrap
                    values = [r["value"] for r in cell]
                    assert data["values"][i, j] == pytest.approx(st.trim_mean(values, 0.25))
                    est = stratified_bootstrap(values, "iqm", n_resamples=2000, seed=0)
                    assert (data["ci_low"][i, j], data["ci_high"][i, j]) == est.ci
        hatched = [p for p in ax.patches if p.get_hatch()]
        wide = np.sum(data["ci_high"] - data["ci_low"] > 0.1)
        assert len(hatched) == wide and wide >= 3  # layer 1's CIs are 0.16 wide
        texts = {t.get_text() for t in ax.texts}
        assert f"{data['values'][2, 0]:.2f}\n±{(data['ci_high'][2, 0] - data['ci_low'][2, 0]) / 2:.2f}" in texts


def test_metric_curves_draw_values_and_bands(tmp_path):
    rows = [r for r in _records() if r["target"] == "upwash"]
    fig = metric_curves(rows, "r2", threshold=0.9, path=tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 0
    ax = fig.axes[0]
    lines = [line for line in ax.get_lines() if line.get_label().startswith("layer")]
    assert len(lines) == 3
    for line, layer in zip(lines, (1, 3, 5)):
        data = fig.rli_data[layer]
        assert np.array_equal(line.get_xdata(), data["steps"]) and np.array_equal(line.get_ydata(), data["values"])
        single = [r for r in rows if r["layer"] == layer and r["step"] == 0]
        assert data["values"][0] == single[0]["value"] and data["ci_low"][0] == single[0]["ci_low"]
        assert data["n_seeds"] == [1, 1, 3]
        assert "IQM of 3 seeds" in line.get_label()


def test_bad_input():
    rows = _records()
    with pytest.raises(RliError, match="targets"):
        what_when_where(rows, targets=["pitch"])
    with pytest.raises(RliError, match="one target"):
        metric_curves(rows, "r2")
    with pytest.raises(RliError, match="no records with metric"):
        what_when_where(rows, metric="accuracy")
    with pytest.raises(RliError, match="several records"):
        metric_curves(rows + rows, "r2", target="upwash")


@pytest.mark.slow
def test_training_runs_page_examples_run(tmp_path, monkeypatch):
    """Slow: it probes six formation checkpoints and trains PPO briefly (about 40 s on 2 shared cores)."""
    text = (ROOT / "docs" / "training_runs.md").read_text()
    blocks = python_blocks(text)
    assert len(blocks) >= 5
    run_blocks(blocks, "docs/training_runs.md", tmp_path, monkeypatch)
    assert (tmp_path / "what_when_where.png").is_file() and (tmp_path / "probe_store" / "probe_callback.jsonl").is_file()
