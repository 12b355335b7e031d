"""Activations out of a policy: many layers, one forward pass, hooks always removed."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from rli import checks, recurrent
from rli.errors import RliError
from rli.network import first_tensor
from rli.policy import Layer, LayerSpec, Policy
from rli.recurrent import RecurrentState

Pool = Literal["flatten", "channel"]
DEFAULT_CHUNK = 8192


class _Stop(BaseException):
    """Raised by the hook on the deepest requested actor layer: the rest of the forward pass is not needed."""


class Activations(Mapping):
    """Captured activations: layer → float32 array of shape (n, width).

    Indexed by any layer address the policy understands (``acts[5]``,
    ``acts["actor.5"]``, ``acts["mlp_extractor.policy_net.5"]``).

    Example:
        >>> import torch.nn as nn, numpy as np, rli
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2)))
        >>> acts = rli.capture(policy, np.zeros((10, 3)), layers=[0, 1])
        >>> acts[1].shape, acts["actor.1"].dtype
        ((10, 8), dtype('float32'))

    ``recurrent_state`` says which hidden state a recurrent policy ran each observation
    from (``"recorded"``, ``"replay"`` or ``"fresh"``, see :mod:`rli.recurrent`); it is
    ``None`` for feed-forward policies.
    """

    def __init__(self, arrays: dict[str, np.ndarray], layers: Sequence[Layer], policy: Policy,
                 recurrent_state: RecurrentState | None = None) -> None:
        self._arrays = arrays
        self.layers = tuple(layers)
        self._policy = policy
        self.recurrent_state = recurrent_state

    def __getitem__(self, key: LayerSpec) -> np.ndarray:
        if isinstance(key, str) and key in self._arrays:
            return self._arrays[key]
        name = self._policy.layer(key).name
        if name not in self._arrays:
            raise RliError(f"layer {key!r} ({name}) was not captured; captured: {', '.join(self._arrays)}")
        return self._arrays[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)

    @property
    def n(self) -> int:
        """Number of observations."""
        return next(iter(self._arrays.values())).shape[0] if self._arrays else 0

    def __repr__(self) -> str:
        parts = ", ".join(f"{name} ({arr.shape[1]})" for name, arr in self._arrays.items())
        state = f"; {self.recurrent_state} recurrent state" if self.recurrent_state else ""
        return f"Activations(n={self.n}: {parts}{state})"


@dataclass(frozen=True)
class ActivationChunk:
    """One chunk of a streamed capture: rows ``start:stop`` of the observations and their activations."""

    start: int
    stop: int
    obs: np.ndarray
    activations: dict[str, np.ndarray]
    recurrent_state: RecurrentState | None = None


def _resolve(policy: Policy, layers: LayerSpec | Sequence[LayerSpec] | None, chunk_size: int = DEFAULT_CHUNK,
             pool: Pool = "flatten") -> list[Layer]:
    checks.policy(policy)
    checks.count(chunk_size, "chunk_size", hint=" (observations per forward pass)")
    if not isinstance(pool, str) or pool not in ("flatten", "channel"):
        raise RliError(f"pool must be 'flatten' (every feature of a conv map) or 'channel' (mean per channel), "
                       f"not {pool!r}")
    if isinstance(layers, np.ndarray):
        layers = layers.tolist()  # an array of indices is a list of them (and a 0-d array one of them)
    if layers is None:
        resolved = list(policy.actor_layers)
    elif isinstance(layers, (int, np.integer, str, Layer)):
        resolved = [policy.layer(layers)]
    elif isinstance(layers, Iterable):
        resolved = [policy.layer(spec) for spec in layers]
    else:
        raise RliError(f"layers must be a layer or a list of layers (None for the whole actor trunk), not {layers!r}")
    if not resolved:
        raise RliError("no layers requested; pass layers=[...] or None for the whole actor trunk")
    unique = list({layer.name: layer for layer in resolved}.values())
    for layer in unique:
        if layer.width is None:
            raise RliError(f"layer {layer.name!r} does not run when the policy computes actions or values, "
                           "so it has no activations; see `policy.layers` for the layers with a width")
    return unique


def _width(layer: Layer, pool: Pool) -> int:
    if pool == "channel" and layer.shape is not None and len(layer.shape) > 1:
        return layer.shape[0]
    if layer.width is None:
        raise RliError(f"layer {layer.name!r} has no fixed width; capture a layer with a known output shape")
    return int(layer.width)


def _to_rows(tensor: torch.Tensor, layer: Layer, n: int, pool: Pool) -> torch.Tensor:
    if layer.batch_dim:
        tensor = tensor.transpose(0, layer.batch_dim)
    if tensor.shape[0] != n:
        raise RliError(f"layer {layer.name!r} produced a batch of {tensor.shape[0]} rows for {n} observations; "
                       "it cannot be attributed to individual observations")
    if pool == "channel" and tensor.ndim > 2:
        tensor = tensor.flatten(2).mean(dim=2)
    return tensor.reshape(n, -1)


def _run_chunk(policy: Policy, obs: np.ndarray, layers: list[Layer], pool: Pool,
               out: dict[str, np.ndarray], states: Mapping[str, np.ndarray] | None = None) -> None:
    """Forward one chunk with hooks writing straight into ``out`` (arrays of len(obs) rows).

    A recurrent policy runs from the per-row hidden ``states`` when given, else from its initial state.
    """
    n = obs.shape[0]
    stop_at = None
    if all(layer.index is not None for layer in layers):
        stop_at = max(layers, key=lambda layer: -1 if layer.index is None else layer.index).name
    seen: set[str] = set()

    def make_hook(layer: Layer) -> Any:
        target = torch.from_numpy(out[layer.name])

        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            if layer.name in seen:
                return
            target.copy_(_to_rows(first_tensor(output), layer, n, pool))
            seen.add(layer.name)
            if layer.name == stop_at and len(seen) == len(layers):
                raise _Stop
        return hook

    handles = [policy.module.get_submodule(layer.name).register_forward_hook(make_hook(layer)) for layer in layers]
    try:
        tensor = policy._tensor(obs)
        try:
            if states is not None:
                recurrent.run(policy, tensor, states, "actor")
                if len(seen) < len(layers):
                    recurrent.run(policy, tensor, states, "critic")
            else:
                policy._net.run_actor(tensor)
                if len(seen) < len(layers) and policy._net.run_critic is not None:
                    policy._net.run_critic(tensor)
        except _Stop:
            pass
    finally:
        for handle in handles:
            handle.remove()
    missing = [layer.name for layer in layers if layer.name not in seen]
    if missing:
        raise RliError(f"layers {missing} did not run in the policy's forward pass, so they have no activations")


def _check_finite(out: Mapping[str, np.ndarray], obs: np.ndarray, start: int) -> None:
    """Finite observations can still overflow inside the network; never hand NaN/inf activations on."""
    for name, values in out.items():
        # One pass, no mask: a NaN/inf makes the sum NaN/inf (finite values overflowing it take the exact check).
        # torch's sum runs on its threads, vectorised: 2.3× numpy's for an 8192 × 256 float32 chunk, measured.
        if bool(torch.from_numpy(values).sum().isfinite()):
            continue
        bad = ~np.isfinite(values)
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            largest = float(np.max(np.abs(obs[row])))
            raise RliError(f"layer {name!r} produced {int(bad.sum())} NaN/inf activations (first for observation "
                           f"{start + row}, whose largest entry is {largest:.3g}): the observations are beyond what "
                           "the network computes in its precision; rescale or clip them")


def _chunks(obs: Any, chunk_size: int) -> Iterator[Any]:  # arrays, tensors or an iterable's own batches
    from rli.observations import ObsSet

    if isinstance(obs, ObsSet):
        obs = obs.obs
    if isinstance(obs, (np.ndarray, torch.Tensor)) or (
            isinstance(obs, Sequence) and not isinstance(obs, (str, bytes))):
        try:
            arr = obs if isinstance(obs, (np.ndarray, torch.Tensor)) else np.asarray(obs)
        except (TypeError, ValueError):
            raise RliError(f"observations must be an array (n, *obs_shape), not a ragged {type(obs).__name__}") from None
        if arr.ndim == 0:
            raise RliError(f"observations must be a batch of shape (n, *obs_shape), not a scalar {arr!r}")
        for start in range(0, len(arr), chunk_size):
            yield arr[start:start + chunk_size]
    elif isinstance(obs, Iterable):
        yield from obs
    else:
        raise RliError(f"observations must be an array, an ObsSet or an iterable of arrays, not {type(obs).__name__}")


def iter_activations(
    policy: Policy,
    obs: Any,
    layers: LayerSpec | Sequence[LayerSpec] | None = None,
    *,
    chunk_size: int = DEFAULT_CHUNK,
    pool: Pool = "flatten",
    recurrent_state: RecurrentState | None = None,
) -> Iterator[ActivationChunk]:
    """Stream activations chunk by chunk, in bounded memory.

    ``obs`` may be an array (a ``np.load(..., mmap_mode="r")`` memmap works), an
    :class:`~rli.ObsSet`, or any iterable of observation batches (a generator reading
    from disk). Hooks exist only while a chunk runs, so abandoning the iterator leaves
    nothing behind. ``recurrent_state`` is that of :func:`capture` (the states are
    resolved, and replayed if asked, before the first chunk).

    Example:
        >>> import torch.nn as nn, numpy as np, rli
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(3, 8), nn.Tanh()))
        >>> total = sum(chunk.activations["1"].sum(axis=0) for chunk in
        ...             rli.iter_activations(policy, np.zeros((1000, 3)), layers=[1], chunk_size=256))
        >>> total.shape
        (8,)
    """
    resolved = _resolve(policy, layers, chunk_size, pool)
    mode, states = recurrent.resolve(policy, obs, recurrent_state)
    if isinstance(obs, Mapping):  # one batch of Dict observations (not an iterable of batches): flat rows
        obs = policy.prepare_obs(obs)
    start = 0
    for raw in _chunks(obs, chunk_size):
        batch = policy.prepare_obs(raw)
        stop = start + batch.shape[0]
        rows = None if states is None else {name: values[start:stop] for name, values in states.items()}
        out = capture_prepared(policy, batch, resolved, pool, chunk_size=batch.shape[0], first_row=start,
                               states=rows, recurrent_state=mode)
        yield ActivationChunk(start=start, stop=stop, obs=batch, activations=out, recurrent_state=mode)
        start = stop


def capture(
    policy: Policy,
    obs: Any,
    layers: LayerSpec | Sequence[LayerSpec] | None = None,
    *,
    chunk_size: int = DEFAULT_CHUNK,
    pool: Pool = "flatten",
    recurrent_state: RecurrentState | None = None,
) -> Activations:
    """Activations of ``layers`` (default: the whole actor trunk) for every observation, in one pass.

    Runs in chunks under ``no_grad`` and eval mode (each module's mode restored),
    stops the forward pass after the deepest requested actor layer, writes float32
    rows straight into preallocated arrays and removes its hooks even when the
    forward pass raises. Conv outputs are flattened per sample, or averaged per
    channel with ``pool="channel"``. Interventions active around the call apply.

    A recurrent policy runs each observation from the hidden state it had there:
    by default the state recorded with observations from
    :meth:`rli.ObsSet.from_rollouts` (by this policy: the fingerprint is checked);
    ``recurrent_state="replay"`` recomputes the states with this policy along the
    episodes, ``"fresh"`` starts every observation from the initial state (and a plain
    array is refused without it). The result's ``recurrent_state`` says which was used;
    feed-forward policies ignore the argument. See :mod:`rli.recurrent`.

    Example:
        >>> import torch.nn as nn, numpy as np, rli
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2)))
        >>> rli.capture(policy, np.random.default_rng(0).normal(size=(100, 3)))
        Activations(n=100: 0 (8), 1 (8), 2 (2))
    """
    resolved = _resolve(policy, layers, chunk_size, pool)
    from rli.observations import ObsSet

    arr = policy.prepare_obs(obs.obs if isinstance(obs, ObsSet) else obs)
    mode, states = recurrent.resolve(policy, obs, recurrent_state)
    out = capture_prepared(policy, arr, resolved, pool, chunk_size=chunk_size, states=states, recurrent_state=mode)
    return Activations(out, resolved, policy, mode)


def capture_prepared(policy: Policy, arr: np.ndarray, layers: list[Layer], pool: Pool = "flatten", *,
                     chunk_size: int = DEFAULT_CHUNK, first_row: int = 0,
                     states: Mapping[str, np.ndarray] | None = None,
                     recurrent_state: RecurrentState | None = None) -> dict[str, np.ndarray]:
    """:func:`capture` of observations already validated by ``policy.prepare_obs``, for resolved ``layers``.

    The engine under :func:`capture` and :func:`iter_activations`, for callers that run
    the same observations many times (``first_row`` numbers the rows in error messages).
    A recurrent policy runs from ``states`` (one row per observation, see
    :mod:`rli.recurrent`), or from its initial state only with ``recurrent_state="fresh"``.
    """
    n = arr.shape[0]
    if policy.is_recurrent and states is None and recurrent_state != "fresh":
        raise RliError(f"{policy.kind} is recurrent: give the hidden state of every observation (an ObsSet from "
                       "rli.ObsSet.from_rollouts records them) or ask for recurrent_state='fresh' explicitly")
    if states is not None and any(len(values) != n for values in states.values()):
        raise RliError(f"the hidden states have {[len(v) for v in states.values()]} rows for {n} observations; "
                       "give one state per observation")
    out = {layer.name: np.empty((n, _width(layer, pool)), dtype=np.float32) for layer in layers}
    with policy.inference():
        for start in range(0, n, chunk_size):
            stop = min(n, start + chunk_size)
            chunk = {k: v[start:stop] for k, v in out.items()}
            rows = None if states is None else {k: v[start:stop] for k, v in states.items()}
            _run_chunk(policy, arr[start:stop], layers, pool, chunk, rows)
            _check_finite(chunk, arr[start:stop], first_row + start)
    return out
