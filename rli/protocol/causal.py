"""The interrogation report's sections for causal evidence: attribution shares and activation-patching sweeps.

Each builder takes a result (:class:`rli.attribution.AttributionResult`,
:class:`rli.patch_sweep.PatchSweepResult`) and returns a :class:`rli.report.Section`
(title, a finding paragraph with every number and its interval, a table) that
:func:`rli.report.write_report` renders, as the four protocol steps' sections are.
The finding texts are also available alone (:func:`attribution_finding`,
:func:`patching_finding`) for a report's summary and its ``__str__``.

Example:
    >>> import numpy as np, torch.nn as nn, rli
    >>> from rli.attribution import attribute
    >>> result = attribute(rli.load_policy(nn.Linear(3, 1)), np.ones((4, 3), np.float32), target="action:0",
    ...                    groups=np.arange(4))
    >>> attribution_section(result).title
    'Attribution'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rli.errors import RliError
from rli.report import Section

_MAX_ROWS = 20


def _interval(ci: Any) -> str:
    return f"[{float(ci[0]):.3f}, {float(ci[1]):.3f}]"


def _check(result: Any, kind: str, fields: tuple[str, ...]) -> None:
    missing = [name for name in fields if not hasattr(result, name)]
    if missing:
        raise RliError(f"result must be an {kind} (it lacks {', '.join(missing)}), not {type(result).__name__}")


def attribution_finding(result: Any) -> str:
    """One paragraph: method, target, rows and groups, the largest shares with their 95% CIs, completeness.

    Example:
        >>> import numpy as np, torch.nn as nn, rli
        >>> from rli.attribution import attribute
        >>> net = nn.Linear(2, 1)
        >>> result = attribute(rli.load_policy(net), np.ones((4, 2), np.float32), target="action:0",
        ...                    groups=np.arange(4))
        >>> attribution_finding(result).startswith("ig attribution of action:0")
        True
    """
    _check(result, "AttributionResult", ("method", "target", "shares", "n_rows", "groups", "grouped_by"))
    ranked = sorted(result.shares.values(), key=lambda s: -s.share)
    where = f" at {result.layer}" if result.layer else ""
    groups = int(np.unique(result.groups).size)
    text = (f"{result.method} attribution of {result.target}{where} over {result.n_rows:,} observations "
            f"({groups} groups by {result.grouped_by}; baseline {result.baseline}). ")
    if ranked:
        top = ", ".join(f"{s.name} {s.share:.3f} {_interval(s.ci)}" for s in ranked[:3])
        text += (f"Largest shares of |attribution| (mean over groups, 95% CI): {top}; a uniform spread would give "
                 f"each of the {len(ranked)} regions {1 / len(ranked):.3f} when they partition the input.")
    if result.completeness is not None:
        text += (f" Completeness (sum of attributions − change of the output along the path): largest residual "
                 f"{float(np.max(np.abs(result.completeness))):.3g}.")
    for name in ("infidelity", "sensitivity"):
        values = getattr(result, name, None)
        if values is not None:
            text += f" captum {name}: mean {float(np.mean(values)):.3g}."
    return text


def attribution_section(result: Any, *, figure: tuple[Path, str] | None = None, title: str = "Attribution") -> Section:
    """The attribution section: the finding, a table of every region's share (largest first, 20 at most).

    ``figure`` is an optional ``(png_path, caption)`` (e.g. an overlay of frames).
    """
    finding = attribution_finding(result)
    ranked = sorted(result.shares.values(), key=lambda s: -s.share)
    rows = [[s.name, round(s.share, 4), _interval(s.ci)] for s in ranked[:_MAX_ROWS]]
    section = Section(title, paragraphs=[finding], tables=[(["region", "share of |attribution|", "95% CI"], rows)],
                      figures=[figure] if figure else [])
    if len(ranked) > _MAX_ROWS:
        section.paragraphs.append(f"{len(ranked) - _MAX_ROWS} smaller regions are in report.json.")
    return section


def patching_finding(result: Any) -> str:
    """One paragraph: the metric, the corrupt run's total effect, the significant sites and the largest effects.

    Example:
        >>> import numpy as np, torch, torch.nn as nn, gymnasium as gym, rli
        >>> from rli.patch_sweep import patch_sweep
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 2)),
        ...                          action_space=gym.spaces.Discrete(2))
        >>> x = np.random.default_rng(0).normal(size=(10, 2))
        >>> patching_finding(patch_sweep(policy, x, x, metric="logit", layers=[1])).split(":")[0]
        'Patching (logit, over layer×unit)'
    """
    _check(result, "PatchSweepResult", ("metric", "over", "sites", "effect", "ci", "significant", "total_effect"))
    done = result.patched
    text = (f"Patching ({result.metric}, over {'×'.join(result.over)}): {len(done)} of {len(result.sites)} sites "
            f"patched on {result.n:,} clean/corrupt pairs ({result.n_groups} groups). Running the corrupt "
            f"observations themselves changes the metric by {result.total_effect:+.4g} "
            f"[{result.total_ci[0]:+.4g}, {result.total_ci[1]:+.4g}].")
    significant = [result.sites[i] for i in done if result.significant[i]]
    text += (f" {len(significant)} site(s) change it significantly ({result.correction}-corrected, "
             f"α = {result.alpha:g})")
    text += f": {', '.join(significant[:8])}{' …' if len(significant) > 8 else ''}." if significant else "."
    if len(done):
        best = result.top(1)[0]
        i = result.sites.index(best)
        share = "" if result.total_effect == 0 else f", {result.fraction[i]:.0%} of the total"
        text += (f" Largest effect: {best} {result.effect[i]:+.4g} {_interval(result.ci[i])}{share}.")
    if result.spearman is not None:
        text += f" Attribution-patching screen vs exact effects: Spearman {result.spearman:.3f}."
    return text


def patching_section(result: Any, *, figure: tuple[Path, str] | None = None,
                     title: str = "Activation patching") -> Section:
    """The patching section: the finding and the largest-effect sites (20 at most) with CIs and corrected p-values.

    ``figure`` is an optional ``(png_path, caption)`` (e.g. ``result.heatmap()`` saved as PNG).
    """
    finding = patching_finding(result)
    rows = []
    for name in result.top(min(_MAX_ROWS, max(1, len(result.patched)))) if len(result.patched) else []:
        i = result.sites.index(name)
        rows.append([name, result.layer[i], float(result.effect[i]),
                     f"[{result.ci[i, 0]:+.4g}, {result.ci[i, 1]:+.4g}]", float(f"{result.p_adjusted[i]:.3g}"),
                     "yes" if result.significant[i] else "no"])
    return Section(title, paragraphs=[finding], figures=[figure] if figure else [],
                   tables=[(["site", "layer", "effect", "95% CI", "adjusted p", "significant"], rows)])
