"""The :class:`Report` of an interrogation: every result, its JSON, its figures and its self-contained HTML page.

The findings in words live in :mod:`rli.protocol.findings`; the causal sections'
tables in :mod:`rli.protocol.causal`; the page itself is written by
:func:`rli.report.write_report`.
"""

from __future__ import annotations

import datetime
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rli.comparison import Comparison
from rli.observations import ObsSet
from rli.polarity import PolarityResult
from rli.probes import LayerProfile, ProbeResult
from rli.protocol import causal, findings
from rli.protocol.findings import READING_TEXT, STEP_TITLES, layer_of, layer_text, pct, pct_ci, show
from rli.report import Section, write_report
from rli.sweeps import AblationCurve, SubspaceSearch

if TYPE_CHECKING:  # annotations only: captum loads when the causal steps run
    from matplotlib.figure import Figure

    from rli.attribution import AttributionResult
    from rli.patch_sweep import PatchSweepResult


@dataclass(frozen=True, eq=False)
class Report:
    """The outcome of :func:`rli.interrogate`: every result, the settings and where they came from, and the findings.

    ``profile`` (step 1, all actor layers) and ``probe`` (its entry at the chosen
    layer), ``polarity`` (step 2; ``None`` when no sensors were given), ``ablation``
    (step 3: the curve over k, whose first point is PC1 alone, :attr:`pc1`),
    ``subspace`` (step 4). The causal evidence: ``attribution`` (integrated gradients
    of the action, shares by input with CIs), ``patching`` (every actor layer patched
    whole from a counterfactual) and ``patching_units`` (the chosen layer's units);
    ``None`` when skipped, and ``causal`` says how they were run or why not.
    ``findings`` maps each step to a paragraph with its numbers. :meth:`save` writes
    ``report.json``, ``report.html`` and the figures; :meth:`figures` gives the figures.
    """

    policy: str
    fingerprint: str
    settings: dict[str, Any]
    sources: dict[str, str]
    profile: LayerProfile
    probe: ProbeResult
    polarity: PolarityResult | None
    ablation: AblationCurve
    subspace: SubspaceSearch
    meta: dict[str, Any]
    probe_obs: ObsSet = field(repr=False)
    heatmap: np.ndarray | None = field(repr=False)
    scatter: dict[str, Any] = field(repr=False)
    attribution: AttributionResult | None = field(default=None, repr=False)
    patching: PatchSweepResult | None = field(default=None, repr=False)
    patching_units: PatchSweepResult | None = field(default=None, repr=False)
    causal: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    @property
    def pc1(self) -> Comparison:
        """Step 3's headline: the paired comparison with PC1 zeroed."""
        return self.ablation.comparisons[0]

    @property
    def headlines(self) -> dict[str, str]:
        """One short sentence per step: the number that matters."""
        return findings.headlines(self)

    @property
    def findings(self) -> dict[str, str]:
        """One paragraph per step, stating what was measured and what it means, with the numbers."""
        return findings.findings(self)

    def to_dict(self) -> dict[str, Any]:
        """Every number (JSON-able): settings and their sources, results of every step, findings, metadata."""
        patching = None if self.patching is None else {
            "layers": self.patching.to_dict(),
            "units": None if self.patching_units is None else self.patching_units.to_dict()}
        return {"kind": "rli interrogation", "policy": self.policy, "fingerprint": self.fingerprint,
                "settings": self.settings, "sources": self.sources, "findings": self.findings,
                "headlines": self.headlines, "probe": self.probe.to_dict(), "profile": self.profile.to_dict(),
                "polarity": None if self.polarity is None else self.polarity.to_dict(),
                "ablation": self.ablation.to_dict(), "subspace": self.subspace.to_dict(),
                "pca": {"explained_variance_ratio": self.scatter["ratios"], "observations": self.scatter["source"]},
                "attribution": None if self.attribution is None else self.attribution.to_dict(),
                "patching": patching, "causal": self.causal, **self.meta}

    def figures(self) -> dict[str, tuple[Figure, str]]:
        """``{file stem: (figure, caption)}`` for the report's figures (the heat map only over a 2-D grid; the
        causal figures only when those steps ran)."""
        from rli import plots

        layer = layer_text(layer_of(self.probe))
        unit = self.settings.get("target_unit", "")
        out: dict[str, tuple[Figure, str]] = {}
        if self.heatmap is not None:
            out["probe_heatmap"] = (
                plots.probe_heatmap(self.heatmap, self.probe_obs, target=self.probe.target,
                                    axes=self.settings.get("grid_axes"), target_unit=unit,
                                    prediction_label="held-out prediction",
                                    title=f"{self.probe.target!r} over the probe grid and its held-out prediction "
                                          f"at layer {layer} (R² {self.probe.score:.3f})"),
                "Truth (left) and the held-out ridge prediction from layer " + layer + " (middle; each point is "
                "predicted by the cross-validation fold that did not see it), on one colour scale; their difference "
                "(right).")
        out["layer_profile"] = (plots.layer_profile(self.profile, highlight=self.probe.layer),
                                "Held-out R² of the ridge probe at every actor layer, with its 95% CI, and the "
                                "controls: the same layer of untrained networks, shuffled labels, the raw observation.")
        out["ablation_curve"] = (plots.ablation_curve(self.ablation),
                                 f"Relative drop in return when the top k principal directions of layer {layer} are "
                                 "zeroed, with the 95% CI of the paired comparison; k = 1 is the single-direction ablation.")
        out["subspace_search"] = (plots.subspace_search(self.subspace),
                                  f"Relative drop in return when only the first k principal directions of layer "
                                  f"{layer} are kept (the rest held at its mean), against the tolerance.")
        out["pca_scatter"] = (
            plots.pca_scatter(self.scatter["acts"], self.scatter["values"], direction=self.scatter["basis"],
                              target_name=self.probe.target, target_unit=unit,
                              title=f"layer {layer}: PC1 and PC2, coloured by {self.probe.target!r}"),
            f"Activations of layer {layer} on {self.scatter['source']}, projected on the principal directions the "
            "ablation removes (fitted on the visited observations).")
        out.update(self._causal_figures())
        return out

    def _causal_figures(self) -> dict[str, tuple[Figure, str]]:
        from rli import plots

        out: dict[str, tuple[Figure, str]] = {}
        if self.attribution is not None:
            out["attribution"] = (plots.attribution_bars(self.attribution),
                                  "Share of the absolute integrated-gradients attribution on each input (largest "
                                  "first), mean over groups with its 95% CI.")
        if self.patching is not None:
            out["patching_layers"] = (plots.patch_heatmap(self.patching),
                                      "Mean change of the metric when each actor layer is patched whole from the "
                                      "counterfactual, with its 95% CI; * significant after the correction.")
        if self.patching_units is not None:
            name = self.patching_units.layer[0]
            out["patching_units"] = (plots.patch_heatmap(self.patching_units, layer=name),
                                     f"Mean change of the metric when each unit of layer "
                                     f"{layer_text(layer_of(self.probe))} is patched alone from the counterfactual; "
                                     "* significant after the correction.")
        return out

    def save(self, out_dir: str | Path, *, command: str | None = None) -> tuple[Path, Path]:
        """Write ``report.json``, ``report.html`` (self-contained) and one PNG per figure to ``out_dir``.

        ``command`` (the command line that produced the report) is recorded in both.
        Returns the paths of the JSON and HTML files.
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written: dict[str, tuple[Path, str]] = {}
        for stem, (figure, caption) in self.figures().items():
            path = out / f"{stem}.png"
            figure.savefig(path, dpi=110)
            written[stem] = (path, caption)
        data = {**self.to_dict(), "command": command, "figures": [p.name for p, _ in written.values()]}
        return write_report(out, data, title=f"rli interrogation of {Path(self.policy).name or self.policy}",
                            subtitle=self._subtitle(), sections=self.sections(written, command))

    def _subtitle(self) -> str:
        created = datetime.datetime.fromisoformat(self.meta["created"]).strftime("%Y-%m-%d %H:%M UTC")
        parts = [created, f"rli {self.meta['rli_version']}", f"policy {self.policy}",
                 f"fingerprint {self.fingerprint[:16]}…", f"{self.meta['wall_time_s']:.0f} s"]
        return " · ".join(parts)

    def sections(self, figures: dict[str, tuple[Path, str]], command: str | None = None) -> list[Section]:
        """The HTML page's sections (summary, one per step, reproduce); ``figures`` maps figure stems to saved PNGs."""
        return [self._summary(), self._probe_section(figures), self._polarity_section(),
                self._ablation_section(figures), self._subspace_section(figures), self._attribution_section(figures),
                self._patching_section(figures), self._reproduce(command)]

    def _summary(self) -> Section:
        setup_rows = [[key, show(self.settings.get(key)), self.sources.get(key, "")]
                      for key in ("env", "target", "layer", "sensors", "probe_obs", "polarity_obs", "rollout_obs",
                                  "episodes", "seed", "method", "candidates", "tolerance", "causal")]
        headlines = self.headlines
        return Section("Summary", items=[(f"{title}:", headlines[key]) for key, title in STEP_TITLES.items()],
                       tables=[(["setting", "value", "from"], setup_rows)])

    def _probe_section(self, figures: dict[str, tuple[Path, str]]) -> Section:
        rows = [[r.layer_index if r.layer_index is not None else "", r.layer, r.layer_type, r.width, _r3(r.score),
                 f"[{r.ci[0]:.3f}, {r.ci[1]:.3f}]", _r3(r.controls.get("untrained")),
                 _r3(r.controls.get("shuffled")), _r3(r.controls.get("raw_obs")), _r3(r.selectivity)]
                for r in self.profile.results]
        section = Section(STEP_TITLES["probe"], paragraphs=[self.findings["probe"]],
                          figures=[figures[k] for k in ("probe_heatmap", "layer_profile") if k in figures],
                          tables=[(["index", "layer", "type", "width", "held-out R²", "95% CI", "untrained", "shuffled",
                                    "raw obs", "selectivity"], rows)])
        if self.heatmap is None:
            section.paragraphs.append("No heat map: the probe observations are not a 2-D grid (give a grid built with "
                                      "rli.ObsSet.grid as the probe observations to get one).")
        return section

    def _polarity_section(self) -> Section:
        section = Section(STEP_TITLES["polarity"], paragraphs=[self.findings["polarity"]])
        p = self.polarity
        if p is not None:
            section.tables.append((["quantity", "value"], [
                ["held-out R², normal observations", _r3(p.r2_normal)],
                ["same probe, sensors negated", _r3(p.r2_inverted)],
                ["drop [95% CI]", f"{p.drop:.3f} [{p.drop_ci[0]:.3f}, {p.drop_ci[1]:.3f}]"],
                ["R² of a probe refitted on negated sensors", _r3(p.r2_refit)],
                ["readout correlation (refit vs normal)", _r3(p.readout_correlation)],
                ["readout correlation 95% CI", f"[{p.readout_ci[0]:.3f}, {p.readout_ci[1]:.3f}]"],
                ["refitted probe reads the target", READING_TEXT[p.reading]]]))
        return section

    def _ablation_section(self, figures: dict[str, tuple[Path, str]]) -> Section:
        rows = [[k, c.treated.mean, pct(c.relative_drop), pct_ci(c.relative_ci), float(f"{c.p_value:.2g}")]
                for k, c in zip(self.ablation.values, self.ablation.comparisons)]
        return Section(STEP_TITLES["ablation"], paragraphs=[self.findings["ablation"]],
                       figures=[figures["ablation_curve"], figures["pca_scatter"]],
                       tables=[(["k removed", "return", "relative drop", "95% CI", "p"], rows)])

    def _subspace_section(self, figures: dict[str, tuple[Path, str]]) -> Section:
        rows = [[len(s.kept), ", ".join(map(str, s.kept)) if len(s.kept) <= 8 else f"{s.kept[0]}…{s.kept[-1]}",
                 s.comparison.treated.mean, pct(s.comparison.relative_drop), pct_ci(s.comparison.relative_ci)]
                for s in self.subspace.steps]
        return Section(STEP_TITLES["subspace"], paragraphs=[self.findings["subspace"]],
                       figures=[figures["subspace_search"]],
                       tables=[(["k kept", "directions", "return", "relative drop", "95% CI"], rows)])

    def _attribution_section(self, figures: dict[str, tuple[Path, str]]) -> Section:
        title = STEP_TITLES["attribution"]
        if self.attribution is None:
            return Section(title, paragraphs=[self.findings["attribution"]])
        section = causal.attribution_section(self.attribution, figure=figures.get("attribution"), title=title)
        section.paragraphs[0] = self.findings["attribution"]
        return section

    def _patching_section(self, figures: dict[str, tuple[Path, str]]) -> Section:
        title = STEP_TITLES["patching"]
        if self.patching is None:
            return Section(title, paragraphs=[self.findings["patching"]])
        section = causal.patching_section(self.patching, figure=figures.get("patching_layers"), title=title)
        section.paragraphs[0] = self.findings["patching"]
        if self.patching_units is not None:
            units = causal.patching_section(self.patching_units, figure=figures.get("patching_units"))
            section.figures += units.figures
            section.tables += units.tables
        return section

    def _reproduce(self, command: str | None) -> Section:
        layer = layer_of(self.probe)
        card = f" Settings marked 'card' come from {self.meta['card']}." if self.meta["card"] else ""
        return Section("Reproduce", paragraphs=[
            f"Layer {layer_text(layer)} is {layer.name} ({layer.type}). Every number above, with per-episode returns "
            f"and seeds, is in report.json beside this page.{card} Timings (s): "
            + ", ".join(f"{k} {v:g}" for k, v in self.meta["timings_s"].items()) + "."],
            preformatted=[command] if command else [])

    def __str__(self) -> str:
        lines = [f"rli interrogation of {self.policy} (fingerprint {self.fingerprint[:12]}), "
                 f"{self.meta['wall_time_s']:.0f} s"]
        for key, title in STEP_TITLES.items():
            lines += ["", f"{title}:", *textwrap.wrap(self.findings[key], 100, initial_indent="  ",
                                                     subsequent_indent="  ")]
        return "\n".join(lines)


def _r3(value: float | None) -> float | None:
    """Three decimals for a table cell (``-0.0`` shown as ``0``)."""
    return None if value is None else round(float(value), 3) + 0.0
