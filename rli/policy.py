"""`Policy`: a loaded network with addressable layers, deterministic actions and a fingerprint."""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Union

import numpy as np
import torch
from torch import nn

from rli import checks
from rli.errors import RliError
from rli.loading.normalization import ObsNormalizer
from rli.network import Network, first_tensor, is_leaf, is_pass_through
from rli.recurrent import RecurrentState
from rli.tensors import to_numpy

LayerSpec = Union[int, str, "Layer"]
_ALIAS = re.compile(r"^(actor|critic)\.(-?\d+)$")

#: Interventions active in this process (entered ``with`` blocks not yet left), in the order they were entered.
#: :mod:`rli.interventions` keeps it. On entering :meth:`Policy.inference` a policy calls ``attach(policy)`` on
#: each; an intervention built from another copy of the same network applies itself to this policy's module for
#: the block and returns how to undo that (``None`` when it does not apply: its own module, another network).
active_edits: list[Any] = []
#: Policies inside :meth:`Policy.inference` now (an intervention entered meanwhile attaches to them too).
running_policies: list[Policy] = []
#: Called as ``tap(policy, obs)`` with every validated batch (before normalisation) that :meth:`Policy.act_prepared`
#: is about to run; :class:`rli.patch_return.CounterfactualPatch` keeps one while it is active.
observation_taps: list[Callable[[Policy, np.ndarray], None]] = []
_attaching = threading.local()  # policies whose active edits are being attached (describing layers runs inference)


def _attach_edits(policy: Policy, undo: list[Callable[[], None]]) -> None:
    """Let every active intervention apply itself to ``policy``; how to undo each is appended to ``undo``."""
    busy = _attaching.__dict__.setdefault("ids", set())
    if id(policy) in busy:  # deciding whether an edit applies describes the layers, which runs inference again
        return
    busy.add(id(policy))
    try:
        for edit in tuple(active_edits):
            step = edit.attach(policy)
            if step is not None:
                undo.append(step)
    finally:
        busy.discard(id(policy))


class ImageScaleWarning(UserWarning):
    """Float images in [0, 1] given to a policy whose network divides its uint8 images by 255 itself."""


@dataclass(frozen=True)
class Layer:
    """One addressable layer: where it sits, what it is, how wide its output is per sample.

    ``index`` is the position in the actor trunk (what ``layer=5`` means), ``critic_index``
    the position in the critic trunk (``"critic.3"``); both are ``None`` for modules
    outside the trunks. ``width`` is ``None`` for modules the policy never runs
    (target networks, for instance).
    """

    name: str
    type: str
    width: int | None
    shape: tuple[int, ...] | None
    index: int | None = None
    critic_index: int | None = None
    batch_dim: int = 0

    @property
    def aliases(self) -> tuple[str, ...]:
        """``actor.K`` / ``critic.K`` names of this layer."""
        out = []
        if self.index is not None:
            out.append(f"actor.{self.index}")
        if self.critic_index is not None:
            out.append(f"critic.{self.critic_index}")
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        """Plain-python form (for reports and JSON)."""
        return {"index": self.index, "aliases": list(self.aliases), "name": self.name, "type": self.type,
                "width": self.width, "shape": list(self.shape) if self.shape else None}


class LayerTable(tuple):
    """The layers of a policy: a tuple of :class:`Layer` that prints as a table.

    Example:
        >>> import torch.nn as nn, rli
        >>> print(rli.load_policy(nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))).layers)
        index  alias    name  type    width
        0      actor.0  0     Linear  8
        1      actor.1  1     Tanh    8
        2      actor.2  2     Linear  2
    """

    def __str__(self) -> str:
        rows = [("index", "alias", "name", "type", "width")]
        idle = [layer.name for layer in self if layer.width is None]
        for layer in (layer for layer in self if layer.width is not None):
            width = "—" if layer.width is None else str(layer.width)
            if layer.shape is not None and len(layer.shape) > 1:
                width += f" ({'×'.join(map(str, layer.shape))})"
            rows.append(("" if layer.index is None else str(layer.index), ", ".join(layer.aliases) or "",
                         layer.name, layer.type, width))
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        if idle:
            roots = sorted({name.split(".")[0] for name in idle})
            lines.append(f"(+{len(idle)} modules that do not run when acting: {', '.join(r + '.*' for r in roots)})")
        return "\n".join(lines)

    def to_dict(self) -> list[dict[str, Any]]:
        """Plain-python form (for reports and JSON)."""
        return [layer.to_dict() for layer in self]


class Policy:
    """A policy network ready to inspect: layers, deterministic actions, fingerprint.

    Build one with :func:`rli.load_policy`. Layers are addressed by their index in
    the actor trunk (``5``), by alias (``"actor.5"``, ``"critic.3"``) or by dotted
    module name (``"mlp_extractor.policy_net.5"``).

    Example:
        >>> import torch.nn as nn, numpy as np, rli
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2)))
        >>> policy.act(np.zeros((5, 3))).shape
        (5, 2)
        >>> policy.layer("actor.1").type
        'Tanh'
    """

    def __init__(self, network: Network, *, normalizer: ObsNormalizer | None = None, source: str = "") -> None:
        self._net = network
        self.normalizer = normalizer
        self.source = source
        self._layers: LayerTable | None = None
        self._image_parts: tuple[str, ...] | None = None
        self._channels_last: dict[str, tuple[int, int, int]] | None = None
        self._default: str | None = None
        if normalizer is not None and normalizer.mean.shape != tuple(network.obs_shape):
            raise RliError(
                f"the observation normaliser has shape {normalizer.mean.shape} but the policy takes observations of "
                f"shape {tuple(network.obs_shape)}; the statistics belong to another policy"
            )

    # ----------------------------------------------------------------- description
    @property
    def module(self) -> nn.Module:
        """The underlying torch module (an SB3 ``BasePolicy`` for SB3 models)."""
        return self._net.root

    @property
    def kind(self) -> str:
        """What this is: ``"PPO"``, ``"SAC"``, ``"Sequential"``, …"""
        return self._net.kind

    @property
    def obs_shape(self) -> tuple[int, ...]:
        """Shape of one observation."""
        return tuple(self._net.obs_shape)

    @property
    def observation_space(self) -> Any:
        """The gymnasium observation space, when known."""
        return self._net.observation_space

    @property
    def action_space(self) -> Any:
        """The gymnasium action space, when known."""
        return self._net.action_space

    @property
    def channels_last_shapes(self) -> Mapping[str, tuple[int, int, int]]:
        """The channels-last image layouts ``(H, W, C)`` this policy takes besides its own ``(C, H, W)``.

        Keyed by the part of the observation (``""`` for the whole observation, a key of a
        ``Dict`` space). As SB3's ``predict`` does (``maybe_transpose``): for an SB3 policy,
        every part whose space is an image space (``uint8`` ``Box(0, 255)`` with three
        dimensions) also takes images channels last, as a channels-last env gives them
        (SB3 saves such a policy with the transposed space, having wrapped the env in
        ``VecTransposeImage``). Observations that already have the policy's shape are taken
        as they are, so a square image (``C == H == W``) is channels-first, as in SB3.
        rli keeps observations in the layout they were given (an :class:`~rli.ObsSet` from
        :meth:`~rli.ObsSet.from_rollouts` holds them as the env produced them, so ``"obs[i]"``
        and the raw-observation control index that layout) and transposes them only on the
        way into the network; ``Dict`` entries are transposed before flattening. Plain torch
        modules take only their own layout.

        Example:
            >>> import torch.nn as nn, rli
            >>> dict(rli.load_policy(nn.Sequential(nn.Linear(3, 2))).channels_last_shapes)
            {}
        """
        if self._channels_last is None:
            self._channels_last = self._find_channels_last()
        return MappingProxyType(self._channels_last)

    def _find_channels_last(self) -> dict[str, tuple[int, int, int]]:
        import sys

        from rli.space_fit import channels_last

        space = self.observation_space
        sb3_policies = sys.modules.get("stable_baselines3.common.policies")  # not imported: not an SB3 policy
        if space is None or sb3_policies is None or not isinstance(self.module, sb3_policies.BasePolicy):
            return {}
        from gymnasium import spaces
        from stable_baselines3.common.preprocessing import is_image_space

        if isinstance(space, spaces.Dict):
            return {str(key): channels_last(sub.shape) for key, sub in space.spaces.items()
                    if is_image_space(sub) and sub.shape is not None}  # an image space always has a shape
        return {"": channels_last(space.shape)} if is_image_space(space) else {}

    @property
    def is_recurrent(self) -> bool:
        """Whether the policy carries a hidden state between steps."""
        return self._net.recurrent is not None

    @property
    def device(self) -> torch.device:
        """Where the network's parameters live."""
        param = next(iter(self.module.parameters()), None)
        return param.device if param is not None else torch.device("cpu")

    def to(self, device: str | torch.device) -> Policy:
        """Move the network to ``device`` (results stay numpy arrays on the CPU); returns ``self``."""
        try:
            self.module.to(torch.device(device))
        except (RuntimeError, AssertionError, TypeError, ValueError, OverflowError) as err:
            text = str(err).strip().splitlines()
            raise RliError(f"cannot run the policy on device {device!r} ({text[0] if text else type(err).__name__}); "
                           "use 'cpu', or 'cuda' on a machine with a CUDA build of torch") from None
        return self

    @property
    def fingerprint(self) -> str:
        """SHA-256 of every parameter, buffer and the observation normaliser (a cache key and a change detector).

        Equal for the same weights, so the same file loaded twice has one fingerprint.
        It does not describe the architecture: modules without parameters (activations,
        reshapes, a custom ``forward``) are not in it, so two networks that compute
        different things can share it (``Intervention.bind`` compares architectures too).

        Hashed anew on every read (14.9 ms for an 8.3 MB network): a cache checked against
        tensor version counters would miss writes torch does not count (``param.data.copy_``,
        a numpy view of a weight), and a stale fingerprint is a wrong cache key.

        Example:
            >>> import torch, torch.nn as nn, rli
            >>> net = nn.Sequential(nn.Linear(3, 2))
            >>> policy = rli.load_policy(net)
            >>> before = policy.fingerprint
            >>> with torch.no_grad():
            ...     _ = net[0].bias.add_(1.0)
            >>> policy.fingerprint != before, policy.fingerprint == rli.load_policy(net).fingerprint
            (True, True)
        """
        digest = hashlib.sha256()
        for name, tensor in sorted(self.module.state_dict().items()):
            data = tensor.detach().cpu().contiguous()
            digest.update(f"{name}:{data.dtype}:{tuple(data.shape)}".encode())
            # flat first: a 0-d tensor (batch norm's num_batches_tracked) cannot be viewed as bytes
            digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b"")
        if self.normalizer is not None:
            digest.update(self.normalizer.mean.tobytes() + self.normalizer.var.tobytes())
            digest.update(f"{self.normalizer.clip}:{self.normalizer.epsilon}".encode())
        return digest.hexdigest()

    def __repr__(self) -> str:
        norm = f", normalised by {self.normalizer.source}" if self.normalizer is not None else ""
        return (f"Policy({self.kind}, obs {self.obs_shape}, {len(self._net.actor)} actor layers"
                f"{', recurrent' if self.is_recurrent else ''}{norm}, fingerprint {self.fingerprint[:12]})")

    # ----------------------------------------------------------------------- layers
    @property
    def layers(self) -> LayerTable:
        """Every addressable layer, actor trunk first, in forward order.

        The trunk holds the modules whose outputs the actor computes, in the order it
        produces them: leaf layers, and containers whose output is new (a residual
        block ``x + f(x)``, a custom ``forward``); other leaves follow.
        """
        if self._layers is None:
            self._layers = self._describe_layers()
        return self._layers

    @property
    def actor_layers(self) -> tuple[Layer, ...]:
        """The actor trunk in forward order: ``policy.actor_layers[5]`` is ``layer=5``."""
        by_name = {layer.name: layer for layer in self.layers}
        return tuple(by_name[name] for name in self._net.actor)

    @property
    def critic_layers(self) -> tuple[Layer, ...]:
        """The critic trunk in forward order (empty for actor-only policies)."""
        by_name = {layer.name: layer for layer in self.layers}
        return tuple(by_name[name] for name in self._net.critic)

    @property
    def default_layer(self) -> Layer:
        """The layer analyses use when none is named: the representation the action head reads.

        The head is the last actor layer with parameters (an output activation after it,
        such as TD3's ``Tanh``, belongs to the head); the default is the layer whose output
        tensor the head receives in a forward pass, skipping pass-through modules
        (``nn.Identity``, dropout, SB3's empty ``policy_net``). For an MLP that is the
        last hidden activation; for a residual network the block's sum, not the ReLU inside
        it; for an SB3 ``CnnPolicy`` the features extractor's output. When the head reads
        a tensor no layer produced (a reshape, a concatenation) it is the last layer
        before the head; a policy with no hidden layer falls back to its head.

        Example:
            >>> import torch.nn as nn, rli
            >>> rli.load_policy(nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))).default_layer.index
            1
        """
        if self._default is None:
            self._layers = self._describe_layers()
        assert self._default is not None, "describing the layers chooses the default layer"
        return self.layer(self._default)

    def _describe_layers(self) -> LayerTable:
        modules = dict(self.module.named_modules())
        names = list(dict.fromkeys(self._net.actor + self._net.critic + [
            name for name, module in modules.items() if name and is_leaf(module)]))
        shapes: dict[str, tuple[tuple[int, ...], int]] = {}
        produced: dict[str, torch.Tensor] = {}
        head = self._head_name()
        head_input: list[torch.Tensor] = []
        n = 2

        def record(name: str) -> Any:
            def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
                tensor = first_tensor(output)
                batch_dim = 0 if tensor.shape[0] == n else 1
                shape = tuple(tensor.shape[:batch_dim]) + tuple(tensor.shape[batch_dim + 1:])
                shapes.setdefault(name, (shape, batch_dim))
                produced.setdefault(name, tensor)
            return hook

        def read_head(_module: nn.Module, args: Any) -> None:
            if not head_input and args and isinstance(args[0], torch.Tensor):
                head_input.append(args[0])

        handles = [modules[name].register_forward_hook(record(name)) for name in names]
        handles.append(modules[head].register_forward_pre_hook(read_head))
        try:
            with self.inference():
                obs = self._tensor(np.zeros((n, *self.obs_shape), dtype=self._net.obs_dtype))
                self._net.run_actor(obs)
                if self._net.run_critic is not None:
                    self._net.run_critic(obs)
        finally:
            for handle in handles:
                handle.remove()
        self._default = self._choose_default(head, head_input[0] if head_input else None, produced)
        actor_pos = {name: i for i, name in enumerate(self._net.actor)}
        critic_pos = {name: i for i, name in enumerate(self._net.critic)}
        table = []
        for name in names:
            shape, batch_dim = shapes.get(name, (None, 0))
            if shape is not None and batch_dim == 1 and len(shape) > 1:
                shape = shape[1:] if shape[0] == 1 else shape
            table.append(Layer(
                name=name,
                type=type(modules[name]).__name__,
                width=int(np.prod(shape)) if shape is not None else None,
                shape=shape,
                index=actor_pos.get(name),
                critic_index=critic_pos.get(name),
                batch_dim=batch_dim,
            ))
        return LayerTable(table)

    def _head_name(self) -> str:
        """The action head: the last actor-trunk layer with parameters (else the last layer)."""
        trunk = self._net.actor
        with_params = [name for name in trunk
                       if any(True for _ in self.module.get_submodule(name).parameters())]
        return with_params[-1] if with_params else trunk[-1]

    def _choose_default(self, head: str, head_input: torch.Tensor | None, produced: dict[str, torch.Tensor]) -> str:
        trunk = self._net.actor
        before = [name for name in trunk[:trunk.index(head)]
                  if name in produced and not is_pass_through(self.module.get_submodule(name))]
        feeding = [name for name in before if head_input is not None and produced[name] is head_input]
        if feeding:
            return feeding[-1]
        return before[-1] if before else head

    def layer(self, spec: LayerSpec) -> Layer:
        """Resolve an index, alias or dotted name to a :class:`Layer`; :class:`RliError` lists the valid ones.

        A string is a module name first; a string of digits that names no module is
        an actor-trunk index (so ``"5"`` from a command line means ``5``).
        """
        if isinstance(spec, Layer):
            return self.layer(spec.name)
        if isinstance(spec, (bool, np.bool_)) or not isinstance(spec, (int, np.integer, str)):
            raise RliError(f"a layer is an int index, an alias like 'actor.5' or a module name, not {spec!r}; "
                           + self._valid_layers())
        if isinstance(spec, (int, np.integer)):
            return self._from_trunk(self.actor_layers, int(spec), spec)
        by_name = {layer.name: layer for layer in self.layers}
        if spec in by_name:
            return by_name[spec]
        if spec and spec in dict(self.module.named_modules()):
            return self._container_layer(spec)
        if re.fullmatch(r"-?\d+", spec.strip()):
            return self._from_trunk(self.actor_layers, int(spec), spec)
        match = _ALIAS.match(spec)
        if match:
            trunk = self.actor_layers if match.group(1) == "actor" else self.critic_layers
            return self._from_trunk(trunk, int(match.group(2)), spec)
        raise RliError(f"unknown layer {spec!r}; " + self._valid_layers())

    def _from_trunk(self, trunk: Sequence[Layer], position: int, spec: Any) -> Layer:
        if not -len(trunk) <= position < len(trunk):
            raise RliError(f"layer {spec!r} is out of range; " + self._valid_layers())
        return trunk[position]

    def _container_layer(self, name: str) -> Layer:
        """A non-leaf module (e.g. ``mlp_extractor.policy_net``): its output is that of its last run leaf."""
        prefix = name + "."
        inner = [layer for layer in self.layers if layer.name.startswith(prefix) and layer.width is not None]
        last = inner[-1] if inner else None
        module = self.module.get_submodule(name)
        return Layer(name=name, type=type(module).__name__, width=last.width if last else None,
                     shape=last.shape if last else None, batch_dim=last.batch_dim if last else 0)

    def _valid_layers(self) -> str:
        actor, critic = len(self.actor_layers), len(self.critic_layers)
        parts = [f"valid layers are indices 0..{actor - 1} (actor trunk)"]
        parts.append(f"aliases actor.0..actor.{actor - 1}")
        if critic:
            parts.append(f"critic.0..critic.{critic - 1}")
        names = [layer.name for layer in self.layers]
        shown = ", ".join(names[:40]) + (f", … ({len(names) - 40} more)" if len(names) > 40 else "")
        return "; ".join(parts) + f"; or a module name: {shown}. See `policy.layers`."

    # --------------------------------------------------------------- observations
    def prepare_obs(self, obs: Any) -> np.ndarray:
        """Validate observations against the policy (shape, dtype, NaN/inf) and return them as an (n, *obs_shape) array.

        For a ``Dict`` observation space, ``obs`` is a dict of arrays (one observation,
        or a batch with a leading axis) or the flat array: the dict is flattened in
        gymnasium's order (:func:`gymnasium.spaces.flatten`). Float images in [0, 1]
        given to an SB3 policy whose uint8 image space it divides by 255 itself raise an
        :class:`ImageScaleWarning` (once per call). Channels-last images that the policy
        takes (:attr:`channels_last_shapes`) come back as given, ``(n, H, W, C)``: they are
        transposed on the way into the network; image entries of a dict are transposed
        before flattening.

        Example:
            >>> import torch.nn as nn, numpy as np, rli
            >>> rli.load_policy(nn.Sequential(nn.Linear(3, 2))).prepare_obs(np.zeros(3)).shape
            (1, 3)
        """
        from rli.observations import ObsSet

        arr = obs.obs if isinstance(obs, ObsSet) else obs
        if isinstance(arr, Mapping):
            arr = self._flatten_dict(arr)
        else:
            self._warn_image_scale({"": arr})
        arr = checks.array(arr, "observations", what="numeric array data (n, *obs_shape) of real numbers", finite=False,
                           hint="; convert them with np.asarray(obs, float)")
        last = self.channels_last_shapes.get("")
        if arr.shape == self.obs_shape or (last is not None and arr.shape == last):
            arr = arr[None]
        if arr.ndim != len(self.obs_shape) + 1 or tuple(arr.shape[1:]) not in (self.obs_shape, last):
            expect = "(n, " + ", ".join(map(str, self.obs_shape)) + ")"
            also = "" if last is None else f" or channels last (n, {', '.join(map(str, last))})"
            raise RliError(f"observations have shape {arr.shape} but this policy takes {expect}{also} "
                           f"(one observation is {self.obs_shape}); check the observation layout or the policy")
        if arr.shape[0] == 0:
            raise RliError("no observations: the batch is empty")
        checks.array(arr, "observations", fix="drop or clean those rows before using them")
        net_dtype = self._net.obs_dtype
        if self.normalizer is None and np.issubdtype(net_dtype, np.floating) and arr.dtype != np.bool_:
            largest = max(float(arr.max()), -float(arr.min()))
            if largest > float(np.finfo(net_dtype).max):
                raise RliError(f"observations reach {largest:.3g}, beyond the largest {net_dtype} the network takes "
                               f"({np.finfo(net_dtype).max:.3g}); rescale or clip them")
        return arr

    def flat_observation(self, obs: Any) -> np.ndarray:
        """One observation as rli holds it: a ``Dict`` observation flattened in gymnasium's order, else as an array.

        Example:
            >>> import torch.nn as nn, rli
            >>> rli.load_policy(nn.Sequential(nn.Linear(3, 2))).flat_observation([0.0, 1.0, 2.0]).tolist()
            [0.0, 1.0, 2.0]
        """
        if isinstance(obs, Mapping):
            return self._flatten_dict(obs, warn=False)[0]  # raises if this policy takes arrays
        return np.asarray(obs)

    def _flatten_dict(self, obs: Mapping[str, Any], *, warn: bool = True) -> np.ndarray:
        from gymnasium import spaces

        from rli.space_fit import flatten_batch, to_channels_first

        if not isinstance(self.observation_space, spaces.Dict):
            raise RliError(f"observations are a dict ({', '.join(map(str, obs))}) but this policy takes arrays of shape "
                           f"{self.obs_shape}; pass the array (a Dict observation space needs the policy loaded "
                           "with it: env= or observation_space=)")
        if warn:
            self._warn_image_scale(obs)
        last = self.channels_last_shapes
        if any(str(key) in last for key in obs):  # SB3's maybe_transpose, per image entry
            parts = dict(obs)
            for key, value in obs.items():
                if str(key) in last:
                    shape = self.observation_space.spaces[str(key)].shape
                    assert shape is not None, "an image entry has a shape"
                    value = to_numpy(value)
                    with contextlib.suppress(TypeError, ValueError):  # not an array: flatten_batch reports it
                        value = to_channels_first(np.asarray(value), shape)
                    parts[key] = value
            obs = parts
        return flatten_batch(self.observation_space, obs)

    def _image_keys(self) -> tuple[str, ...]:
        """Parts of the observation that an SB3 network divides by 255 itself ("" for the whole observation)."""
        if self._image_parts is None:
            keys: tuple[str, ...] = ()
            space = self.observation_space
            if space is not None and getattr(self.module, "normalize_images", False):
                from gymnasium import spaces
                from stable_baselines3.common.preprocessing import is_image_space

                if isinstance(space, spaces.Dict):
                    keys = tuple(str(key) for key, sub in space.spaces.items() if is_image_space(sub))
                elif is_image_space(space):
                    keys = ("",)
            self._image_parts = keys
        return self._image_parts

    def _warn_image_scale(self, parts: Mapping[str, Any]) -> None:
        """Warn when float pixels in [0, 1] reach a uint8 image space that the network divides by 255 itself."""
        import warnings

        for key in self._image_keys():
            if key not in parts:
                continue
            value = parts[key]
            value = to_numpy(value)
            try:
                value = np.asarray(value)
            except (TypeError, ValueError):
                return  # not an array: prepare_obs reports it
            if value.dtype.kind != "f" or value.size == 0 or not np.all(np.isfinite(value)):
                continue
            low, high = float(value.min()), float(value.max())
            if low >= 0.0 and 0.0 < high <= 1.0:
                where = f"observation key {key!r}" if key else "observations"
                warnings.warn(
                    f"{where} are floats in [0, 1] ({value.dtype}, max {high:.3g}) but the policy's space is a uint8 "
                    "image Box(0, 255) that its SB3 network divides by 255 itself, so they are scaled twice (SB3's "
                    "predict does the same, silently); pass the raw uint8 pixels, e.g. "
                    "(obs * 255).round().astype(np.uint8)", ImageScaleWarning, stacklevel=4)

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        """A batch from :meth:`prepare_obs` after the policy's observation normaliser, in the batch's own layout.

        The observations as the network receives them (unchanged without a normaliser).
        Channels-last images are transposed for the normaliser, whose statistics are in the
        network's layout, and back, so the result indexes what the caller holds.

        Example:
            >>> import torch.nn as nn, numpy as np, rli
            >>> policy = rli.load_policy(nn.Sequential(nn.Linear(2, 1)),
            ...                          normalizer=rli.ObsNormalizer(mean=[1.0, 0.0], var=[4.0, 1.0]))
            >>> policy.normalize(np.array([[3.0, 2.0]])).round(3).tolist()
            [[1.0, 2.0]]
        """
        if self.normalizer is None:
            return obs
        last = self.channels_last_shapes.get("")
        if last is not None and obs.shape[1:] == last and obs.shape[1:] != self.obs_shape:
            return np.transpose(self.normalizer(np.transpose(obs, (0, 3, 1, 2))), (0, 2, 3, 1))
        return self.normalizer(obs)

    def _tensor(self, obs: np.ndarray) -> torch.Tensor:
        """Normalise (if the policy has a normaliser) and move a validated batch to the network's device.

        Channels-last images (:attr:`channels_last_shapes`) are transposed first, as SB3's ``predict`` does.
        """
        last = self.channels_last_shapes.get("")
        if last is not None and obs.shape[1:] == last and obs.shape[1:] != self.obs_shape:
            obs = np.transpose(obs, (0, 3, 1, 2))
        if self.normalizer is not None:
            obs = self.normalizer(obs)
        if obs.dtype != self._net.obs_dtype and np.issubdtype(self._net.obs_dtype, np.floating):
            obs = obs.astype(self._net.obs_dtype)  # ints and bools too: a float network cannot multiply them
        if not obs.flags.writeable or min(obs.strides, default=0) < 0:  # read-only memmaps, reversed views: torch
            obs = np.array(obs)                                            # wants writable memory, positive strides
        return torch.as_tensor(obs, device=self.device)

    @contextlib.contextmanager
    def inference(self) -> Iterator[None]:
        """Eval mode and ``no_grad`` for the duration; every module's train/eval flag restored after.

        Every forward pass rli runs (act, step, capture, rollouts) is inside this block.
        An intervention active meanwhile (``with cut:``) that was built from another
        :class:`Policy` with the same network (fingerprint and architecture, as
        :meth:`rli.Intervention.bind` decides) is applied to this policy's module for the
        block, and removed after (also on errors); a different network is left alone.
        """
        # The flag is set directly (what ``Module.train`` does per module, without its per-call cost of a
        # recursive walk and a checked setattr per module: ~80 µs on a 7-module MLP, more than its forward pass
        # on one observation), and only on the modules that were training.
        training = [module for module in self.module.modules() if module.training]
        for module in training:
            module.__dict__["training"] = False
        undo: list[Callable[[], None]] = []
        running_policies.append(self)
        try:
            if active_edits:  # interventions built from another copy of this network apply here too
                _attach_edits(self, undo)
            with torch.no_grad():
                yield
        finally:
            for step in reversed(undo):
                step()
            running_policies.remove(self)
            for module in training:
                module.__dict__["training"] = True

    # -------------------------------------------------------------------- actions
    def act(self, obs: Any, *, chunk_size: int = 65536, state: Any = None, episode_start: Any = None,
            recurrent_state: RecurrentState | None = None) -> np.ndarray:
        """Deterministic actions for a batch of observations (numpy in, numpy out).

        Equal to SB3's ``predict(obs, deterministic=True)`` for SB3 policies, with the
        policy's observation normaliser applied first.

        Recurrent policies (sb3-contrib ``RecurrentPPO``): a plain batch runs every
        observation from the initial hidden state, as the first step of an episode. That
        is exactly SB3's ``predict(obs, state=None, deterministic=True)`` (which starts
        from a zero state too), and *not* the action the policy takes at that
        observation later in an episode. To act from the states along trajectories,
        give an :class:`~rli.ObsSet` from :meth:`rli.ObsSet.from_rollouts` (its recorded
        states are used; ``recurrent_state`` as in :func:`rli.capture`: ``"replay"``
        recomputes them, ``"fresh"`` asks for the initial state), or carry the state
        yourself: ``state=`` (and ``episode_start=``, default no episode starts) give
        the actions of :meth:`step`, which also returns the next state. Feed-forward
        policies refuse ``state=`` and ``episode_start=`` and ignore ``recurrent_state``.

        Box actions are what SB3's ``predict`` returns: clipped to the space's bounds for
        policies that do not squash their output (PPO, A2C, and plain torch modules
        loaded with a Box action space), unscaled from [-1, 1] for those that do (SAC,
        TD3). A plain module loaded with a ``Discrete(k)`` action space and ``k`` outputs
        acts by argmax. ``Dict`` observations: a dict of arrays or the flat array.

        Example:
            >>> import torch, torch.nn as nn, numpy as np, gymnasium as gym, rli
            >>> net = nn.Linear(3, 1)
            >>> with torch.no_grad():
            ...     _ = net.bias.fill_(5.0)
            >>> rli.load_policy(net, action_space=gym.spaces.Box(-2, 2, (1,))).act(np.zeros((2, 3))).tolist()
            [[2.0], [2.0]]
        """
        from rli import recurrent
        from rli.observations import ObsSet

        arr = self.prepare_obs(obs)
        chunk_size = checks.count(chunk_size, "chunk_size", hint=" (observations per forward pass)")
        mode = recurrent.check_mode(recurrent_state)
        carried = state is not None or episode_start is not None
        if carried and not self.is_recurrent:
            raise RliError(f"state= and episode_start= are for recurrent policies; this {self.kind} policy carries no "
                           "hidden state: call act(obs) without them")
        if carried:
            if mode is not None:
                raise RliError("give either state= (a hidden state you carry) or recurrent_state= (the states of an "
                               "ObsSet, replayed or fresh), not both")
            return self.step(arr, state, episode_start)[0]
        if self.is_recurrent and (mode is not None or (isinstance(obs, ObsSet) and obs.states)):
            mode, states = recurrent.resolve(self, obs, mode)
            if states is not None:  # every row from its own state, as a step that continues an episode
                actions = []
                with self.inference():
                    for start in range(0, arr.shape[0], chunk_size):
                        rows = slice(start, start + chunk_size)
                        at = recurrent.from_rows(self, "actor", states, rows)
                        actions.append(self.step_prepared(arr[rows], at, np.zeros(len(arr[rows])))[0])
                return np.concatenate(actions)
        with self.inference():
            return np.concatenate([self.act_prepared(arr[start:start + chunk_size])
                                   for start in range(0, arr.shape[0], chunk_size)])

    def initial_state(self, n: int) -> Any:
        """Hidden state for ``n`` parallel episodes (``None`` for feed-forward policies)."""
        return self._net.recurrent.initial_state(n) if self._net.recurrent is not None else None

    def step(self, obs: Any, state: Any = None, episode_start: Any = None) -> tuple[np.ndarray, Any]:
        """One step of ``n`` parallel episodes: ``(actions, next_state)``; the state is reset where ``episode_start``.

        As SB3's ``predict(obs, state, episode_start)``: without ``state`` every episode
        starts from :meth:`initial_state`; with ``state`` and no ``episode_start`` every
        episode continues from it. Feed-forward policies return ``(act(obs), None)``.

        Example:
            >>> import torch.nn as nn, numpy as np, rli
            >>> policy = rli.load_policy(nn.Sequential(nn.Linear(3, 2)))
            >>> actions, state = policy.step(np.zeros((4, 3)))
            >>> actions.shape, state is None
            ((4, 2), True)
        """
        arr = self.prepare_obs(obs)
        with self.inference():
            return self.step_prepared(arr, state, episode_start)

    def act_prepared(self, obs: np.ndarray) -> np.ndarray:
        """:meth:`act` for an already validated batch, inside :meth:`inference` (the rollout fast path)."""
        for tap in tuple(observation_taps):
            tap(self, obs)
        raw = first_tensor(self._net.run_actor(self._tensor(obs)))
        return self._checked_actions(self._net.to_actions(to_numpy(raw)), raw, obs.shape[0])

    def _checked_actions(self, actions: np.ndarray, raw: torch.Tensor, n: int) -> np.ndarray:
        if actions.ndim == 0 or actions.shape[0] != n:
            space = self.action_space
            raise RliError(f"the policy's output for {n} observations has shape {tuple(raw.shape)}, which is not {n} "
                           f"actions{f' of shape {space.shape} ({space})' if space is not None else ''}: the network's "
                           "output layer does not fit that action space; fix the output layer, or load the policy "
                           "with the action space (env=) it was trained for")
        return actions

    def step_prepared(self, obs: np.ndarray, state: Any, episode_start: Any) -> tuple[np.ndarray, Any]:
        """:meth:`step` for an already validated batch, inside :meth:`inference`."""
        if self._net.recurrent is None:
            return self.act_prepared(obs), None
        n = obs.shape[0]
        if episode_start is None:  # SB3's predict: no state, a new episode; a state given, it continues
            episode_start = np.ones(n) if state is None else np.zeros(n)
        state = self.initial_state(n) if state is None else state
        starts = torch.as_tensor(np.asarray(episode_start), dtype=torch.float32, device=self.device)
        raw, state = self._net.recurrent.step(self._tensor(obs), state, starts)
        raw = first_tensor(raw)
        return self._checked_actions(self._net.to_actions(to_numpy(raw)), raw, n), state
