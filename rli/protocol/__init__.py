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

Then the causal evidence (``causal=False`` skips it): integrated gradients of the
policy's action over the polarity observations, and activation patching of every actor
layer (and the chosen layer's units) from a counterfactual (:mod:`rli.protocol.evidence`).

What to interrogate (environment, target, layer, sensors, the observations for
probing and polarity) comes from the arguments, else from the checkpoint card
(``<stem>.json`` beside the checkpoint, its ``"interrogate"`` block; see
docs/cli.md), else is inferred: the target is the first numeric ``info`` entry the
environment reports, the observations are visited by the policy, the layer is the
last hidden layer of the actor trunk. The :class:`Report` says where each setting
came from, states each step's finding in words with its numbers, and saves
``report.json``, ``report.html`` and the figures.

The modules: :mod:`~rli.protocol.cards` (checkpoint cards, observation specs),
:mod:`~rli.protocol.setup` (settings, target, layer, visited observations),
:mod:`~rli.protocol.run` (:func:`interrogate`, one stage per step),
:mod:`~rli.protocol.evidence` (the causal steps), :mod:`~rli.protocol.report`
(:class:`Report`), :mod:`~rli.protocol.findings` (the findings in words),
:mod:`~rli.protocol.causal` (the causal sections of the page).
"""

from __future__ import annotations

from rli.protocol.cards import CARD_FIELDS, CARD_KEY, card_settings, check_obs_spec, describe_obs, load_obs, read_card
from rli.protocol.causal import attribution_section, patching_section
from rli.protocol.report import Report
from rli.protocol.run import (
    DEFAULT_EPISODES,
    DEFAULT_KS,
    DEFAULT_N_OBS,
    DEFAULT_OBS_EPISODES,
    interrogate,
)
from rli.protocol.setup import (
    Setup,
    check_names,
    choose_layer,
    infer_target,
    need_env,
    resolve_setup,
    settle_target,
    step_obs,
    visited_obs,
    with_target,
)

__all__ = [
    "CARD_FIELDS", "CARD_KEY", "DEFAULT_EPISODES", "DEFAULT_KS", "DEFAULT_N_OBS", "DEFAULT_OBS_EPISODES", "Report",
    "Setup", "attribution_section", "card_settings", "check_names", "check_obs_spec", "choose_layer", "describe_obs",
    "infer_target", "interrogate", "load_obs", "need_env", "patching_section", "read_card",
    "resolve_setup", "settle_target", "step_obs", "visited_obs", "with_target",
]
