"""rli.plots: the protocol's figures, drawn from real results of small policies."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import torch
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from torch import nn

import rli
from rli import plots


@pytest.fixture(scope="module")
def field_policy() -> rli.Policy:
    torch.manual_seed(0)
    return rli.load_policy(nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 1)))


@pytest.fixture(scope="module")
def grid() -> rli.ObsSet:
    """x ∈ [−1, 1] (20 points, axis 0) × y ∈ [−2, 2] (30 points, axis 1), labelled with a smooth field."""
    return rli.ObsSet.grid(np.zeros(2), {0: np.linspace(-1, 1, 20), 1: np.linspace(-2, 2, 30)},
                           label_fn=lambda o: {"field": np.sin(2 * o[:, 0]) * o[:, 1]})


@pytest.fixture(scope="module")
def field_probe(field_policy, grid) -> rli.ProbeResult:
    return rli.probe(field_policy, grid, "field", layer=3, controls=False)


@pytest.fixture(scope="module")
def cartpole_policy() -> rli.Policy:
    torch.manual_seed(0)
    return rli.load_policy(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)), env="CartPole-v1")


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def test_figures_never_touch_pyplot_and_render_to_png(field_policy, grid, field_probe):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    fig = plots.probe_heatmap(field_probe, grid, policy=field_policy)
    assert isinstance(fig, Figure) and plt.get_fignums() == before
    assert _png(fig).startswith(b"\x89PNG")


def test_heatmap_panels_share_one_colour_scale_with_labelled_axes_and_colour_bars(field_policy, grid, field_probe):
    axes = [{"index": 1, "label": "lateral", "unit": "m"}, {"index": 0, "label": "along track", "unit": "m"}]
    fig = plots.probe_heatmap(field_probe, grid, policy=field_policy, axes=axes, target_unit="m/s")
    truth, predicted, residual = fig.axes[:3]
    assert [ax.get_title() for ax in (truth, predicted, residual)] == ["truth", "held-out prediction",
                                                                       "prediction − truth"]
    assert truth.get_images()[0].get_clim() == predicted.get_images()[0].get_clim()
    low, high = truth.get_images()[0].get_clim()
    assert low == -high, "the field takes both signs: a diverging scale centred on 0"
    assert truth.get_xlabel() == "lateral (m)" and truth.get_ylabel() == "along track (m)"
    colour_bars = fig.axes[3:]
    assert [bar.get_ylabel() for bar in colour_bars] == ["field (m/s)", "error in field (m/s)"]
    # horizontal axis: y ∈ [−2, 2] in 30 steps, extended by half a step on each side
    half = 4 / 29 / 2
    assert truth.get_images()[0].get_extent() == pytest.approx([-2 - half, 2 + half, -1 - 1 / 19, 1 + 1 / 19])


def test_heatmap_orientation_follows_the_axes(grid):
    values = grid.labels["field"]
    default = plots.probe_heatmap(values, grid, target="field").axes[0].get_images()[0].get_array()
    swapped = plots.probe_heatmap(values, grid, target="field", axes=[0, 1]).axes[0].get_images()[0].get_array()
    assert default.shape == (20, 30) and swapped.shape == (30, 20)
    np.testing.assert_array_equal(default, swapped.T)
    # row i of the default image is x = linspace(-1, 1, 20)[i]: values along a row follow y
    np.testing.assert_allclose(default[5], np.sin(2 * np.linspace(-1, 1, 20)[5]) * np.linspace(-2, 2, 30))


def test_heatmap_predictions_are_held_out(field_policy, grid, field_probe):
    """The map shows each point predicted by the fold model that did not see it: its pooled R² is close to the
    probe's held-out score and below the fit on all the data."""
    held_out = plots.heldout_predictions(field_policy, grid, field_probe)
    y = grid.labels["field"]
    acts = rli.capture(field_policy, grid, [3])[3]
    in_sample = acts @ field_probe.coef + field_probe.intercept

    def r2(prediction):
        return 1 - ((y - prediction) ** 2).sum() / ((y - y.mean()) ** 2).sum()

    assert r2(held_out) == pytest.approx(field_probe.r2, abs=0.02)
    assert r2(held_out) < r2(in_sample)


@pytest.mark.parametrize("call, message", [
    (lambda g, r, p: plots.probe_heatmap(r, g), "pass policy="),
    (lambda g, r, p: plots.probe_heatmap(r, rli.ObsSet(g.obs, dict(g.labels)), policy=p), "needs a 2-D grid"),
    (lambda g, r, p: plots.probe_heatmap(np.zeros(5), g, target="field"), "5 predictions for a grid of 600"),
    (lambda g, r, p: plots.probe_heatmap(np.zeros(600), g), "name the true label"),
    (lambda g, r, p: plots.probe_heatmap(np.zeros(600), g, target="field", axes=[0, 0]), "not the grid's axes"),
    (lambda g, r, p: plots.probe_heatmap(np.zeros(600), g, target="field", axes=["x", 0]), "a grid axis is"),
])
def test_heatmap_bad_input(grid, field_probe, field_policy, call, message):
    with pytest.raises(rli.RliError, match=message):
        call(grid, field_probe, field_policy)


def test_layer_profile_shows_scores_cis_controls_and_the_chosen_layer(field_policy, grid):
    profile = rli.probe_layers(field_policy, grid, "field")
    fig = plots.layer_profile(profile, highlight=3)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0\nLinear", "1\nTanh", "2\nLinear", "3\nTanh",
                                                              "4\nLinear"]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["trained network (95% CI)", "untrained network", "shuffled labels", "raw observation",
                      "chosen layer 3"]
    trained = ax.get_lines()[0]
    np.testing.assert_allclose(trained.get_ydata(), np.maximum(profile.r2, -0.5))
    assert ax.get_ylabel() == "held-out R²" and "by layer" in ax.get_title()


def test_layer_profile_clips_very_negative_scores_and_prints_them(field_policy, grid):
    profile = rli.probe_layers(field_policy, grid, "field", controls=False)
    worse = dataclasses.replace(profile.results[0], score=-2.5, ci=(-3.0, -2.0))
    ax = plots.layer_profile(rli.LayerProfile((worse, *profile.results[1:]))).axes[0]
    assert ax.get_ylim()[0] == -0.5
    assert ax.get_lines()[0].get_ydata()[0] == -0.5
    assert [text.get_text() for text in ax.texts] == ["-2.50"]


def test_ablation_curve_draws_the_mean_drop_and_its_ci_band(cartpole_policy):
    obs = rli.ObsSet.sample(cartpole_policy, 300, seed=0)
    curve = rli.ablation_curve(cartpole_policy, "CartPole-v1", 1, obs, ks=[1, 2, 4, 8], episodes=3)
    ax = plots.ablation_curve(curve).axes[0]
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), [100 * d for d in curve.relative_drops])
    assert any(isinstance(c, PolyCollection) for c in ax.collections), "the CI band"
    assert ax.get_xscale() == "log" and [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "4", "8"]
    alphas = rli.ablation_curve(cartpole_policy, "CartPole-v1", 1, obs, alphas=[0.0, 1.0], episodes=3)
    assert plots.ablation_curve(alphas).axes[0].get_xlabel().startswith("alpha")


def test_subspace_search_marks_the_tolerance_and_the_subspace_found(cartpole_policy):
    obs = rli.ObsSet.sample(cartpole_policy, 300, seed=0)
    search = rli.minimal_subspace(cartpole_policy, "CartPole-v1", 1, obs, candidates=4, method="ordered", episodes=3,
                                  tolerance=0.5)
    ax = plots.subspace_search(search).axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "tolerance 50%" in labels
    assert (f"sufficient: k = {search.k}" in labels) == search.found
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(),
                               [100 * s.comparison.relative_drop for s in search.steps])


def test_pca_scatter_projects_on_the_given_basis_and_subsamples():
    rng = np.random.default_rng(0)
    acts = rng.normal(size=(800, 5)) * [4.0, 2.0, 1.0, 0.5, 0.1]
    basis = np.eye(5)[:, [1, 0]]
    fig = plots.pca_scatter(acts, acts[:, 1], direction=basis, target_name="speed", max_points=300)
    ax = fig.axes[0]
    points = ax.collections[0].get_offsets()
    assert len(points) == 300
    assert ax.get_xlabel().startswith("PC1 (") and fig.axes[1].get_ylabel() == "speed"
    low, high = ax.collections[0].get_clim()
    assert low == -high, "a target of both signs gets a scale centred on 0"
    positive = plots.pca_scatter(acts, np.abs(acts[:, 0]) + 1.0)
    assert positive.axes[0].collections[0].get_cmap().name == "viridis"


@pytest.mark.parametrize("acts, target, basis, message", [
    (np.zeros((10, 3)) + np.arange(3), np.zeros(9), None, "one target value per row"),
    (np.random.default_rng(0).normal(size=(10, 3)), np.zeros(10), np.eye(3)[:, :1], "direction must be"),
])
def test_pca_scatter_bad_input(acts, target, basis, message):
    with pytest.raises(rli.RliError, match=message):
        plots.pca_scatter(acts, target, direction=basis)
