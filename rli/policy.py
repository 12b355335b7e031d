"""`Policy`: a loaded network with addressable layers, deterministic actions and a fingerprint."""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import torch
from torch import nn

from rli.errors import RliError
from rli.network import Network, first_tensor
from rli.normalization import ObsNormalizer

LayerSpec = Union[int, str, "Layer"]
_ALIAS = re.compile(r"^(actor|critic)\.(-?\d+)$")


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


def _is_leaf(module: nn.Module) -> bool:
    return isinstance(module, nn.RNNBase) or not any(True for _ in module.children())


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
        """SHA-256 of every parameter, buffer and the observation normaliser: equal iff the policy computes the same."""
        digest = hashlib.sha256()
        for name, tensor in sorted(self.module.state_dict().items()):
            data = tensor.detach().cpu().contiguous()
            digest.update(f"{name}:{data.dtype}:{tuple(data.shape)}".encode())
            digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
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
        """Every addressable layer (leaf modules), actor trunk first, in forward order."""
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

    def _describe_layers(self) -> LayerTable:
        modules = dict(self.module.named_modules())
        names = list(dict.fromkeys(self._net.actor + self._net.critic + [
            name for name, module in modules.items() if name and _is_leaf(module)]))
        shapes: dict[str, tuple[tuple[int, ...], int]] = {}
        n = 2

        def record(name: str) -> Any:
            def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
                tensor = first_tensor(output)
                batch_dim = 0 if tensor.shape[0] == n else 1
                shape = tuple(tensor.shape[:batch_dim]) + tuple(tensor.shape[batch_dim + 1:])
                shapes.setdefault(name, (shape, batch_dim))
            return hook

        handles = [modules[name].register_forward_hook(record(name)) for name in names]
        try:
            with self.inference():
                obs = self._tensor(np.zeros((n, *self.obs_shape), dtype=self._net.obs_dtype))
                self._net.run_actor(obs)
                if self._net.run_critic is not None:
                    self._net.run_critic(obs)
        finally:
            for handle in handles:
                handle.remove()
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
        """Validate observations against the policy (shape, dtype, NaN/inf) and return them as an (n, *obs_shape) array."""
        from rli.observations import ObsSet

        arr = obs.obs if isinstance(obs, ObsSet) else obs
        if isinstance(arr, torch.Tensor):
            arr = arr.detach().cpu().numpy()
        try:
            arr = np.asarray(arr)
        except (ValueError, TypeError) as err:
            raise RliError(f"observations must be a numeric array; got {type(obs).__name__} ({err})") from None
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_) or \
                np.issubdtype(arr.dtype, np.complexfloating):
            raise RliError(f"observations must be numeric (real numbers), got dtype {arr.dtype}; convert them with "
                           "np.asarray(obs, float)")
        if arr.shape == self.obs_shape:
            arr = arr[None]
        if arr.ndim != len(self.obs_shape) + 1 or tuple(arr.shape[1:]) != self.obs_shape:
            expect = "(n, " + ", ".join(map(str, self.obs_shape)) + ")"
            raise RliError(f"observations have shape {arr.shape} but this policy takes {expect} "
                           f"(one observation is {self.obs_shape}); check the observation layout or the policy")
        if arr.shape[0] == 0:
            raise RliError("no observations: the batch is empty")
        if np.issubdtype(arr.dtype, np.floating):
            bad = ~np.isfinite(arr)
            if bad.any():
                row = int(np.argwhere(bad)[0][0])
                raise RliError(f"observations contain {int(bad.sum())} NaN/inf values (first in row {row}); "
                               "drop or clean those rows before using them")
        net_dtype = self._net.obs_dtype
        if self.normalizer is None and np.issubdtype(net_dtype, np.floating) and arr.dtype != np.bool_:
            largest = max(float(arr.max()), -float(arr.min()))
            if largest > float(np.finfo(net_dtype).max):
                raise RliError(f"observations reach {largest:.3g}, beyond the largest {net_dtype} the network takes "
                               f"({np.finfo(net_dtype).max:.3g}); rescale or clip them")
        return arr

    def _tensor(self, obs: np.ndarray) -> torch.Tensor:
        """Normalise (if the policy has a normaliser) and move a validated batch to the network's device."""
        if self.normalizer is not None:
            obs = self.normalizer(obs)
        if obs.dtype != self._net.obs_dtype and np.issubdtype(self._net.obs_dtype, np.floating):
            obs = obs.astype(self._net.obs_dtype)  # ints and bools too: a float network cannot multiply them
        if not obs.flags.writeable:  # read-only memmaps: torch wants memory it may write to
            obs = np.array(obs)
        return torch.as_tensor(obs, device=self.device)

    @contextlib.contextmanager
    def inference(self) -> Iterator[None]:
        """Eval mode and ``no_grad`` for the duration; every module's train/eval flag restored after."""
        # The flag is set directly (what ``Module.train`` does per module, without its per-call cost of a
        # recursive walk and a checked setattr per module: ~80 µs on a 7-module MLP, more than its forward pass
        # on one observation), and only on the modules that were training.
        training = [module for module in self.module.modules() if module.training]
        for module in training:
            module.__dict__["training"] = False
        try:
            with torch.no_grad():
                yield
        finally:
            for module in training:
                module.__dict__["training"] = True

    # -------------------------------------------------------------------- actions
    def act(self, obs: Any, *, chunk_size: int = 65536) -> np.ndarray:
        """Deterministic actions for a batch of observations (numpy in, numpy out).

        Equal to SB3's ``predict(obs, deterministic=True)`` for SB3 policies, with the
        policy's observation normaliser applied first. Recurrent policies start every
        observation from a fresh hidden state; use :meth:`step` to carry state.
        """
        arr = self.prepare_obs(obs)
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
            raise RliError(f"chunk_size must be a positive integer (observations per forward pass), got {chunk_size!r}")
        with self.inference():
            return np.concatenate([self.act_prepared(arr[start:start + chunk_size])
                                   for start in range(0, arr.shape[0], chunk_size)])

    def initial_state(self, n: int) -> Any:
        """Hidden state for ``n`` parallel episodes (``None`` for feed-forward policies)."""
        return self._net.recurrent.initial_state(n) if self._net.recurrent is not None else None

    def step(self, obs: Any, state: Any = None, episode_start: Any = None) -> tuple[np.ndarray, Any]:
        """One step of ``n`` parallel episodes: ``(actions, next_state)``; the state is reset where ``episode_start``."""
        arr = self.prepare_obs(obs)
        with self.inference():
            return self.step_prepared(arr, state, episode_start)

    def act_prepared(self, obs: np.ndarray) -> np.ndarray:
        """:meth:`act` for an already validated batch, inside :meth:`inference` (the rollout fast path)."""
        raw = first_tensor(self._net.run_actor(self._tensor(obs)))
        return self._net.to_actions(raw.cpu().numpy())

    def step_prepared(self, obs: np.ndarray, state: Any, episode_start: Any) -> tuple[np.ndarray, Any]:
        """:meth:`step` for an already validated batch, inside :meth:`inference`."""
        if self._net.recurrent is None:
            return self.act_prepared(obs), None
        n = obs.shape[0]
        state = self.initial_state(n) if state is None else state
        starts = torch.as_tensor(np.ones(n) if episode_start is None else np.asarray(episode_start),
                                 dtype=torch.float32, device=self.device)
        raw, state = self._net.recurrent.step(self._tensor(obs), state, starts)
        return self._net.to_actions(first_tensor(raw).cpu().numpy()), state
