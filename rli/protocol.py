"""The interrogation protocol (paper §3.3) in one call: probe, polarity, ablation, minimal subspace → :class:`Report`.

1. **Probing**: a ridge probe of the target at every actor layer, with its controls
   (untrained network, shuffled labels, raw observation) → the layer profile.
2. **Polarity inversion**: the probe at the chosen layer, fitted on normal
   observations, scored with the sensor entries negated.
3. **Single-direction ablation**: zero PC1 of the layer (fitted on visited
   observations) and compare returns on paired seeds; the same for the top k
   directions, giving the ablation curve.
4. **Minimal subspace**: the fewest principal directions whose keep-only projection
   keeps return within a tolerance.

What to interrogate (environment, target, layer, sensors, the observations for
probing and polarity) comes from the arguments, else from the checkpoint card
(``<stem>.json`` beside the checkpoint, its ``"interrogate"`` block; see
docs/cli.md), else is inferred: the target is the first numeric ``info`` entry the
environment reports, the observations are visited by the policy, the layer is the
last hidden layer of the actor trunk. The :class:`Report` says where each setting
came from, states each step's finding in words with its numbers, and saves
``report.json``, ``report.html`` and the figures.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib
import json
import platform
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rli import defaults
from rli.capture import capture
from rli.comparison import Comparison
from rli.envs_util import resolve_env
from rli.errors import RliError
from rli.observations import ObsSet, numeric_info
from rli.polarity import PolarityResult, polarity_test
from rli.policy import Layer, LayerSpec, Policy
from rli.probes import CONTROL_LABELS, LayerProfile, ProbeResult, probe_layers
from rli.subspace import fit_pca
from rli.sweeps import AblationCurve, SubspaceSearch, SubspaceStep, ablation_curve, minimal_subspace
from rli.targets import check_target_name, obs_entry, resolve_target

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CARD_KEY = "interrogate"
CARD_FIELDS = ("env", "target", "target_unit", "layer", "sensors", "probe_obs", "polarity_obs", "grid_axes")
#: The protocol's defaults (the CLI's too), from :mod:`rli.defaults`: paired episodes per comparison, visited
#: observations kept, and the whole episodes they are spread over (enough episodes for probes that split by episode).
DEFAULT_KS = defaults.KS
DEFAULT_EPISODES = defaults.EPISODES
DEFAULT_N_OBS = defaults.N_OBS
DEFAULT_OBS_EPISODES = defaults.OBS_EPISODES


# ------------------------------------------------------------------------------------------ cards
def read_card(checkpoint: str | Path) -> dict[str, Any] | None:
    """The checkpoint card ``<stem>.json`` beside ``checkpoint``, or ``None`` when there is none.

    Example:
        >>> import json, pathlib, tempfile, rli
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "ppo.json").write_text(json.dumps({"env": "CartPole-v1", "interrogate": {"layer": 5}}))
        >>> rli.protocol.read_card(folder / "ppo.zip")["interrogate"], rli.protocol.read_card(folder / "a2c.zip")
        ({'layer': 5}, None)
    """
    path = Path(checkpoint).with_suffix(".json")
    if not path.is_file():
        return None
    try:
        card = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RliError(f"the checkpoint card {path} is not valid JSON ({err}); fix or remove it") from None
    if not isinstance(card, dict):
        raise RliError(f"the checkpoint card {path} must hold a JSON object, not {type(card).__name__}")
    return card


def card_settings(card: Mapping[str, Any], *, where: str = "the card") -> dict[str, Any]:
    """The interrogation settings of a card: its ``"interrogate"`` block, checked, ``env`` defaulting to the card's.

    Keys (all optional): ``env`` (gymnasium id), ``target`` (a label name, or
    ``"obs[I]"`` for observation entry I), ``target_unit``, ``layer`` (index or name),
    ``sensors`` (observation indices to negate), ``probe_obs`` / ``polarity_obs``
    (``{"call": "module:function", "kwargs": {...}}`` returning an ObsSet, or
    ``{"path": "file.npz"}`` relative to the card), ``grid_axes`` (the heat map's
    horizontal and vertical axis: ``[{"index": 10, "label": ..., "unit": "m"}, ...]``).

    Example:
        >>> import rli
        >>> rli.protocol.card_settings({"env": "CartPole-v1", "interrogate": {"target": "obs[2]", "sensors": [2]}})
        {'target': 'obs[2]', 'sensors': [2], 'env': 'CartPole-v1'}
    """
    block = card.get(CARD_KEY, {})
    if not isinstance(block, Mapping):
        raise RliError(f"{where}: {CARD_KEY!r} must be an object of settings, not {type(block).__name__}")
    unknown = sorted(set(block) - set(CARD_FIELDS))
    if unknown:
        raise RliError(f"{where}: unknown {CARD_KEY!r} setting(s) {', '.join(unknown)}; known: {', '.join(CARD_FIELDS)}")
    out = dict(block)
    for key in ("env", "target", "target_unit"):
        if key in out and not isinstance(out[key], str):
            raise RliError(f"{where}: {CARD_KEY}.{key} must be a string, not {out[key]!r}")
    if "layer" in out and (isinstance(out["layer"], bool) or not isinstance(out["layer"], (int, str))):
        raise RliError(f"{where}: {CARD_KEY}.layer must be an actor-trunk index or a layer name, not {out['layer']!r}")
    if "sensors" in out:
        sensors = out["sensors"]
        if not isinstance(sensors, list) or not sensors or not all(isinstance(i, int) and not isinstance(i, bool)
                                                                     for i in sensors):
            raise RliError(f"{where}: {CARD_KEY}.sensors must be a non-empty list of observation indices, not {sensors!r}")
    for key in ("probe_obs", "polarity_obs"):
        if key in out:
            _check_obs_spec(out[key], f"{where}: {CARD_KEY}.{key}")
    if "grid_axes" in out:
        axes = out["grid_axes"]
        if not isinstance(axes, list) or len(axes) != 2 or not all(
                isinstance(a, Mapping) and isinstance(a.get("index"), int) for a in axes):
            raise RliError(f"{where}: {CARD_KEY}.grid_axes must be two objects [horizontal, vertical], each "
                           f'{{"index": I, "label": ..., "unit": ...}}, not {axes!r}')
    if "env" not in out and isinstance(card.get("env"), str):
        out["env"] = card["env"]
    return out


def _check_obs_spec(spec: Any, where: str) -> None:
    ok = isinstance(spec, Mapping) and (
        (set(spec) <= {"call", "kwargs"} and isinstance(spec.get("call"), str)
         and isinstance(spec.get("kwargs", {}), Mapping))
        or (set(spec) == {"path"} and isinstance(spec["path"], str)))
    if not ok:
        raise RliError(f'{where} must be {{"call": "module:function", "kwargs": {{...}}}} or {{"path": "file.npz"}}, '
                       f"not {spec!r}")


def load_obs(spec: Any, *, base: str | Path = ".", trust: bool = False) -> ObsSet:
    """Observations from a spec: an :class:`~rli.ObsSet`; a ``.npz`` path (:meth:`ObsSet.save`); ``"module:function"``;
    or a card's ``{"call": "module:function", "kwargs": {...}}`` / ``{"path": "file.npz"}``.

    Relative paths are taken from ``base``. A function outside the ``rli`` package is
    imported and called only with ``trust=True`` (importing runs the module's code).

    Example:
        >>> import rli
        >>> grid = rli.protocol.load_obs({"call": "rli.envs:probe_grid", "kwargs": {"n_x": 4, "n_y": 5}})
        >>> len(grid), grid.meta["grid_shape"]
        (20, [4, 5])
    """
    if isinstance(spec, ObsSet):
        return spec
    if isinstance(spec, (str, Path)):
        text = str(spec)
        spec = {"path": text} if text.endswith(".npz") or ":" not in text else {"call": text}
    _check_obs_spec(spec, "an observation spec")
    if "path" in spec:
        path = Path(spec["path"])
        return ObsSet.load(path if path.is_absolute() else Path(base) / path)
    module_name, _, name = spec["call"].partition(":")
    if not module_name or not name:
        raise RliError(f"{spec['call']!r} is not 'module:function' (e.g. 'rli.envs:probe_grid')")
    if module_name != "rli" and not module_name.startswith("rli.") and not trust:
        raise RliError(f"observations from {spec['call']!r} would import and run code outside rli; "
                       "pass trust=True (--trust) if you trust it, or save the observations with ObsSet.save and give "
                       "the .npz")
    try:
        function = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as err:
        raise RliError(f"cannot find {spec['call']!r}: {err}") from None
    made = function(**dict(spec.get("kwargs", {})))
    if not isinstance(made, ObsSet):
        raise RliError(f"{spec['call']} returned {type(made).__name__}, not an rli.ObsSet")
    return made


def _describe_obs(spec: Any, obs: ObsSet) -> str:
    """How observations were given: the call with its arguments, the path, or the ObsSet itself."""
    if isinstance(spec, Mapping) and "call" in spec:
        kwargs = ", ".join(f"{k}={v!r}" for k, v in dict(spec.get("kwargs", {})).items())
        return f"{spec['call']}({kwargs})"
    if isinstance(spec, Mapping):
        return str(spec["path"])
    if isinstance(spec, (str, Path)):
        return str(spec)
    return repr(obs)


# ---------------------------------------------------------------------------------------- targets
def with_target(obs: ObsSet, name: str, *, what: str = "the observations") -> ObsSet:
    """``obs`` carrying the label ``name``; ``"obs[I]"`` adds observation entry I as that label when it is missing.

    Names are resolved by :func:`rli.targets.resolve_target`, as in :func:`rli.probe`.

    Example:
        >>> import numpy as np, rli
        >>> obs = rli.protocol.with_target(rli.ObsSet(np.arange(6.0).reshape(3, 2)), "obs[1]")
        >>> obs.labels["obs[1]"].tolist()
        [1.0, 3.0, 5.0]
    """
    if not isinstance(name, str):
        raise RliError(f"the protocol's target is a label name or 'obs[I]', not {type(name).__name__}; its steps "
                       "use several observation sets, so give the values as a label of each (ObsSet.with_labels)")
    if name in obs.labels:
        return obs
    flat = int(np.prod(obs.obs.shape[1:]))
    index = obs_entry(name)
    if index is None or index >= flat:
        known = ", ".join(sorted(obs.labels)) or "none"
        raise RliError(f"{what} have no label {name!r}; their labels: {known}; or name an observation entry "
                       f"obs[0]..obs[{flat - 1}]")
    return obs.with_labels(**{name: resolve_target(obs, name)[0]})


def infer_target(env: str, rollouts: ObsSet, seed: int) -> str:
    """The first numeric ``info`` entry the environment reports (in its own order) that the rollouts carry and that varies."""
    from rli.envs_util import make_env

    made, owned = make_env(env)
    try:
        _, info = made.reset(seed=seed)
    finally:
        if owned:
            made.close()
    for key in numeric_info(info):
        values = rollouts.labels.get(key)
        if values is not None and values.ndim == 1 and values.min() < values.max():
            return key
    labels = ", ".join(sorted(rollouts.labels))
    raise RliError(f"cannot infer a target: {env} reports no varying numeric info entry at every step; give one "
                   f"(target= / --target): a label of the visited observations ({labels}) or an observation entry "
                   f"obs[0]..obs[{int(np.prod(rollouts.obs.shape[1:])) - 1}]")


# ------------------------------------------------------------------------------------------ setup
@dataclass(frozen=True)
class _Setup:
    policy: Policy
    card: Path | None
    settings: dict[str, Any]
    sources: dict[str, str]


def resolve_setup(policy: Any, trust: bool, given: dict[str, Any]) -> _Setup:
    """Read the policy's card, settle each setting (argument, else card; inferred/default later) and load the policy.

    A policy file is loaded with the environment, so a plain torch module gets its
    observation and action spaces from it.
    """
    from rli.loading import load_policy

    source = policy.source if isinstance(policy, Policy) else str(policy)
    card_file = Path(source).with_suffix(".json") if source else None
    card = read_card(source) if source and Path(source).is_file() else None
    from_card = card_settings(card, where=str(card_file)) if card is not None else {}
    settings: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key in CARD_FIELDS:
        if given.get(key) is not None:
            settings[key], sources[key] = given[key], "argument"
        elif key in from_card:
            settings[key], sources[key] = from_card[key], "card"
    if not isinstance(policy, Policy):
        policy = load_policy(policy, env=settings.get("env"), trust=trust)
    return _Setup(policy, card_file if card is not None else None, settings, sources)


def _default_layer(policy: Policy) -> Layer:
    return policy.default_layer


def need_env(setup: _Setup, why: str) -> Any:
    """The environment setting, checked by :func:`rli.envs_util.resolve_env` (ids looked up, modules imported)
    before any work; a gymnasium.Env instance is refused (the protocol runs several envs side by side)."""
    env = setup.settings.get("env")
    if env is not None:
        where = "the card's env" if setup.sources.get("env") == "card" else "env"
        ref = resolve_env(env, what=where)
        if not ref.shareable:
            raise RliError(f"{where} is a gymnasium.Env instance, but the protocol steps several environments side "
                           "by side: pass its id or a factory (e.g. lambda: MyWrapper(gym.make(...)))")
        return env
    if env is None:
        name = setup.policy.source or "given"
        card = f"its card {setup.card} names none" if setup.card else "it has no card (<stem>.json) naming one"
        raise RliError(f"no environment: {why}, but the policy {name} was given without one and {card}; "
                       "pass env= / --env (a gymnasium id such as 'CartPole-v1')")
    return env


def _layer_text(layer: Layer) -> str:
    return f"{layer.index}" if layer.index is not None else repr(layer.name)


# ------------------------------------------------------------------------------------------ report
@dataclass(frozen=True, eq=False)
class Report:
    """The outcome of :func:`interrogate`: every result, the settings and where they came from, and the findings.

    ``profile`` (step 1, all actor layers) and ``probe`` (its entry at the chosen
    layer), ``polarity`` (step 2; ``None`` when no sensors were given), ``ablation``
    (step 3: the curve over k, whose first point is PC1 alone, :attr:`pc1`),
    ``subspace`` (step 4). ``findings`` maps each step to a sentence with its
    numbers. :meth:`save` writes ``report.json``, ``report.html`` and the figures;
    :meth:`figures` gives the figures themselves.
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

    @property
    def pc1(self) -> Comparison:
        """Step 3's headline: the paired comparison with PC1 zeroed."""
        return self.ablation.comparisons[0]

    @property
    def headlines(self) -> dict[str, str]:
        """One short sentence per step: the number that matters."""
        r, p, c, s = self.probe, self.polarity, self.pc1, self.subspace
        layer = _layer_text(_layer_of(r))
        best_control, selectivity = _strongest_control(r)
        probe = (f"layer {layer} decodes {r.target!r} with held-out R² {r.r2:.3f} [{r.ci[0]:.3f}, {r.ci[1]:.3f}]; "
                 f"selectivity {selectivity:+.2f} over the {CONTROL_LABELS[best_control]}.")
        polarity = ("skipped (no sensors given)." if p is None else
                    f"negating observation {', '.join(map(str, p.sensors))} takes the probe's R² from "
                    f"{p.r2_normal:.3f} to {p.r2_inverted:.3f}; the refitted probe {_READING_TEXT[p.reading]}.")
        ablation = (f"zeroing PC1 of layer {layer}: relative drop in return {_pct(c.relative_drop)} (95% CI "
                    f"{_pct_ci(c.relative_ci)} for this one fixed direction, {len(c.baseline.returns)} paired "
                    "episodes).")
        subspace = (f"{s.k} principal directions ({s.explained_variance:.0%} of the variance) keep return within "
                    f"±{s.tolerance:.0%} by an equivalence test ({_pct(s.comparison.relative_drop)})." if s.found else
                    f"no subspace of up to {s.k} directions was shown to keep return within ±{s.tolerance:.0%}.")
        return {"probe": probe, "polarity": polarity, "ablation": ablation, "subspace": subspace}

    @property
    def findings(self) -> dict[str, str]:
        """One paragraph per step, stating what was measured and what it means, with the numbers."""
        return {"probe": _probe_finding(self), "polarity": _polarity_finding(self),
                "ablation": _ablation_finding(self), "subspace": _subspace_finding(self)}

    def to_dict(self) -> dict[str, Any]:
        """Every number (JSON-able): settings and their sources, results of the four steps, findings, metadata."""
        return {"kind": "rli interrogation", "policy": self.policy, "fingerprint": self.fingerprint,
                "settings": self.settings, "sources": self.sources, "findings": self.findings,
                "headlines": self.headlines, "probe": self.probe.to_dict(), "profile": self.profile.to_dict(),
                "polarity": None if self.polarity is None else self.polarity.to_dict(),
                "ablation": self.ablation.to_dict(), "subspace": self.subspace.to_dict(),
                "pca": {"explained_variance_ratio": self.scatter["ratios"], "observations": self.scatter["source"]},
                **self.meta}

    def figures(self) -> dict[str, tuple[Figure, str]]:
        """``{file stem: (figure, caption)}`` for the report's figures (the heat map only over a 2-D grid)."""
        from rli import plots

        layer = _layer_text(_layer_of(self.probe))
        unit = self.settings.get("target_unit", "")
        out: dict[str, tuple[Figure, str]] = {}
        if self.heatmap is not None:
            out["probe_heatmap"] = (
                plots.probe_heatmap(self.heatmap, self.probe_obs, target=self.probe.target,
                                    axes=self.settings.get("grid_axes"), target_unit=unit,
                                    prediction_label="held-out prediction",
                                    title=f"{self.probe.target!r} over the probe grid and its held-out prediction "
                                          f"at layer {layer} (R² {self.probe.r2:.3f})"),
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
            plots.pca_scatter(self.scatter["acts"], self.scatter["values"], basis=self.scatter["basis"],
                              target_name=self.probe.target, target_unit=unit,
                              title=f"layer {layer}: PC1 and PC2, coloured by {self.probe.target!r}"),
            f"Activations of layer {layer} on {self.scatter['source']}, projected on the principal directions the "
            "ablation removes (fitted on the visited observations).")
        return out

    def save(self, out_dir: str | Path, *, command: str | None = None) -> tuple[Path, Path]:
        """Write ``report.json``, ``report.html`` (self-contained) and one PNG per figure to ``out_dir``.

        ``command`` (the command line that produced the report) is recorded in both.
        Returns the paths of the JSON and HTML files.
        """
        from rli.report import write_report

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written: dict[str, tuple[Path, str]] = {}
        for stem, (figure, caption) in self.figures().items():
            path = out / f"{stem}.png"
            figure.savefig(path, dpi=110)
            written[stem] = (path, caption)
        data = {**self.to_dict(), "command": command, "figures": [p.name for p, _ in written.values()]}
        return write_report(out, data, title=f"rli interrogation of {Path(self.policy).name or self.policy}",
                            subtitle=self._subtitle(), sections=self._sections(written, command))

    def _subtitle(self) -> str:
        created = datetime.datetime.fromisoformat(self.meta["created"]).strftime("%Y-%m-%d %H:%M UTC")
        parts = [created, f"rli {self.meta['rli_version']}", f"policy {self.policy}",
                 f"fingerprint {self.fingerprint[:16]}…", f"{self.meta['wall_time_s']:.0f} s"]
        return " · ".join(parts)

    def _sections(self, figures: dict[str, tuple[Path, str]], command: str | None) -> list[Any]:
        from rli.report import Section

        findings = self.findings
        layer = _layer_of(self.probe)
        setup_rows = [[key, _show(self.settings.get(key)), self.sources.get(key, "")]
                      for key in ("env", "target", "layer", "sensors", "probe_obs", "polarity_obs", "rollout_obs",
                                  "episodes", "seed", "method", "candidates", "tolerance")]
        headlines = self.headlines
        summary = Section("Summary", items=[(f"{title}:", headlines[key]) for key, title in _STEP_TITLES.items()],
                          tables=[(["setting", "value", "from"], setup_rows)])
        probe_rows = [[r.layer_index if r.layer_index is not None else "", r.layer, r.layer_type, r.width, _r3(r.r2),
                       f"[{r.ci[0]:.3f}, {r.ci[1]:.3f}]", _r3(r.controls.get("untrained")),
                       _r3(r.controls.get("shuffled")), _r3(r.controls.get("raw_obs")), _r3(r.selectivity)]
                      for r in self.profile.results]
        step1 = Section("1. Linear probing", paragraphs=[findings["probe"]],
                        figures=[figures[k] for k in ("probe_heatmap", "layer_profile") if k in figures],
                        tables=[(["index", "layer", "type", "width", "held-out R²", "95% CI", "untrained", "shuffled",
                                  "raw obs", "selectivity"], probe_rows)])
        if self.heatmap is None:
            step1.paragraphs.append("No heat map: the probe observations are not a 2-D grid (give a grid built with "
                                    "rli.ObsSet.grid as the probe observations to get one).")
        step2 = Section("2. Polarity inversion", paragraphs=[findings["polarity"]])
        if self.polarity is not None:
            p = self.polarity
            step2.tables.append((["quantity", "value"], [
                ["held-out R², normal observations", _r3(p.r2_normal)],
                ["same probe, sensors negated", _r3(p.r2_inverted)],
                ["drop [95% CI]", f"{p.drop:.3f} [{p.drop_ci[0]:.3f}, {p.drop_ci[1]:.3f}]"],
                ["R² of a probe refitted on negated sensors", _r3(p.r2_refit)],
                ["readout correlation (refit vs normal)", _r3(p.readout_correlation)],
                ["readout correlation 95% CI", f"[{p.readout_ci[0]:.3f}, {p.readout_ci[1]:.3f}]"],
                ["refitted probe reads the target", _READING_TEXT[p.reading]]]))
        curve_rows = [[k, c.treated.mean, _pct(c.relative_drop), _pct_ci(c.relative_ci), float(f"{c.p_value:.2g}")]
                      for k, c in zip(self.ablation.values, self.ablation.comparisons)]
        step3 = Section("3. Single-direction ablation", paragraphs=[findings["ablation"]],
                        figures=[figures["ablation_curve"], figures["pca_scatter"]],
                        tables=[(["k removed", "return", "relative drop", "95% CI", "p"], curve_rows)])
        sub_rows = [[len(s.kept), ", ".join(map(str, s.kept)) if len(s.kept) <= 8 else f"{s.kept[0]}…{s.kept[-1]}",
                     s.comparison.treated.mean, _pct(s.comparison.relative_drop), _pct_ci(s.comparison.relative_ci)]
                    for s in self.subspace.steps]
        step4 = Section("4. Minimal subspace", paragraphs=[findings["subspace"]],
                        figures=[figures["subspace_search"]],
                        tables=[(["k kept", "directions", "return", "relative drop", "95% CI"], sub_rows)])
        card = f" Settings marked 'card' come from {self.meta['card']}." if self.meta["card"] else ""
        reproduce = Section("Reproduce", paragraphs=[
            f"Layer {_layer_text(layer)} is {layer.name} ({layer.type}). Every number above, with per-episode returns "
            f"and seeds, is in report.json beside this page.{card} Timings (s): "
            + ", ".join(f"{k} {v:g}" for k, v in self.meta["timings_s"].items()) + "."],
            preformatted=[command] if command else [])
        return [summary, step1, step2, step3, step4, reproduce]

    def __str__(self) -> str:
        lines = [f"rli interrogation of {self.policy} (fingerprint {self.fingerprint[:12]}), "
                 f"{self.meta['wall_time_s']:.0f} s"]
        for key, title in _STEP_TITLES.items():
            lines += ["", f"{title}:", *textwrap.wrap(self.findings[key], 100, initial_indent="  ",
                                                     subsequent_indent="  ")]
        return "\n".join(lines)


_READING_TEXT = {"opposite": "reads the target the opposite way (the readout CI lies below 0)",
                 "same": "reads the target the same way (the readout CI lies above 0)",
                 "undetermined": "reads the target neither way clearly (the readout CI contains 0, or a probe's "
                                 "R² CI reaches 0)"}

_STEP_TITLES = {"probe": "1. Linear probing", "polarity": "2. Polarity inversion",
                "ablation": "3. Single-direction ablation", "subspace": "4. Minimal subspace"}


def _show(value: Any) -> str:
    if value is None:
        return "—"
    return json.dumps(value, ensure_ascii=False) if isinstance(value, (list, dict)) else str(value)


def _r3(value: float | None) -> float | None:
    """Three decimals for a table cell (``-0.0`` shown as ``0``)."""
    return None if value is None else round(float(value), 3) + 0.0


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:+.1%}"


def _pct_ci(ci: tuple[float, float] | None) -> str:
    return "—" if ci is None else f"[{ci[0]:+.1%}, {ci[1]:+.1%}]"


def _layer_of(result: ProbeResult) -> Layer:
    return Layer(name=result.layer, type=result.layer_type, width=result.width, shape=None, index=result.layer_index)


def _strongest_control(result: ProbeResult) -> tuple[str, float]:
    """The best control's name and the layer's selectivity over it (the protocol's probe always runs controls)."""
    name, selectivity = result.best_control, result.selectivity
    assert name is not None and selectivity is not None, "the protocol's probe runs with controls"
    return name, selectivity


def _probe_finding(report: Report) -> str:
    r, s = report.probe, report.settings
    layer = _layer_of(r)
    best_control, selectivity = _strongest_control(r)
    control = CONTROL_LABELS[best_control]
    controls = ", ".join(f"{CONTROL_LABELS[k]} {v:.3f}" for k, v in r.controls.items())
    text = (f"Layer {_layer_text(layer)} ({r.layer_type}, width {r.width}) decodes {r.target!r} with held-out R² "
            f"{r.r2:.3f} [{r.ci[0]:.3f}, {r.ci[1]:.3f}] ({r.kind} probe, split {r.split}, over {r.n:,} observations: "
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
    text += f" Across the actor trunk the best layer is {_layer_text(_layer_of(best))} (R² {best.r2:.3f})."
    return text


def _polarity_finding(report: Report) -> str:
    p = report.polarity
    if p is None:
        return ("Skipped: no sensors were given. Pass the observation indices that carry the target "
                "(sensors= / --sensors I,J, or \"sensors\" in the checkpoint card).")
    which = ", ".join(map(str, p.sensors))
    text = (f"With observation entr{'y' if len(p.sensors) == 1 else 'ies'} {which} negated "
            f"({report.settings['polarity_obs']}), the layer-{_layer_text(_layer_of(report.probe))} probe's held-out "
            f"R² falls from {p.r2_normal:.3f} to {p.r2_inverted:.3f} (drop {p.drop:.3f}, 95% CI "
            f"[{p.drop_ci[0]:.3f}, {p.drop_ci[1]:.3f}]). A probe refitted on the inverted observations reaches R² "
            f"{p.r2_refit:.3f} [{p.r2_refit_ci[0]:.3f}, {p.r2_refit_ci[1]:.3f}]; the readouts of the two probes "
            f"correlate {p.readout_correlation:+.2f} (95% CI [{p.readout_ci[0]:+.2f}, {p.readout_ci[1]:+.2f}]): it "
            f"{_READING_TEXT[p.reading]}.")
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


def _ablation_finding(report: Report) -> str:
    c = report.pc1
    seeds = c.baseline.seeds
    text = (f"Zeroing PC1 of layer {_layer_text(_layer_of(report.probe))} (its top principal direction on "
            f"{report.settings['rollout_obs']}; single-direction zeroing, not LEACE erasure) changes the mean return "
            f"from {c.baseline.mean:.4g} to {c.treated.mean:.4g}: a relative drop of {_pct(c.relative_drop)} "
            f"(95% CI {_pct_ci(c.relative_ci)}, paired t-test p = {c.p_value:.2g}) over {len(seeds)} paired episodes "
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
    more = [f"k = {k}: {_pct(c.relative_drop)}" for k, c in zip(report.ablation.values[1:], report.ablation.comparisons[1:])]
    if more:
        text += " Removing the top k directions: " + ", ".join(more) + "."
    return text


def _relative_drop(step: SubspaceStep) -> float:
    drop = step.comparison.relative_drop
    assert drop is not None, "the subspace search refuses a baseline mean of 0"
    return drop


def _subspace_finding(report: Report) -> str:
    s = report.subspace
    last = s.comparison
    method = ("adding directions by explained variance" if s.method == "ordered"
              else "adding, at each step, the candidate that keeps the most return")
    episodes = len(s.steps[-1].comparison.baseline.returns)
    walk = (f"({method}, among the top {report.settings['candidates']} directions; {episodes} paired episodes per "
            f"subspace)")
    layer = _layer_text(_layer_of(report.probe))
    eq = s.equivalence
    test = (f"two one-sided tests at {eq.alpha:g}: {1 - 2 * eq.alpha:.0%} CI of the relative change "
            f"{_pct_ci(eq.ci)}" if eq is not None else f"95% CI {_pct_ci(last.relative_ci)}")
    where = (f"on {len(last.baseline.returns)} fresh seeds ({last.baseline.seeds[0]}..{last.baseline.seeds[-1]})"
             if s.confirmation is not None else "on the seeds the search used")
    if not s.found:
        best = min(s.steps, key=_relative_drop)
        return (f"No subspace of up to {s.k} principal directions of layer {layer} was shown to keep return within "
                f"±{s.tolerance:.0%} {walk}: the equivalence test did not pass ({where}: relative drop "
                f"{_pct(last.relative_drop)}, {test}); on the search seeds the best, {len(best.kept)} directions, "
                f"lost {_pct(best.comparison.relative_drop)}. Not shown is not shown insufficient: more episodes, "
                "more candidates (--candidates) or a larger tolerance may settle it.")
    return (f"Keeping only {s.k} principal direction{'s' if s.k > 1 else ''} of layer {layer} "
            f"({', '.join(f'PC{k}' for k in s.kept) if s.k <= 8 else f'PC{s.kept[0]}..PC{s.kept[-1]}'}; "
            f"{s.explained_variance:.1%} of the variance; the rest held at its mean) keeps return within "
            f"±{s.tolerance:.0%} {where}: relative drop {_pct(last.relative_drop)}, {test}, inside the tolerance "
            f"{walk}.")


# -------------------------------------------------------------------------------------- progress
@contextlib.contextmanager
def _stages(progress: bool | None) -> Iterator[Callable[[str], None]]:
    """A one-line display of the current step on stderr (tqdm), silent when stderr is not a terminal (or
    ``progress=False``); evaluations show their own episode bars beneath it."""
    from tqdm.auto import tqdm

    if not (sys.stderr.isatty() if progress is None else progress):
        yield lambda name: None
        return
    bar = tqdm(bar_format="rli interrogate: {desc} [{elapsed} elapsed]", file=sys.stderr, leave=False)
    try:
        yield bar.set_description_str
    finally:
        bar.close()


# ----------------------------------------------------------------------------------- the protocol
def interrogate(
    policy: Any,
    env: str | None = None,
    *,
    target: str | None = None,
    layer: LayerSpec | None = None,
    sensors: Sequence[int] | None = None,
    probe_obs: Any = None,
    polarity_obs: Any = None,
    grid_axes: Sequence[Mapping[str, Any]] | None = None,
    target_unit: str | None = None,
    episodes: int = DEFAULT_EPISODES,
    seed: int = 0,
    n_obs: int = DEFAULT_N_OBS,
    obs_episodes: int = DEFAULT_OBS_EPISODES,
    ks: Sequence[int] = DEFAULT_KS,
    tolerance: float = 0.05,
    candidates: int = 32,
    method: str = "ordered",
    trust: bool = False,
    progress: bool | None = None,
) -> Report:
    """Run the four-step interrogation protocol on ``policy`` → :class:`Report`.

    Args:
        policy: a checkpoint path (its card ``<stem>.json``, if any, supplies the
            defaults) or a :class:`~rli.Policy` (its card too, when it was loaded from a file).
        env: gymnasium id the policy acts in (default: the card's).
        target: label to probe (default: the card's, else the first numeric ``info``
            entry the environment reports); ``"obs[I]"`` probes observation entry I.
        layer: the layer of steps 1–4 (default: the card's, else the last hidden
            layer of the actor trunk, the one before the output layer).
        sensors: observation indices negated in step 2 (default: the card's; without
            any, step 2 is skipped and the report says so).
        probe_obs, polarity_obs: observations of steps 1 and 2 (an ObsSet, a ``.npz``
            path, ``"module:function"``, or a card spec). Default: the card's, else the
            ``n_obs`` observations the policy visits (polarity: the probe observations).
        grid_axes, target_unit: how the heat map labels its axes and colour bar.
        episodes: paired episodes per comparison (steps 3 and 4); episode *i* uses seed
            ``seed + i``.
        seed: seeds the probe's folds and controls and the evaluation episodes; the
            visited observations come from the episodes that follow those of step 4's
            selection and confirmation (seeds from ``seed + 2·episodes``), so they never
            share a seed with an evaluation.
        n_obs: how many visited observations (probe, PCA fit, mean of the kept subspace).
        obs_episodes: the whole episodes those observations are spread over
            (:meth:`rli.ObsSet.from_rollouts` with ``episodes=``): the probe splits them
            by episode, so it needs at least as many episodes as folds.
        ks: numbers of top principal directions removed in step 3 (must start at 1).
        tolerance, candidates, method: step 4 (:func:`rli.minimal_subspace`);
            ``method="greedy"`` is the paper's search, ``"ordered"`` is faster.
        trust: allow unpickling the checkpoint and calling observation functions outside rli.
        progress: progress display on stderr (default: only on a terminal).

    Example:
        >>> import torch, torch.nn as nn, rli
        >>> _ = torch.manual_seed(0)
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 2)), env="CartPole-v1")
        >>> report = rli.interrogate(policy, "CartPole-v1", target="obs[2]", sensors=[2], episodes=3, n_obs=200,
        ...                          ks=[1, 2], candidates=2, progress=False)
        >>> report.probe.layer_index, report.sources["layer"], len(report.ablation.values)
        (1, 'default', 2)
    """
    started = time.perf_counter()
    ks = _check_arguments(episodes, obs_episodes, method, tolerance, candidates, ks)
    given = {"env": env, "target": target, "layer": layer, "sensors": None if sensors is None else list(sensors),
             "probe_obs": probe_obs, "polarity_obs": polarity_obs, "grid_axes": grid_axes, "target_unit": target_unit}
    setup = resolve_setup(policy, trust, given)
    policy, settings, sources = setup.policy, setup.settings, setup.sources
    timings: dict[str, float] = {}
    env_id = need_env(setup, "the ablation steps run episodes")
    chosen = _choose_layer(policy, settings, sources)
    # names are checked before any work: the target against the given observations (or the observation size)
    given_probe = _check_names(setup, trust)
    with _stages(progress) as stage:
        stage("collecting the observations the policy visits")
        tick = time.perf_counter()
        rollout_seed = int(seed) + 2 * int(episodes)  # after step 4's selection and confirmation seeds
        rollouts = ObsSet.from_rollouts(env_id, policy, n=n_obs, seed=rollout_seed, episodes=obs_episodes)
        rollout_text = (f"{len(rollouts):,} observations visited by the policy, spread over {obs_episodes} episodes "
                        f"(seeds {rollout_seed}..{rollout_seed + obs_episodes - 1})")
        if "target" not in settings:
            settings["target"], sources["target"] = infer_target(env_id, rollouts, rollout_seed), "inferred"
        name = settings["target"]
        given_obs = given_probe
        if given_obs is None:
            given_obs, sources["probe_obs"] = (rollouts, rollout_text), "default"
        probe_set = with_target(given_obs[0], name, what=f"the probe observations ({given_obs[1]})")
        settings["probe_obs"] = given_obs[1]
        if probe_set.labels[name].ndim != 1:
            raise RliError(f"target {name!r} has {probe_set.labels[name].shape[1]} columns; the protocol probes one")
        timings["rollouts"] = time.perf_counter() - tick

        stage("step 1/4, probing every layer")
        tick = time.perf_counter()
        profile = probe_layers(policy, probe_set, name, seed=seed)
        result = profile[chosen.name]
        heatmap = None
        if len(probe_set.meta.get("grid_shape", ())) == 2:
            from rli.plots import heldout_predictions

            heatmap = heldout_predictions(policy, probe_set, result)
        timings["probe"] = time.perf_counter() - tick

        stage("step 2/4, polarity inversion")
        tick = time.perf_counter()
        polarity = None
        given_obs = step_obs(setup, "polarity", trust)
        if given_obs is None:
            given_obs, sources["polarity_obs"] = (probe_set, settings["probe_obs"]), "default: the probe observations"
        polarity_set = with_target(given_obs[0], name, what=f"the polarity observations ({given_obs[1]})")
        settings["polarity_obs"] = given_obs[1]
        if settings.get("sensors") is not None:
            polarity = polarity_test(policy, polarity_set, name, settings["sensors"], chosen, seed=seed)
        timings["polarity"] = time.perf_counter() - tick

        stage("step 3/4, ablating principal directions")
        tick = time.perf_counter()
        curve = ablation_curve(policy, env_id, chosen, rollouts, ks=ks, episodes=episodes, seed=seed,
                               progress=progress)
        acts = capture(policy, rollouts, [chosen.name])[chosen.name]
        basis, ratios = fit_pca(acts, 2)
        scatter_obs, scatter_source = rollouts, rollout_text
        if name not in rollouts.labels and obs_entry(name) is None:
            scatter_obs, scatter_source = probe_set, settings["probe_obs"]
            acts = capture(policy, scatter_obs, [chosen.name])[chosen.name]
        values = with_target(scatter_obs, name).labels[name]
        timings["ablation"] = time.perf_counter() - tick

        stage("step 4/4, searching the minimal subspace")
        tick = time.perf_counter()
        search = minimal_subspace(policy, env_id, chosen, rollouts, tolerance=tolerance, candidates=candidates,
                                  method=method, episodes=episodes, seed=seed, progress=progress)
        timings["subspace"] = time.perf_counter() - tick
    env_name = env_id if isinstance(env_id, str) else resolve_env(env_id).name  # JSON-able: a factory by its name
    settings.update(env=env_name, rollout_obs=rollout_text, episodes=int(episodes), seed=int(seed),
                    rollout_seed=rollout_seed, n_obs=int(n_obs), obs_episodes=int(obs_episodes), ks=list(ks),
                    tolerance=tolerance, candidates=int(candidates), method=method)
    return Report(
        policy=policy.source or repr(policy), fingerprint=policy.fingerprint, settings=settings, sources=sources,
        profile=profile, probe=result, polarity=polarity, ablation=curve, subspace=search,
        meta=_meta(started, timings, setup.card), probe_obs=probe_set, heatmap=heatmap,
        scatter={"acts": acts, "values": values, "basis": basis, "ratios": ratios.tolist(), "source": scatter_source})


def _check_arguments(episodes: Any, obs_episodes: Any, method: Any, tolerance: Any, candidates: Any,
                     ks: Sequence[int]) -> tuple[int, ...]:
    """Check :func:`interrogate`'s numeric and method arguments (before any work) → ``ks`` as a tuple."""
    if isinstance(episodes, bool) or not isinstance(episodes, (int, np.integer)) or episodes < 2:
        raise RliError(f"episodes must be an integer of at least 2 (paired comparisons), got {episodes!r}")
    if isinstance(obs_episodes, bool) or not isinstance(obs_episodes, (int, np.integer)) or obs_episodes < 2:
        raise RliError(f"obs_episodes must be an integer of at least 2 (the probe splits the visited observations by "
                       f"episode; default {DEFAULT_OBS_EPISODES}), got {obs_episodes!r}")
    if method not in ("greedy", "ordered"):
        raise RliError(f"method must be 'greedy' or 'ordered', not {method!r}")
    if not 0 <= tolerance < 1:
        raise RliError(f"tolerance is a fraction of the baseline return in [0, 1), got {tolerance}")
    if isinstance(candidates, bool) or not isinstance(candidates, (int, np.integer)) or candidates < 1:
        raise RliError(f"candidates must be a positive integer, got {candidates!r}")
    ks = tuple(int(k) for k in ks)
    if not ks or ks[0] != 1 or list(ks) != sorted(set(ks)):
        raise RliError(f"ks must be increasing numbers of directions starting at 1 (PC1 alone), got {list(ks)}")
    return ks


def _choose_layer(policy: Policy, settings: dict[str, Any], sources: dict[str, str]) -> Layer:
    """The layer of steps 1–4 (the card's or the argument's, else the default), recorded in ``settings``."""
    if "layer" in settings:
        chosen = policy.layer(settings["layer"])
    else:
        chosen, sources["layer"] = _default_layer(policy), "default"
    settings["layer"] = chosen.index if chosen.index is not None else chosen.name
    return chosen


def _check_names(setup: _Setup, trust: bool) -> tuple[ObsSet, str] | None:
    """Check the sensors and the target name (against the given probe observations, or the observation size)
    → the given probe observations (``None`` if none)."""
    settings = setup.settings
    size = int(np.prod(setup.policy.obs_shape))
    if settings.get("sensors") is not None and not all(-size <= int(i) < size for i in settings["sensors"]):
        raise RliError(f"sensors {settings['sensors']} must be observation indices 0..{size - 1}")
    given_probe = step_obs(setup, "probe", trust)
    if "target" in settings:
        if not isinstance(settings["target"], str):
            raise RliError(f"target must be a label name or 'obs[I]' (the protocol's steps use several observation "
                           f"sets, so give the values as a label of each), not {type(settings['target']).__name__}")
        check_target_name(settings["target"], size)
        if given_probe is not None:
            with_target(given_probe[0], settings["target"], what=f"the probe observations ({given_probe[1]})")
    return given_probe


def step_obs(setup: _Setup, step: str, trust: bool) -> tuple[ObsSet, str] | None:
    """The observations given for a step (``"probe"`` or ``"polarity"``) and their description; ``None`` if none.

    Paths from the card are relative to the card; paths given as arguments to the current directory.
    """
    key = f"{step}_obs"
    spec = setup.settings.get(key)
    if spec is None:
        return None
    card = setup.card if setup.sources[key] == "card" else None
    obs = load_obs(spec, base=Path(".") if card is None else card.parent, trust=trust)
    return obs, _describe_obs(spec, obs)


def _meta(started: float, timings: dict[str, float], card: Path | None) -> dict[str, Any]:
    import gymnasium
    import torch

    from rli import __version__

    return {"created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "rli_version": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "gymnasium": gymnasium.__version__, "machine": platform.machine(),
            "card": None if card is None else str(card), "timings_s": {k: round(v, 2) for k, v in timings.items()},
            "wall_time_s": round(time.perf_counter() - started, 2)}
