"""The findings of an interrogation in words: one paragraph and one headline per step, with every number.

Each function takes a :class:`rli.protocol.report.Report` and states what was measured,
on which observations and seeds, and what the interval does and does not show. The
helpers that format numbers (:func:`pct`, :func:`pct_ci`, :func:`layer_text`) are shared
with the report's HTML tables.

Example:
    >>> pct(0.0173), pct_ci((-0.001, 0.036))
    ('+1.7%', '[-0.1%, +3.6%]')
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rli.policy import Layer
from rli.probes import CONTROL_LABELS, ProbeResult
from rli.protocol import causal
from rli.sweeps import SubspaceStep

if TYPE_CHECKING:
    from rli.protocol.report import Report

READING_TEXT = {"opposite": "reads the target the opposite way (the readout CI lies below 0)",
                "same": "reads the target the same way (the readout CI lies above 0)",
                "undetermined": "reads the target neither way clearly (the readout CI contains 0, or a probe's "
                                "R² CI reaches 0)"}

#: the report's steps, in order: key → title (the four protocol steps, then the causal evidence)
STEP_TITLES = {"probe": "1. Linear probing", "polarity": "2. Polarity inversion",
               "ablation": "3. Single-direction ablation", "subspace": "4. Minimal subspace",
               "attribution": "Attribution", "patching": "Activation patching"}


def pct(value: float | None) -> str:
    """A signed percentage with one decimal (``—`` for none)."""
    return "—" if value is None else f"{value:+.1%}"


def pct_ci(ci: tuple[float, float] | None) -> str:
    """An interval of signed percentages (``—`` for none)."""
    return "—" if ci is None else f"[{ci[0]:+.1%}, {ci[1]:+.1%}]"


def layer_of(result: ProbeResult) -> Layer:
    """The :class:`~rli.Layer` a probe result was measured at."""
    return Layer(name=result.layer, type=result.layer_type, width=result.width, shape=None, index=result.layer_index)


def layer_text(layer: Layer) -> str:
    """A layer as the report names it: its actor-trunk index, else its module name."""
    return f"{layer.index}" if layer.index is not None else repr(layer.name)


def strongest_control(result: ProbeResult) -> tuple[str, float]:
    """The best control's name and the layer's selectivity over it (the protocol's probe always runs controls)."""
    name, selectivity = result.best_control, result.selectivity
    assert name is not None and selectivity is not None, "the protocol's probe runs with controls"
    return name, selectivity


# ------------------------------------------------------------------------------------------ headlines
def headlines(report: Report) -> dict[str, str]:
    """One short sentence per step: the number that matters."""
    r, p, c, s = report.probe, report.polarity, report.pc1, report.subspace
    layer = layer_text(layer_of(r))
    best_control, selectivity = strongest_control(r)
    probe = (f"layer {layer} decodes {r.target!r} with held-out R² {r.score:.3f} [{r.ci[0]:.3f}, {r.ci[1]:.3f}]; "
             f"selectivity {selectivity:+.2f} over the {CONTROL_LABELS[best_control]}.")
    polarity = ("skipped (no sensors given)." if p is None else
                f"negating observation {', '.join(map(str, p.sensors))} takes the probe's R² from "
                f"{p.r2_normal:.3f} to {p.r2_inverted:.3f}; the refitted probe {READING_TEXT[p.reading]}.")
    ablation = (f"zeroing PC1 of layer {layer}: relative drop in return {pct(c.relative_drop)} (95% CI "
                f"{pct_ci(c.relative_ci)} for this one fixed direction, {len(c.baseline.returns)} paired "
                "episodes).")
    subspace = (f"{s.k} principal directions ({s.explained_variance:.0%} of the variance) keep return within "
                f"±{s.tolerance:.0%} by an equivalence test ({pct(s.comparison.relative_drop)})." if s.found else
                f"no subspace of up to {s.k} directions was shown to keep return within ±{s.tolerance:.0%}.")
    return {"probe": probe, "polarity": polarity, "ablation": ablation, "subspace": subspace,
            "attribution": _attribution_headline(report), "patching": _patching_headline(report)}


def _skipped(report: Report, step: str) -> str | None:
    why = report.causal.get(step, {}).get("skipped")
    return None if why is None else str(why)


def _attribution_headline(report: Report) -> str:
    result = report.attribution
    if result is None:
        return f"skipped ({_skipped(report, 'attribution')})."
    ranked = sorted(result.shares.values(), key=lambda s: -s.share)[:3]
    return (f"largest shares of |{result.method} attribution| of {result.target}: "
            + ", ".join(f"{s.name} {s.share:.2f} [{s.ci[0]:.2f}, {s.ci[1]:.2f}]" for s in ranked) + ".")


def _patching_headline(report: Report) -> str:
    layers, units = report.patching, report.patching_units
    if layers is None:
        return f"skipped ({_skipped(report, 'patching')})."
    where = report.causal["patching"]["counterfactual_kind"]
    text = (f"the {where} counterfactual changes {layers.metric} by {layers.total_effect:+.3g} "
            f"[{layers.total_ci[0]:+.3g}, {layers.total_ci[1]:+.3g}]")
    if units is not None and len(units.patched):
        significant = int(units.significant.sum())
        text += (f"; {significant} of {len(units.sites)} units of layer {layer_text(layer_of(report.probe))} change "
                 f"it significantly, the largest {units.top(1)[0]}")
    return text + "."


# ------------------------------------------------------------------------------------------ findings
def findings(report: Report) -> dict[str, str]:
    """One paragraph per step, stating what was measured and what it means, with the numbers."""
    return {"probe": probe_finding(report), "polarity": polarity_finding(report),
            "ablation": ablation_finding(report), "subspace": subspace_finding(report),
            "attribution": attribution_finding(report), "patching": patching_finding(report)}


def probe_finding(report: Report) -> str:
    """Step 1: the held-out R² at the chosen layer against its controls, and the best layer."""
    r, s = report.probe, report.settings
    layer = layer_of(r)
    best_control, selectivity = strongest_control(r)
    control = CONTROL_LABELS[best_control]
    controls = ", ".join(f"{CONTROL_LABELS[k]} {v:.3f}" for k, v in r.controls.items())
    text = (f"Layer {layer_text(layer)} ({r.layer_type}, width {r.width}) decodes {r.target!r} with held-out R² "
            f"{r.score:.3f} [{r.ci[0]:.3f}, {r.ci[1]:.3f}] ({r.kind} probe, split {r.split}, over {r.n:,} observations: "
            f"{s['probe_obs']}). Controls: {controls}; selectivity {selectivity:+.2f} over the {control}.")
    best_score = r.controls[best_control]
    if selectivity > 0 and r.ci[0] > best_score:
        text += (f" The layer's CI lies above the {control}'s score: on these observations "
                 "the trained layer decodes more of the target than any control did (selectivity is a difference "
                 "of point estimates; the controls' own noise is not in this interval).")
    elif selectivity > 0:
        text += (f" The layer's CI reaches down to the {control}'s score: these numbers do "
                 "not show that the trained layer decodes more than that control.")
    else:
        text += (f" The {control} does as well: the probe does not show that the network "
                 "computes the target.")
    best = report.profile.best
    text += f" Across the actor trunk the best layer is {layer_text(layer_of(best))} (R² {best.score:.3f})."
    return text


def polarity_finding(report: Report) -> str:
    """Step 2: the probe's R² with the sensors negated, and which way a refitted probe reads the target."""
    p = report.polarity
    if p is None:
        return ("Skipped: no sensors were given. Pass the observation indices that carry the target "
                "(sensors= / --sensors I,J, or \"sensors\" in the checkpoint card).")
    which = ", ".join(map(str, p.sensors))
    text = (f"With observation entr{'y' if len(p.sensors) == 1 else 'ies'} {which} negated "
            f"({report.settings['polarity_obs']}), the layer-{layer_text(layer_of(report.probe))} probe's held-out "
            f"R² falls from {p.r2_normal:.3f} to {p.r2_inverted:.3f} (drop {p.drop:.3f}, 95% CI "
            f"[{p.drop_ci[0]:.3f}, {p.drop_ci[1]:.3f}]). A probe refitted on the inverted observations reaches R² "
            f"{p.r2_refit:.3f} [{p.r2_refit_ci[0]:.3f}, {p.r2_refit_ci[1]:.3f}]; the readouts of the two probes "
            f"correlate {p.readout_correlation:+.2f} (95% CI [{p.readout_ci[0]:+.2f}, {p.readout_ci[1]:+.2f}]): it "
            f"{READING_TEXT[p.reading]}.")
    if p.drop_ci[0] > 0 and p.flipped:
        return text + (" The decoding depends on the sensor's sign (the drop's CI lies above 0) and the refitted "
                       "probe reads the target with the opposite sign: the layer's encoding of the target follows "
                       "the sensor's sign on these observations (what the policy does with it is not measured here).")
    if p.drop_ci[0] > 0:
        return text + (" The decoding depends on the sensor's sign (the drop's CI lies above 0), but these numbers "
                       "do not show the refitted probe reading the target the opposite way.")
    if p.drop_ci[1] < 0:
        return text + " The R² rises with the sensor negated (the drop's CI lies below 0)."
    return text + (" The drop's CI contains 0: no loss of decoding is detectable with these observations (that "
                   "is not evidence that the layer ignores the sensor).")


def ablation_finding(report: Report) -> str:
    """Step 3: the paired change of return with PC1 zeroed (and the top k directions)."""
    c = report.pc1
    seeds = c.baseline.seeds
    text = (f"Zeroing PC1 of layer {layer_text(layer_of(report.probe))} (its top principal direction on "
            f"{report.settings['rollout_obs']}; single-direction zeroing, not LEACE erasure) changes the mean return "
            f"from {c.baseline.mean:.4g} to {c.treated.mean:.4g}: a relative drop of {pct(c.relative_drop)} "
            f"(95% CI {pct_ci(c.relative_ci)}, paired t-test p = {c.p_value:.2g}) over {len(seeds)} paired episodes "
            f"(seeds {seeds[0]}..{seeds[-1]}). The CI is for this one fixed direction: it covers the episodes' "
            "noise, not the estimation of the direction from the visited observations (rli.compare_refit refits it "
            "on resampled episodes and gives an interval that covers both).")
    if c.ci[0] > 0:
        text += (" The CI lies above 0: zeroing this direction lowers the return on these seeds (zeroing one "
                 "direction is not removing the information it carries: see rli.erase).")
    elif c.ci[1] < 0:
        text += " The CI lies below 0: the return is higher with this direction zeroed, on these seeds."
    else:
        text += " The CI includes 0: no effect detectable with this many episodes."
    more = [f"k = {k}: {pct(c.relative_drop)}" for k, c in zip(report.ablation.values[1:], report.ablation.comparisons[1:])]
    if more:
        text += " Removing the top k directions: " + ", ".join(more) + "."
    return text


def _relative_drop(step: SubspaceStep) -> float:
    drop = step.comparison.relative_drop
    assert drop is not None, "the subspace search refuses a baseline mean of 0"
    return drop


def subspace_finding(report: Report) -> str:
    """Step 4: the smallest kept subspace shown equivalent (TOST) to the full layer, or that none was."""
    s = report.subspace
    last = s.comparison
    method = ("adding directions by explained variance" if s.method == "ordered"
              else "adding, at each step, the candidate that keeps the most return")
    episodes = len(s.steps[-1].comparison.baseline.returns)
    walk = (f"({method}, among the top {report.settings['candidates']} directions; {episodes} paired episodes per "
            f"subspace)")
    layer = layer_text(layer_of(report.probe))
    eq = s.equivalence
    test = (f"two one-sided tests at {eq.alpha:g}: {1 - 2 * eq.alpha:.0%} CI of the relative change "
            f"{pct_ci(eq.ci)}" if eq is not None else f"95% CI {pct_ci(last.relative_ci)}")
    where = (f"on {len(last.baseline.returns)} fresh seeds ({last.baseline.seeds[0]}..{last.baseline.seeds[-1]})"
             if s.confirmation is not None else "on the seeds the search used")
    if not s.found:
        best = min(s.steps, key=_relative_drop)
        return (f"No subspace of up to {s.k} principal directions of layer {layer} was shown to keep return within "
                f"±{s.tolerance:.0%} {walk}: the equivalence test did not pass ({where}: relative drop "
                f"{pct(last.relative_drop)}, {test}); on the search seeds the best, {len(best.kept)} directions, "
                f"lost {pct(best.comparison.relative_drop)}. Not shown is not shown insufficient: more episodes, "
                "more candidates (--candidates) or a larger tolerance may settle it.")
    return (f"Keeping only {s.k} principal direction{'s' if s.k > 1 else ''} of layer {layer} "
            f"({', '.join(f'PC{k}' for k in s.kept) if s.k <= 8 else f'PC{s.kept[0]}..PC{s.kept[-1]}'}; "
            f"{s.explained_variance:.1%} of the variance; the rest held at its mean) keeps return within "
            f"±{s.tolerance:.0%} {where}: relative drop {pct(last.relative_drop)}, {test}, inside the tolerance "
            f"{walk}.")


def attribution_finding(report: Report) -> str:
    """Attribution: what was attributed on which observations (with the sizes chosen), then the shares."""
    result, how = report.attribution, report.causal.get("attribution", {})
    if result is None:
        return f"Skipped: {how.get('skipped')}."
    text = (f"Integrated gradients of {how['output']} over {how['rows']:,} of the polarity observations "
            f"({how['observations']}; {how['sample']}), {how['n_steps']} steps from the raw zero observation, "
            f"shares aggregated over {how['groups']}. " + causal.attribution_finding(result))
    sensors = how.get("sensor_share")
    if sensors is not None:
        text += (f" The sensors ({sensors['name']}) carry {sensors['share']:.3f} [{sensors['ci'][0]:.3f}, "
                 f"{sensors['ci'][1]:.3f}] of it together")
        text += (": they are 0 on every attributed row, the baseline itself, so integrated gradients gives them "
                 "nothing by construction."
                 if how.get("sensors_at_baseline") else ".")
    return text


def patching_finding(report: Report) -> str:
    """Activation patching: the counterfactual, the whole-layer sweep and the chosen layer's unit sweep."""
    layers, units, how = report.patching, report.patching_units, report.causal.get("patching", {})
    if layers is None:
        return f"Skipped: {how.get('skipped')}."
    text = (f"Counterfactual: {how['counterfactual']}; clean observations: {how['rows']:,} of {how['observations']} "
            f"({how['sample']}); metric: {how['metric']}; intervals over {how['groups']}. Whole layers: "
            + causal.patching_finding(layers))
    if units is not None:
        text += f" Units of layer {layer_text(layer_of(report.probe))}: " + causal.patching_finding(units)
    elif how.get("units_skipped"):
        text += f" Units: {how['units_skipped']}."
    return text


def show(value: Any) -> str:
    """A setting as a table cell: JSON for lists and dicts, ``—`` for none."""
    import json

    if value is None:
        return "—"
    return json.dumps(value, ensure_ascii=False) if isinstance(value, (list, dict)) else str(value)
