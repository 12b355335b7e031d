"""The protocol's causal evidence: integrated gradients of the policy's action, and activation patching.

Both run on a seeded subsample of at most :data:`ROWS` observations (whole rows, their
groups kept) so that they add little to an interrogation, both on the polarity
observations (the probe observations when none are given: where the sensors vary):
attribution with :data:`IG_STEPS` integration steps; patching of every actor layer
whole, then each unit of the chosen layer when it has at most :data:`UNIT_LIMIT` units.
Intervals run over groups: the ``episode`` label of visited observations, contiguous
blocks of a grid (:func:`rli.probes.fold_split` with ``split="blocks"``), else rows.

The output is the policy's action: the greedy action for discrete actions (its logit
for attribution, action agreement for patching), else the action component that varies
most over the observations (``"action:k"``; patching reads the same component of the
action head). The counterfactual is the observations with the ``sensors`` negated when
they are known (the polarity step's inversion), else the same observations permuted
across groups (each row paired with a row of another episode or block).

Example:
    >>> import numpy as np, rli
    >>> from rli.protocol.evidence import counterfactual
    >>> obs = rli.ObsSet(np.arange(8.0).reshape(4, 2), labels={"episode": np.array([0, 0, 1, 1])})
    >>> corrupt, kind, _ = counterfactual(obs, None, "episode", seed=0)
    >>> kind, bool((corrupt.labels["episode"] != obs.labels["episode"]).all())
    ('permuted', True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rli.attribution import AttributionResult, attribute
from rli.errors import RliError
from rli.observations import ObsSet
from rli.patch_sweep import PatchSweepResult, patch_sweep
from rli.polarity import negate_sensors
from rli.policy import Layer, Policy
from rli.probes import fold_split

#: at most this many observations are attributed and patched (a seeded subsample of whole rows)
ROWS = 512
#: integration steps of integrated gradients (captum's default is 50; completeness is reported beside the shares)
IG_STEPS = 32
#: the chosen layer's units are patched one by one up to this width
UNIT_LIMIT = 512
#: the label that carries each row's group in the subsample
GROUP_LABEL = "causal_group"


@dataclass(frozen=True)
class Sample:
    """A subsample of observations for the causal steps: the rows, their indices in the full set, how it was drawn."""

    obs: ObsSet
    rows: np.ndarray
    groups: str
    description: str


def sample(obs: ObsSet, *, seed: int, rows: int = ROWS) -> Sample:
    """At most ``rows`` observations of ``obs`` (seeded, in their order), with each row's group in :data:`GROUP_LABEL`.

    Example:
        >>> import numpy as np, rli
        >>> picked = sample(rli.ObsSet(np.zeros((10, 2))), seed=0, rows=4)
        >>> picked.rows.tolist(), picked.groups
        ([2, 4, 5, 7], 'rows (no episodes or grid)')
    """
    n = len(obs)
    if "episode" in obs.labels:
        codes, groups = np.unique(obs.labels["episode"], return_inverse=True)[1], "episodes"
    elif len(obs.meta.get("grid_shape", ())) >= 1 and int(np.prod(obs.meta["grid_shape"])) == n and n >= 10:
        split = fold_split(obs, np.zeros(n), 5, seed, split="blocks")
        assert split.groups is not None, "a block split has groups"
        codes, groups = split.groups, f"contiguous blocks of the grid ({split.by})"
    else:
        codes, groups = np.arange(n), "rows (no episodes or grid)"
    picked = np.arange(n) if n <= rows else np.sort(np.random.default_rng(seed).choice(n, rows, replace=False))
    how = (f"all {n:,} rows" if n <= rows else
           f"a random subsample of {rows:,} of the {n:,} rows, seed {seed}")
    return Sample(obs[picked].with_labels(**{GROUP_LABEL: np.asarray(codes)[picked]}), picked, groups, how)


def action_output(policy: Policy, obs: ObsSet) -> tuple[str, Any, str, str]:
    """The output the causal steps read → (attribution target, patching metric, what each of them reads).

    Discrete actions: ``"action"`` (the greedy action's logit) and ``"action_agreement"``.
    Continuous: ``"action:k"`` and the action head's component k, k the component
    of largest variance over ``obs`` (the mean action of a Gaussian policy).
    """
    space = policy.action_space
    if space is not None and type(space).__name__ in ("Discrete", "MultiDiscrete", "MultiBinary"):
        return ("action", "action_agreement", "the greedy action's logit",
                "action agreement (1 where the patched greedy action is the clean one)")
    head = np.asarray(policy.act(obs.obs), dtype=np.float64).reshape(len(obs), -1)
    k = int(np.argmax(head.var(axis=0))) if head.shape[1] > 1 else 0

    def component(outputs: Any) -> Any:
        return outputs[:, k]

    component.__name__ = f"action:{k}"
    which = "" if head.shape[1] == 1 else f", the one of {head.shape[1]} that varies most over these observations"
    text = f"action component {k} (the action head's output{which})"
    return f"action:{k}", component, text, text


def counterfactual(obs: ObsSet, sensors: Any, groups: str, *, seed: int) -> tuple[ObsSet, str, str]:
    """The corrupt observations paired row by row with ``obs`` → (corrupt, ``"sensors-negated"`` or ``"permuted"``,
    description). ``groups`` is the label holding each row's group."""
    if sensors:
        entries = ", ".join(map(str, sensors))
        return (negate_sensors(obs, list(sensors)), "sensors-negated",
                f"the same observations with observation entr{'y' if len(sensors) == 1 else 'ies'} {entries} negated "
                "(the polarity step's inversion)")
    codes = np.unique(np.asarray(obs.labels[groups]), return_inverse=True)[1].ravel()
    if codes.max() < 1:
        raise RliError("the permuted counterfactual pairs rows of different groups, and these observations hold one "
                       "group; give sensors= (the sensor-negated counterfactual) or observations of 2+ episodes")
    rng = np.random.default_rng(seed)
    order = rng.permutation(int(codes.max()) + 1)
    partner_group = np.empty_like(order)
    partner_group[order] = np.roll(order, -1)  # a cyclic derangement: no group is paired with itself
    members = [np.flatnonzero(codes == g) for g in range(len(order))]
    partner = np.array([rng.choice(members[partner_group[g]]) for g in codes])
    return (obs[partner], "permuted",
            f"the same observations permuted across groups (seed {seed}: each row paired with a row of another group; "
            "no sensors were given to negate)")


def attribution_evidence(policy: Policy, obs: ObsSet, described: str, sensors: Any, *,
                         seed: int) -> tuple[AttributionResult | None, dict[str, Any]]:
    """Integrated gradients of the action over a subsample of ``obs`` → (result, what was done) or (None, why not)."""
    picked = sample(obs, seed=seed)
    try:
        target, _, output, _ = action_output(policy, picked.obs)
        result = attribute(policy, picked.obs, target=target, method="ig", n_steps=IG_STEPS, groups=GROUP_LABEL,
                           seed=seed)
    except RliError as err:
        return None, {"skipped": f"attribution does not apply to this policy ({err})"}
    how: dict[str, Any] = {"skipped": None, "output": output, "target": target, "method": "ig", "n_steps": IG_STEPS,
                           "baseline": result.baseline, "observations": described, "rows": len(picked.rows),
                           "sample": picked.description, "row_indices": picked.rows.tolist(), "groups": picked.groups,
                           "sensor_share": None, "sensors_at_baseline": None}
    if sensors and len(policy.obs_shape) == 1:
        entries = [int(i) % policy.obs_shape[0] for i in sensors]
        how["sensor_share"] = result.share_of([f"obs[{i}]" for i in entries]).to_dict()
        how["sensors_at_baseline"] = bool(np.all(np.asarray(picked.obs.obs)[:, entries] == 0))
    return result, how


def patching_evidence(policy: Policy, obs: ObsSet, described: str, sensors: Any, layer: Layer, *,
                      seed: int) -> tuple[PatchSweepResult | None, PatchSweepResult | None, dict[str, Any]]:
    """Patch every actor layer, then the chosen layer's units, from the counterfactual into a subsample of ``obs``
    → (layer sweep, unit sweep or None, what was done); (None, None, why not) when patching does not apply."""
    picked = sample(obs, seed=seed)
    try:
        corrupt, kind, counter = counterfactual(picked.obs, sensors, GROUP_LABEL, seed=seed)
        _, metric, _, output = action_output(policy, picked.obs)
        groups = GROUP_LABEL if len(np.unique(picked.obs.labels[GROUP_LABEL])) >= 2 else None
        layers = patch_sweep(policy, picked.obs, corrupt, metric=metric, over=("layer",), groups=groups)
        units = None
        if layer.width and layer.width <= UNIT_LIMIT:
            units = patch_sweep(policy, picked.obs, corrupt, metric=metric, over=("layer", "unit"), layers=[layer.name],
                                groups=groups)
    except RliError as err:
        return None, None, {"skipped": f"patching does not apply to this policy or these observations ({err})"}
    how = {"skipped": None, "counterfactual": counter, "counterfactual_kind": kind, "metric": output,
           "observations": described, "rows": len(picked.rows), "sample": picked.description,
           "row_indices": picked.rows.tolist(), "groups": picked.groups if groups else "rows (a single group)",
           "units_skipped": None if units is not None else
           f"layer {layer.name} has {layer.width} units, more than the {UNIT_LIMIT} patched one by one here (run "
           "rli.patch_sweep with screen='attribution' on it)"}
    return layers, units, how
