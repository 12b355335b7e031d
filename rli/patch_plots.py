"""Heat maps of activation-patching sweeps (:func:`rli.patch_sweep.patch_sweep`).

Example:
    >>> import numpy as np, torch, torch.nn as nn, gymnasium as gym, rli
    >>> from rli.patch_sweep import patch_sweep
    >>> from rli.patch_plots import patch_heatmap
    >>> _ = torch.manual_seed(0)
    >>> policy = rli.load_policy(nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 2)),
    ...                          action_space=gym.spaces.Discrete(2))
    >>> x = np.random.default_rng(0).normal(size=(30, 2))
    >>> figure = patch_heatmap(patch_sweep(policy, x, -x, metric="logit", layers=[0, 1]))
    >>> len(figure.axes) >= 1
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rli.errors import RliError


def patch_heatmap(result: Any, *, layer: str | None = None, ax: Any = None, cmap: str = "RdBu_r") -> Any:
    """A matplotlib Figure of a sweep's effects: a layers × sites matrix, or one layer in its own shape.

    Whole-layer sweeps are drawn as bars with their CIs. With ``layer=``, that layer's
    sites are drawn alone (conv positions as an H × W map, channels and units as a
    row). Sites significant after the correction are marked ``*``; sites screened out
    are blank. Colours are symmetric around 0 (``cmap`` diverging).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if ax is None:  # a Figure on its own Agg canvas: not registered with pyplot, no global backend change
        figure = Figure(figsize=(8, 3), layout="constrained")
        FigureCanvasAgg(figure)
        ax = figure.add_subplot()
    else:
        figure = ax.figure
    title = f"patching effect on {result.metric} (corrupt run: {result.total_effect:+.3g})"
    if result.over == ("layer",):
        x = np.arange(len(result.sites))
        errors = np.abs(result.ci.T - result.effect)
        ax.bar(x, result.effect, yerr=np.nan_to_num(errors), color="C0", capsize=3)
        for i in np.flatnonzero(result.significant):
            ax.annotate("*", (x[i], result.effect[i]), ha="center", va="bottom")
        ax.set_xticks(x, result.sites, rotation=45, ha="right")
        ax.axhline(0.0, color="k", lw=0.5)
        ax.set_ylabel("mean change")
        ax.set_title(title)
        return figure
    names = list(dict.fromkeys(result.layer)) if layer is None else [layer]
    if layer is not None and layer not in result.layer:
        raise RliError(f"no site of layer {layer!r} in this sweep; its layers are {names}")
    if layer is not None:
        grid = np.atleast_2d(result.layer_grid(layer))
        marks = np.atleast_2d(np.asarray([s for s, name in zip(result.significant, result.layer) if name == layer])
                              .reshape(grid.shape))
        labels = [layer]
    else:
        width = max(result.layer.count(name) for name in names)
        grid = np.full((len(names), width), np.nan)
        marks = np.zeros((len(names), width), bool)
        for row, name in enumerate(names):
            sites = [i for i, owner in enumerate(result.layer) if owner == name]
            grid[row, :len(sites)] = result.effect[sites]
            marks[row, :len(sites)] = result.significant[sites]
        labels = names
    bound = float(np.nanmax(np.abs(grid))) if np.any(np.isfinite(grid)) else 1.0
    image = ax.imshow(grid, cmap=cmap, vmin=-(bound or 1.0), vmax=bound or 1.0, aspect="auto")
    for r, c in zip(*np.nonzero(marks)):
        ax.text(c, r, "*", ha="center", va="center")
    if grid.shape[0] == len(labels):
        ax.set_yticks(np.arange(len(labels)), labels)
    ax.set_xlabel(result.over[1])
    ax.set_title(title)
    figure.colorbar(image, ax=ax, label="mean change")
    return figure
