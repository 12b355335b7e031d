"""Input and layer attribution on captum: which inputs (or image regions, or units) a decision rests on.

:func:`attribute` runs captum's ``IntegratedGradients``, ``Saliency``,
``LayerIntegratedGradients`` or ``LayerGradCam`` on one output of a policy (the logit
of the greedy action, a fixed output, the critic's value) and aggregates the per-row
attributions into **shares**: the fraction of the absolute attribution mass that falls
on an input, a set of inputs or an image region, averaged over rows, with a confidence
interval over *episodes* (a t-interval on per-episode means: rows of one episode are
not independent).

Attribution is with respect to the **raw observation the caller passed**, in its own
layout: the policy's observation normaliser (SB3 ``VecNormalize``), the transposition
of channels-last images and SB3's division of uint8 images by 255 all sit inside the
differentiated function. A ``"zeros"`` baseline is therefore the raw zero observation
(a black frame; for a normalised policy, not the normalised zero), ``"mean"`` the mean
of the batch. Recurrent policies are attributed with the hidden state of every row held
fixed (the state recorded along the rollout, replayed, or fresh, as :func:`rli.capture`
chooses it): the attribution is to the current observation only, not to earlier ones.
"""

from __future__ import annotations

import contextlib
import inspect
import re
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, LayerIntegratedGradients, Saliency
from captum.metrics import infidelity, sensitivity_max
from torch import nn

from rli import checks, recurrent
from rli.errors import RliError
from rli.network import first_tensor
from rli.observations import ObsSet
from rli.policy import Policy
from rli.stats import t_interval
from rli.tensors import to_numpy

METHODS = ("ig", "saliency", "layer_ig", "gradcam")
_TARGET = re.compile(r"^(action|value)(?::(\d+))?$")


# ------------------------------------------------------------------------------------------ results
@dataclass(frozen=True)
class Share:
    """The mean share of absolute attribution on one region, with its confidence interval over groups."""

    name: str
    share: float
    ci: tuple[float, float]

    def to_dict(self) -> dict[str, Any]:
        """Plain-python form (for reports and JSON)."""
        return {"name": self.name, "share": self.share, "ci": list(self.ci)}

    def __str__(self) -> str:
        return f"{self.name}: {self.share:.3f} [{self.ci[0]:.3f}, {self.ci[1]:.3f}]"


@dataclass(frozen=True)
class AttributionResult:
    """Per-row attributions, their shares by region with CIs, and the checks captum offers.

    ``attributions`` has one row per observation in the layout that was attributed: the
    raw observation as passed (``ig``, ``saliency``), the layer's output (``layer_ig``)
    or the Grad-CAM map upsampled to the image's height × width (``gradcam``).
    ``shares`` maps every region to its :class:`Share`: per row, the region's absolute
    attribution over the row's total; the mean over groups (each episode weighs the
    same) with a t-interval over the per-group means (``(nan, nan)`` from a single
    group). Rows whose attributions are all zero carry no share and are left out
    (``n_rows`` counts the rows used).
    ``completeness`` (IG and layer IG) is captum's convergence delta per row,
    ``sum(attr) − (f(x) − f(baseline))``; ``infidelity`` and ``sensitivity`` are
    captum's metrics per row when asked for (``metrics=True``).

    Example:
        >>> import torch, torch.nn as nn, numpy as np
        >>> net = nn.Linear(3, 1, bias=False)
        >>> with torch.no_grad():
        ...     _ = net.weight.copy_(torch.tensor([[2.0, 0.0, 1.0]]))
        >>> obs = np.ones((4, 3), dtype=np.float32)
        >>> import rli
        >>> result = attribute(rli.load_policy(net), obs, target="action:0", groups=np.arange(4))
        >>> round(result.shares["obs[0]"].share, 3), round(result.shares["obs[1]"].share, 3)
        (0.667, 0.0)
    """

    method: str
    target: str
    attributions: np.ndarray
    outputs: np.ndarray
    target_index: np.ndarray
    shares: Mapping[str, Share]
    regions: Mapping[str, np.ndarray]
    groups: np.ndarray
    grouped_by: str
    n_rows: int
    layer: str | None = None
    baseline: str = "zeros"
    n_steps: int | None = None
    completeness: np.ndarray | None = None
    baseline_outputs: np.ndarray | None = None
    infidelity: np.ndarray | None = None
    sensitivity: np.ndarray | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def share_of(self, region: Any, *, confidence: float = 0.95) -> Share:
        """The share of a region: a name of :attr:`regions`, a list of names or indices, or a boolean mask.

        Several names are one region (their union). Indices name the entries of the
        flattened attributed layout (``[0, 1]`` for the first two inputs of a vector).
        """
        name, mask = self._mask(region)
        return _share(name, self.attributions, mask, self.groups, confidence)

    def _mask(self, region: Any) -> tuple[str, np.ndarray]:
        shape = self.attributions.shape[1:]
        if isinstance(region, str):
            if region not in self.regions:
                raise RliError(f"unknown region {region!r}; the regions are {', '.join(list(self.regions)[:20])}"
                               f"{' …' if len(self.regions) > 20 else ''} (or pass a boolean mask of shape {shape})")
            return region, self.regions[region]
        arr = np.asarray(region)
        if arr.dtype == np.bool_:
            return "mask", _region_mask("region", arr, shape)
        if isinstance(region, Sequence) and region and all(isinstance(r, str) for r in region):
            masks = [self._mask(r)[1] for r in region]
            return " + ".join(region), np.logical_or.reduce(masks)
        return _index_region("region", region, shape)

    def to_dict(self) -> dict[str, Any]:
        """Plain-python summary (no per-row arrays): method, target, shares, completeness and metrics."""
        def stat(values: np.ndarray | None) -> dict[str, float] | None:
            if values is None:
                return None
            return {"mean": float(np.mean(values)), "max_abs": float(np.max(np.abs(values)))}

        return {"method": self.method, "target": self.target, "layer": self.layer, "baseline": self.baseline,
                "n_steps": self.n_steps, "n_rows": self.n_rows, "n_groups": int(np.unique(self.groups).size),
                "grouped_by": self.grouped_by, "shares": [s.to_dict() for s in self.shares.values()],
                "completeness": stat(self.completeness), "infidelity": stat(self.infidelity),
                "sensitivity": stat(self.sensitivity), "notes": list(self.notes)}

    def __str__(self) -> str:
        where = f" at {self.layer}" if self.layer else ""
        lines = [f"{self.method} attribution of {self.target}{where} over {self.n_rows} rows "
                 f"({np.unique(self.groups).size} groups by {self.grouped_by}); share of |attribution|, 95% CI:"]
        ranked = sorted(self.shares.values(), key=lambda s: -s.share)
        lines += [f"  {s}" for s in ranked[:12]]
        if len(ranked) > 12:
            lines.append(f"  … {len(ranked) - 12} more regions")
        if self.completeness is not None:
            lines.append(f"completeness residual (sum attr − Δf): max |·| {np.max(np.abs(self.completeness)):.3g}")
        for name in ("infidelity", "sensitivity"):
            values = getattr(self, name)
            if values is not None:
                lines.append(f"{name}: mean {float(np.mean(values)):.3g}")
        lines += list(self.notes)
        return "\n".join(lines)


def _share(name: str, attributions: np.ndarray, mask: np.ndarray, groups: np.ndarray, confidence: float) -> Share:
    flat = np.abs(attributions.reshape(attributions.shape[0], -1)).astype(np.float64)
    total = flat.sum(axis=1)
    keep = total > 0
    if not keep.any():
        raise RliError("every row's attributions are zero, so no share is defined; the output does not depend on "
                       "the observation along this baseline path (try another baseline or target)")
    per_row = flat[keep][:, mask.reshape(-1)].sum(axis=1) / total[keep]
    kept = groups[keep]
    labels, inverse = np.unique(kept, return_inverse=True)
    means = np.bincount(inverse, weights=per_row) / np.bincount(inverse)
    if labels.size < 2:  # one episode: no interval over episodes (assert_attribution_in refuses to decide on it)
        return Share(name=name, share=float(means.mean()), ci=(float("nan"), float("nan")))
    low, high = t_interval(means, confidence=confidence)
    return Share(name=name, share=float(means.mean()), ci=(max(0.0, low), min(1.0, high)))


# ------------------------------------------------------------------------------------------ regions
def _region_mask(name: str, mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A boolean mask over the attributed layout; an image mask of shape (H, W) covers every channel."""
    if mask.shape == shape:
        return mask
    if len(shape) == 3 and mask.ndim == 2:
        for axis in (0, 2):
            spatial = tuple(s for i, s in enumerate(shape) if i != axis)
            if mask.shape == spatial:
                return np.broadcast_to(np.expand_dims(mask, axis), shape).copy()
    raise RliError(f"region {name!r} is a mask of shape {mask.shape}, but the attributions have shape {shape} per row; "
                   "give a boolean mask of that shape (or of the image's height × width)")


def _index_region(name: str, indices: Any, shape: tuple[int, ...]) -> tuple[str, np.ndarray]:
    size = int(np.prod(shape))
    try:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        raise RliError(f"region {name!r} must be a boolean mask or a list of input indices, not {indices!r}") from None
    if idx.size == 0 or idx.min() < -size or idx.max() >= size:
        raise RliError(f"region {name!r} has indices {idx.tolist()[:8]} outside 0..{size - 1} (the flattened "
                       f"attributed layout of shape {shape}); give indices in that range")
    mask = np.zeros(size, dtype=bool)
    mask[idx] = True
    label = name if name != "region" else "obs[" + ",".join(map(str, idx.tolist())) + "]"
    return label, mask.reshape(shape)


def _grid(shape: tuple[int, ...], rows: int, cols: int, channels_axis: int | None) -> dict[str, np.ndarray]:
    spatial = [s for i, s in enumerate(shape) if i != channels_axis] if channels_axis is not None else list(shape)
    height, width = spatial
    if not (1 <= rows <= height and 1 <= cols <= width):
        raise RliError(f"regions=({rows}, {cols}) must be a grid of at most {height} × {width} patches (the image)")
    out = {}
    for r, band in enumerate(np.array_split(np.arange(height), rows)):
        for c, strip in enumerate(np.array_split(np.arange(width), cols)):
            mask = np.zeros((height, width), dtype=bool)
            mask[band[0]:band[-1] + 1, strip[0]:strip[-1] + 1] = True
            out[f"patch[{r},{c}]"] = _region_mask("patch", mask, shape) if channels_axis is not None else mask
    return out


def _default_regions(shape: tuple[int, ...], kind: str, channels_axis: int | None,
                     keys: Mapping[str, slice] | None) -> dict[str, np.ndarray]:
    if keys:
        out = {}
        for key, part in keys.items():
            mask = np.zeros(shape, dtype=bool)
            mask[part] = True
            out[key] = mask
        return out
    if len(shape) == 1:
        prefix = "unit" if kind == "layer" else "obs"
        return {f"{prefix}[{i}]": np.eye(shape[0], dtype=bool)[i] for i in range(shape[0])}
    if kind == "layer" and len(shape) == 3:  # conv activations: one region per channel
        out = {}
        for c in range(shape[0]):
            mask = np.zeros(shape, dtype=bool)
            mask[c] = True
            out[f"channel[{c}]"] = mask
        return out
    if len(shape) in (2, 3):
        return _grid(shape, min(4, shape[-2 if channels_axis != 2 else 0]), min(4, shape[-1 if channels_axis != 2
                                                                                      else 1]), channels_axis)
    return {"all": np.ones(shape, dtype=bool)}


def _regions(spec: Any, shape: tuple[int, ...], kind: str, channels_axis: int | None,
             keys: Mapping[str, slice] | None) -> dict[str, np.ndarray]:
    if spec is None:
        return _default_regions(shape, kind, channels_axis, keys)
    if isinstance(spec, tuple) and len(spec) == 2 and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                                          for v in spec):
        if len(shape) not in (2, 3):
            raise RliError(f"regions=({spec[0]}, {spec[1]}) is a grid of image patches, but the attributions have shape "
                           f"{shape} per row; give a dict of region name → indices or mask")
        return _grid(shape, int(spec[0]), int(spec[1]), channels_axis if len(shape) == 3 else None)
    if not isinstance(spec, Mapping) or not spec:
        raise RliError(f"regions must be None, a (rows, cols) grid of image patches or a non-empty dict of name → "
                       f"boolean mask or input indices, not {type(spec).__name__}")
    out = {}
    for name, value in spec.items():
        arr = np.asarray(value)
        out[str(name)] = (_region_mask(str(name), arr, shape) if arr.dtype == np.bool_
                          else _index_region(str(name), value, shape)[1])
    return out


# -------------------------------------------------------------------------------- the differentiated function
@dataclass
class _Forward:
    """``fn(raw batch, *state) -> (n, k)`` outputs of the policy, differentiable w.r.t. the raw batch."""

    fn: Callable[..., torch.Tensor]
    discrete: bool
    state: tuple[torch.Tensor, ...] = ()


def _is_sb3(module: nn.Module) -> bool:
    policies = sys.modules.get("stable_baselines3.common.policies")
    return policies is not None and isinstance(module, policies.BasePolicy)


def _prepare(policy: Policy, channels_last: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """Raw batch → the network's input tensor: transpose channels-last images, normalise, cast (differentiably)."""
    norm = policy.normalizer
    param = next(iter(policy.module.parameters()), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    device = policy.device
    mean = std = None
    if norm is not None:
        mean = torch.as_tensor(norm.mean, dtype=torch.float64, device=device)
        std = torch.sqrt(torch.as_tensor(norm.var, dtype=torch.float64, device=device) + norm.epsilon)

    def prepare(x: torch.Tensor) -> torch.Tensor:
        if channels_last:
            x = x.permute(0, 3, 1, 2)
        if norm is not None and mean is not None and std is not None:
            x = torch.clamp((x.double() - mean) / std, -norm.clip, norm.clip)
        return x.to(dtype)

    return prepare


def _space_is_continuous(space: Any) -> bool:
    from gymnasium import spaces

    if isinstance(space, spaces.Dict):
        return all(_space_is_continuous(sub) for sub in space.spaces.values())
    return space is None or isinstance(space, spaces.Box)


def _sb3_forward(policy: Policy, target: str, prepare: Callable[[torch.Tensor], torch.Tensor],
                 states: Mapping[str, np.ndarray] | None) -> _Forward:
    from gymnasium import spaces
    from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy

    m: Any = policy.module
    discrete = isinstance(policy.action_space, (spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary))
    to_net: Callable[[torch.Tensor], Any] = prepare
    if isinstance(m.observation_space, spaces.Dict):
        from rli.space_fit import unflatten_tensor

        to_net = lambda x: unflatten_tensor(m.observation_space, prepare(x))  # noqa: E731
    value = target == "value"
    if policy.is_recurrent:
        return _recurrent_forward(policy, m, to_net, value, discrete, states)
    if isinstance(m, ActorCriticPolicy):
        if value:
            return _Forward(lambda x: m.predict_values(to_net(x)), discrete=False)
        return _Forward(lambda x: m.action_net(m.mlp_extractor.forward_actor(
            BasePolicy.extract_features(m, to_net(x), m.pi_features_extractor))), discrete=discrete)
    if value:
        raise RliError(f"target='value' needs a critic with a state value; this {policy.kind} policy has none (for "
                       "a Q-network, target='action' is the Q-value of the greedy action, its state value)")
    if hasattr(m, "quantile_net"):  # QRDQN: the mean over quantiles is the Q-value it acts on
        return _Forward(lambda x: m.quantile_net(to_net(x)).mean(dim=1), discrete=True)
    if hasattr(m, "q_net"):
        return _Forward(lambda x: m.q_net(to_net(x)), discrete=True)
    actor = getattr(m, "actor", None)
    if isinstance(actor, nn.Module):
        if "deterministic" in inspect.signature(actor.forward).parameters:  # SAC-like: tanh of the mean
            return _Forward(lambda x: actor(to_net(x), deterministic=True), discrete=False)
        return _Forward(lambda x: actor(to_net(x)), discrete=False)
    raise RliError(f"attribution does not support {policy.kind} policies yet; wrap the network as a plain torch "
                   "nn.Module whose forward returns the outputs to attribute and load that")


def _recurrent_forward(policy: Policy, m: Any, to_net: Callable[[torch.Tensor], Any], value: bool, discrete: bool,
                       states: Mapping[str, np.ndarray] | None) -> _Forward:
    """RecurrentPPO from per-row LSTM states held fixed (batch first in the extra args, so captum can tile them)."""
    from stable_baselines3.common.policies import BasePolicy

    part = "critic" if value and states is not None and "critic.0" in states else "actor"
    extra: tuple[torch.Tensor, ...] = ()
    if states is not None:
        extra = tuple(torch.as_tensor(np.ascontiguousarray(states[f"{part}.{i}"]), device=policy.device)
                      for i in (0, 1))

    def lstm_state(x: torch.Tensor, held: tuple[torch.Tensor, ...]) -> tuple[Any, torch.Tensor]:
        n = x.shape[0]
        if held:
            return (tuple(h.movedim(0, 1).contiguous() for h in held),
                    torch.zeros(n, device=x.device))
        layers, _, hidden = m.lstm_hidden_state_shape
        zero = torch.zeros(layers, n, hidden, device=x.device)
        return (zero, zero.clone()), torch.ones(n, device=x.device)

    if value:
        def values(x: torch.Tensor, *held: torch.Tensor) -> torch.Tensor:
            state, starts = lstm_state(x, held)
            return m.predict_values(to_net(x), state, starts)
        return _Forward(values, discrete=False, state=extra)

    def actor(x: torch.Tensor, *held: torch.Tensor) -> torch.Tensor:
        state, starts = lstm_state(x, held)
        features = BasePolicy.extract_features(m, to_net(x), m.pi_features_extractor)
        latent, _ = m._process_sequence(features, state, starts, m.lstm_actor)
        return m.action_net(m.mlp_extractor.forward_actor(latent))

    return _Forward(actor, discrete=discrete, state=extra)


def _module_forward(policy: Policy, target: str, prepare: Callable[[torch.Tensor], torch.Tensor]) -> _Forward:
    from gymnasium import spaces

    if target == "value":
        raise RliError(f"target='value' needs a critic; this plain {policy.kind} module has only its output: use "
                       "target='action' or 'action:k'")
    module = policy.module
    discrete = isinstance(policy.action_space, spaces.Discrete)
    return _Forward(lambda x: first_tensor(module(prepare(x))), discrete=discrete)


def _build_forward(policy: Policy, target: str, channels_last: bool,
                   states: Mapping[str, np.ndarray] | None) -> _Forward:
    if not _space_is_continuous(policy.observation_space):
        raise RliError(f"attribution needs real-valued observations to differentiate; this policy's observation space "
                       f"is {policy.observation_space} (one-hot encoded inside the network): attribute a policy with "
                       "Box observations")
    prepare = _prepare(policy, channels_last)
    inner = _sb3_forward(policy, target, prepare, states) if _is_sb3(policy.module) else \
        _module_forward(policy, target, prepare)

    def flat(x: torch.Tensor, *held: torch.Tensor) -> torch.Tensor:
        out = inner.fn(x, *held)
        return out.reshape(out.shape[0], -1)

    return _Forward(flat, discrete=inner.discrete, state=inner.state)


# ------------------------------------------------------------------------------------------ argument checks
def _check_target(target: Any) -> tuple[str, int | None]:
    match = _TARGET.match(target) if isinstance(target, str) else None
    if match is None or (match.group(1) == "value" and match.group(2) is not None):
        raise RliError(f"target must be 'action' (the greedy action's logit, or the action for a 1-D continuous "
                       f"action), 'action:k' (output k) or 'value' (the critic), not {target!r}")
    return match.group(1), None if match.group(2) is None else int(match.group(2))


def _target_rows(kind: str, k: int | None, outputs: torch.Tensor, discrete: bool, target: str) -> np.ndarray:
    n, width = outputs.shape
    if kind == "value" or k is not None:
        index = 0 if k is None else k
        if index >= width:
            raise RliError(f"target={target!r} asks for output {index}, but the policy has {width} outputs "
                           f"(0..{width - 1})")
        return np.full(n, index, dtype=np.int64)
    if discrete:
        return to_numpy(outputs.argmax(dim=1)).astype(np.int64)
    if width != 1:
        raise RliError(f"target='action' is ambiguous for a policy with {width} continuous action components (or an "
                       f"output of width {width} and no Discrete action space); name one: target='action:0'")
    return np.zeros(n, dtype=np.int64)


def _baseline(spec: Any, raw: np.ndarray) -> tuple[str, np.ndarray]:
    if spec is None or (isinstance(spec, str) and spec == "zeros"):
        return "zeros", np.zeros_like(raw)
    if isinstance(spec, str) and spec == "mean":
        return "mean", np.broadcast_to(raw.mean(axis=0, keepdims=True), raw.shape).copy()
    if isinstance(spec, str):
        raise RliError(f"baseline must be None or 'zeros' (the raw zero observation), 'mean' (the batch mean) or an "
                       f"array, not {spec!r}")
    try:
        arr = np.asarray(spec, dtype=raw.dtype)
    except (TypeError, ValueError):
        raise RliError(f"baseline must be 'zeros', 'mean' or a numeric array, not {type(spec).__name__}") from None
    if arr.shape == raw.shape[1:]:
        arr = np.broadcast_to(arr[None], raw.shape).copy()
    if arr.shape != raw.shape or not np.all(np.isfinite(arr)):
        raise RliError(f"baseline has shape {arr.shape}; give one finite observation of shape {raw.shape[1:]} or one "
                       f"per row {raw.shape}, in the layout of the observations")
    return "array", arr


def groups_of(obs: Any, groups: Any, n: int) -> tuple[np.ndarray, str]:
    """The group (episode) of each of ``n`` rows and what it came from: ``groups=``, the ``episode`` label, or rows.

    Example:
        >>> ids, by = groups_of(np.zeros((3, 2)), None, 3)
        >>> ids.tolist(), by
        ([0, 1, 2], 'row')
    """
    if groups is None:
        if isinstance(obs, ObsSet) and "episode" in obs.labels:
            return np.asarray(obs.labels["episode"]), "episode"
        return np.arange(n), "row"
    if isinstance(groups, str):
        if not isinstance(obs, ObsSet) or groups not in obs.labels:
            have = ", ".join(obs.labels) if isinstance(obs, ObsSet) else "none (a plain array)"
            raise RliError(f"groups={groups!r} is not a label of the observations (labels: {have}); pass a label name "
                           "or an array with one group per row")
        return np.asarray(obs.labels[groups]), groups
    arr = np.asarray(groups)
    if arr.shape != (n,):
        raise RliError(f"groups has shape {arr.shape}; give one group (episode) per observation, shape ({n},)")
    return arr, "groups"


def _dict_parts(policy: Policy) -> dict[str, slice] | None:
    from gymnasium import spaces

    space = policy.observation_space
    if not isinstance(space, spaces.Dict):
        return None
    out, start = {}, 0
    for key, sub in space.spaces.items():
        size = spaces.flatdim(sub)
        out[str(key)] = slice(start, start + size)
        start += size
    return out


def _layer_module(policy: Policy, layer: Any, method: str) -> tuple[str, nn.Module]:
    if layer is None:
        if method == "gradcam":
            convs = [lay for lay in policy.actor_layers if lay.shape is not None and len(lay.shape) == 3]
            if not convs:
                raise RliError("method='gradcam' needs a convolutional layer (activations channels × height × width); "
                               "this policy has none: use method='ig' or 'layer_ig'")
            found = convs[-1]
        else:
            found = policy.default_layer
    else:
        found = policy.layer(layer)
    if method == "gradcam" and (found.shape is None or len(found.shape) != 3):
        raise RliError(f"method='gradcam' needs a convolutional layer; {found.name} has activations of shape "
                       f"{found.shape}: name a conv layer (see policy.layers) or use method='layer_ig'")
    return found.name, policy.module.get_submodule(found.name)


@contextlib.contextmanager
def _differentiating(module: nn.Module, seed: int) -> Iterator[None]:
    """Eval mode and grad enabled for the duration; modes, grad mode and torch's random state restored after."""
    training = [sub for sub in module.modules() if sub.training]
    for sub in training:
        sub.training = False  # per module (``train()`` would recurse and lose mixed modes)
    try:
        with torch.random.fork_rng(devices=[]), torch.enable_grad():
            torch.manual_seed(seed)
            yield
    finally:
        for sub in training:
            sub.training = True


# --------------------------------------------------------------------------------------------- attribute
def attribute(
    policy: Policy,
    obs: Any,
    *,
    target: str = "action",
    method: str = "ig",
    layer: Any = None,
    baseline: Any = None,
    n_steps: int = 50,
    batch_size: int | None = None,
    groups: Any = None,
    regions: Any = None,
    metrics: bool = False,
    recurrent_state: recurrent.RecurrentState | None = None,
    confidence: float = 0.95,
    seed: int = 0,
) -> AttributionResult:
    """Attribute one output of ``policy`` on ``obs`` with captum and aggregate the shares by region.

    ``target``: ``"action"`` (discrete: the logit, or Q-value, of each row's greedy
    action; continuous: the mean action when it has one component), ``"action:k"``
    (output ``k`` on every row), ``"value"`` (the critic). ``method``: ``"ig"``
    (``IntegratedGradients``), ``"saliency"`` (``Saliency``, absolute gradients),
    ``"layer_ig"`` (``LayerIntegratedGradients`` to the output of ``layer``, default
    :attr:`Policy.default_layer`), ``"gradcam"`` (``LayerGradCam`` on a conv ``layer``,
    default the last one, ReLU'd and upsampled to the image). ``baseline`` (IG methods):
    ``"zeros"`` (default), ``"mean"`` or an array in the observations' layout. ``groups``:
    the rows' episodes for the CIs (a label name or array; default the ``episode`` label,
    else every row its own group). ``regions``: a dict of name → boolean mask or input
    indices, or a ``(rows, cols)`` grid of image patches; default every input of a vector
    (``"obs[i]"``), the keys of a ``Dict`` observation, a 4 × 4 grid of an image, every
    unit (or channel) of a layer. ``metrics=True`` adds captum's ``infidelity`` and
    ``sensitivity_max`` per row (``ig`` and ``saliency``; about ten extra attributions per
    row). ``seed`` seeds those perturbations; torch's global random state is untouched.

    Example:
        >>> import torch, torch.nn as nn, numpy as np, rli
        >>> _ = torch.manual_seed(0)
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
        >>> with torch.no_grad():
        ...     _ = net[0].weight[:, 2:].zero_()  # inputs 2 and 3 do not matter
        >>> obs = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
        >>> result = attribute(rli.load_policy(net), obs, target="action:0", n_steps=16)
        >>> round(result.share_of(["obs[0]", "obs[1]"]).share, 6)
        1.0
    """
    if not isinstance(policy, Policy):
        raise RliError(f"policy must be an rli.Policy (from rli.load_policy), not {type(policy).__name__}")
    kind, k = _check_target(target)
    if method not in METHODS:
        raise RliError(f"method must be one of {', '.join(map(repr, METHODS))}, not {method!r}")
    n_steps = checks.count(n_steps, "n_steps", maximum=10_000)
    if batch_size is not None:
        batch_size = checks.count(batch_size, "batch_size")
    seed = checks.seed(seed)
    metrics = checks.flag(metrics, "metrics")
    if metrics and method not in ("ig", "saliency"):
        raise RliError(f"metrics=True (captum's infidelity and sensitivity) applies to input attributions: method='ig' "
                       f"or 'saliency', not {method!r}")
    if layer is not None and method in ("ig", "saliency"):
        raise RliError(f"layer= is for method='layer_ig' or 'gradcam'; method={method!r} attributes to the observation")
    if baseline is not None and method in ("saliency", "gradcam"):
        raise RliError(f"method={method!r} takes no baseline (only 'ig' and 'layer_ig' integrate from one)")
    raw = policy.prepare_obs(obs)
    n = raw.shape[0]
    group_ids, grouped_by = groups_of(obs, groups, n)
    last = policy.channels_last_shapes.get("")
    channels_last = last is not None and raw.shape[1:] == last and raw.shape[1:] != policy.obs_shape
    states = None
    if policy.is_recurrent:
        _, states = recurrent.resolve(policy, obs, recurrent_state)
    forward = _build_forward(policy, target if kind == "value" else "action", channels_last, states)
    layer_name, layer_module = (None, None) if method in ("ig", "saliency") else _layer_module(policy, layer, method)
    raw_f = raw.astype(np.float64 if raw.dtype == np.float64 else np.float32)
    baseline_name, base = _baseline(baseline, raw_f) if method in ("ig", "layer_ig") else ("none", raw_f)
    size = batch_size or (max(1, 8192 // n_steps) if method in ("ig", "layer_ig") else 1024)
    with _differentiating(policy.module, seed):
        out = _run(policy, forward, method, layer_module, raw_f, base, kind, k, target, n_steps, size, metrics)
    attributions, outputs, index, delta, base_out, infid, sens = out
    image_axis = None
    if method == "gradcam":
        attr_kind = "image"
    elif method == "layer_ig":
        attr_kind = "layer"
    else:
        attr_kind = "obs"
        if len(policy.obs_shape) == 3:
            image_axis = 2 if channels_last else 0
    region_masks = _regions(regions, attributions.shape[1:], attr_kind, image_axis,
                            _dict_parts(policy) if attr_kind == "obs" else None)
    shares = {name: _share(name, attributions, mask, group_ids, confidence) for name, mask in region_masks.items()}
    total = np.abs(attributions.reshape(n, -1)).sum(axis=1)
    notes = []
    if policy.is_recurrent:
        notes.append("recurrent policy: the hidden state of every row was held fixed (attribution to the current "
                     "observation only)")
    if policy.normalizer is not None:
        notes.append(f"attribution to the raw observation: the {policy.normalizer.source} normaliser is inside the "
                     "differentiated function")
    return AttributionResult(
        method=method, target=target, attributions=attributions, outputs=outputs, target_index=index, shares=shares,
        regions=region_masks, groups=group_ids, grouped_by=grouped_by, n_rows=int((total > 0).sum()),
        layer=layer_name, baseline=baseline_name, n_steps=n_steps if method in ("ig", "layer_ig") else None,
        completeness=delta, baseline_outputs=base_out, infidelity=infid, sensitivity=sens, notes=tuple(notes))


def _run(policy: Policy, forward: _Forward, method: str, layer_module: nn.Module | None, raw: np.ndarray,
         base: np.ndarray, kind: str, k: int | None, target: str, n_steps: int, size: int,
         metrics: bool) -> tuple[Any, ...]:
    device = policy.device
    fn = forward.fn
    attr_parts, out_parts, index_parts, delta_parts, base_parts, infid_parts, sens_parts = ([] for _ in range(7))
    if method == "ig":
        explainer: Any = IntegratedGradients(fn)
    elif method == "saliency":
        explainer = Saliency(fn)
    elif method == "layer_ig":
        explainer = LayerIntegratedGradients(fn, layer_module)
    else:
        explainer = LayerGradCam(fn, layer_module)
    for start in range(0, raw.shape[0], size):
        rows = slice(start, start + size)
        x = torch.as_tensor(raw[rows], device=device).requires_grad_()
        held = tuple(h[rows] for h in forward.state)
        extra = held if held else None
        with torch.no_grad():
            outputs = fn(x, *held)
        index = _target_rows(kind, k, outputs, forward.discrete, target)
        chosen = torch.as_tensor(index, device=device)
        out_parts.append(to_numpy(outputs.gather(1, chosen[:, None])[:, 0]))
        index_parts.append(index)
        if method in ("ig", "layer_ig"):
            b = torch.as_tensor(base[rows], device=device)
            attr, delta = explainer.attribute(x, baselines=b, target=chosen, additional_forward_args=extra,
                                              n_steps=n_steps, return_convergence_delta=True)
            with torch.no_grad():
                base_parts.append(to_numpy(fn(b, *held).gather(1, chosen[:, None])[:, 0]))
            delta_parts.append(to_numpy(delta))
        elif method == "saliency":
            attr = explainer.attribute(x, target=chosen, additional_forward_args=extra)
        else:
            cam = explainer.attribute(x, target=chosen, additional_forward_args=extra, relu_attributions=True)
            attr = LayerAttribution.interpolate(cam, tuple(_image_hw(policy, raw.shape[1:])), "bilinear")[:, 0]
        attr_parts.append(to_numpy(attr))
        if metrics:
            infid, sens = _metrics(explainer, method, fn, x, attr, chosen, extra, base[rows], raw, n_steps)
            infid_parts.append(infid)
            sens_parts.append(sens)
    cat = np.concatenate
    return (cat(attr_parts), cat(out_parts), cat(index_parts), cat(delta_parts) if delta_parts else None,
            cat(base_parts) if base_parts else None, cat(infid_parts) if infid_parts else None,
            cat(sens_parts) if sens_parts else None)


def _image_hw(policy: Policy, shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) != 3:
        raise RliError(f"method='gradcam' maps onto an image; these observations have shape {shape}: use 'layer_ig'")
    return (shape[0], shape[1]) if shape != policy.obs_shape else (shape[1], shape[2])


def _metrics(explainer: Any, method: str, fn: Callable[..., torch.Tensor], x: torch.Tensor, attr: torch.Tensor,
             chosen: torch.Tensor, extra: Any, base: np.ndarray, raw: np.ndarray,
             n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """captum's infidelity (Gaussian perturbations, 10% of each input's spread) and sensitivity_max (2% radius)."""
    spread = torch.as_tensor(raw.std(axis=0), device=x.device)
    scale = float(np.abs(raw).max()) or 1.0

    def perturb(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        noise = torch.randn_like(inputs) * 0.1 * spread
        return noise, inputs - noise

    infid = infidelity(fn, perturb, x, attr, target=chosen, additional_forward_args=extra)
    options: dict[str, Any] = {"target": chosen, "additional_forward_args": extra}
    if method == "ig":
        options.update(baselines=torch.as_tensor(base, device=x.device), n_steps=n_steps)
    with warnings.catch_warnings():  # captum's perturbed copies of the inputs do not require grad; it sets it
        warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients")
        sens = sensitivity_max(explainer.attribute, x, perturb_radius=0.02 * scale, **options)
    return to_numpy(infid), to_numpy(sens)
