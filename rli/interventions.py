"""Interventions: reusable context managers that rewrite one layer's output while they are active.

Each builder validates everything when it is called (layer, width, NaN, zero or
dependent directions) and returns an :class:`Intervention`; its forward hook exists
only inside ``with``. With ``h`` one sample's output flattened to the layer's width
and ``P`` the orthogonal projector on the given direction or subspace:

=====================================  ==============================================
``ablate(policy, layer, d, alpha)``    ``h ← h − P h + α P h``
``reflect(policy, layer, d)``          ``h ← h − 2 P h`` (Householder for one direction)
``mean_ablate(policy, layer, d, obs)`` ``h ← h − P (h − μ)``, μ the mean activation on ``obs``
``keep_subspace(policy, layer, d)``    ``h ← P h``; with ``obs``: ``h ← μ + P (h − μ)``
``erase(policy, layer, obs, concept)`` LEACE: ``h ← h − W⁺ Q W (h − μ)`` (see :mod:`rli.erasure`)
``patch(policy, layer, source_obs)``   ``h_i ←`` the layer's output on ``source_obs[i]``
=====================================  ==============================================

Directions (the ``direction`` argument of every builder) are arrays (d,) or (d, k)
(orthonormalised), ``"pcK"`` (the K-th principal direction) or ``"pcI-J"`` (principal
directions I to J) of the layer's activations on the observations given (``obs``), or
any fitted probe (an object with ``.direction``). The names used before (``w`` in
:func:`reflect`; ``basis`` and ``reference_obs`` in :func:`mean_ablate` and
:func:`keep_subspace`) still work for one release, with a ``DeprecationWarning``.

``with a, b:`` composes interventions (on the same layer ``a`` edits first); an
intervention can be entered again and again, but not while it is already active.
Only the tensor the layer passes on is edited: an ``nn.LSTM`` keeps its output
structure ``(output, (h, c))`` and the carried state ``(h, c)`` is left as computed,
so a recurrent policy's memory is not edited, only what its later layers read.
Parameters are never touched. Everything an edit needs (bases, means, LEACE factors,
source activations) is computed once, when the intervention is built, from the policy
as it is then (interventions active at that moment apply; in ``with a, b:`` both are
built first, so neither sees the other). On a recurrent policy those activations run
from the hidden states ``recurrent_state=`` chooses, as in :func:`rli.capture`: by
default the states recorded with observations from :meth:`rli.ObsSet.from_rollouts`,
``"replay"`` to recompute them, and ``"fresh"`` (the only way a plain array is taken)
for every observation from the initial state; ``describe()`` and ``to_dict()`` say which.
Each forward pass then costs one ``addmm`` through the smaller of the edited subspace
and its complement.

An intervention belongs to the network it was built from, as it was then (its
fingerprint). ``with a:`` edits that network wherever it runs: ``a.policy``'s module,
and, for each forward pass inside the block (:meth:`rli.Policy.inference`, which act,
step, capture and rollouts all run in), the module of any other :class:`~rli.Policy`
with the same parameters and architecture (the same file loaded again, say). A
different network run inside the block is left alone (two policies side by side).
:func:`rli.evaluate` and :func:`rli.compare` (and everything built on them) bind an
intervention to the policy they run with :meth:`Intervention.bind`: the same network
gets the edit, a different one raises :class:`RliError`, naming both fingerprints,
before any episode runs. Entering an intervention after its policy's parameters have
changed also raises (its bases, means and source activations describe the old
network): build it again. Active interventions are process-wide, like the forward
hooks they are made of: a forward pass in another thread sees them too.
"""

from __future__ import annotations

import copy
import hashlib
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from rli import checks, recurrent
from rli.capture import capture
from rli.deprecation import renamed_arguments
from rli.erasure import concept_matrix, fit_leace
from rli.errors import RliError
from rli.network import first_tensor
from rli.policy import Layer, LayerSpec, Policy, active_edits, running_policies
from rli.recurrent import RecurrentState
from rli.subspace import complement, fit_pca, orthonormalize

_PCS = re.compile(r"pc(\d+)(?:-(\d+))?", re.IGNORECASE)
_Edit = Callable[[torch.Tensor], torch.Tensor]
_LOCK = threading.RLock()  # guards active_edits and every intervention's attachments


@dataclass
class _Attachment:
    """An active intervention's hook on another copy of its network: where, and how many inference blocks use it."""

    module: nn.Module  # the other copy's root module (held so that its id is not reused meanwhile)
    submodule: nn.Module
    bound: Intervention
    handle: Any
    users: int = 0


class Intervention:
    """One layer edit, applied while the object is active as a context manager.

    Built by :func:`ablate`, :func:`mean_ablate`, :func:`keep_subspace`,
    :func:`reflect`, :func:`erase` and :func:`patch`. ``describe()`` says what it
    does, ``to_dict()`` gives the same as plain data for reports.

    Example:
        >>> import numpy as np, torch.nn as nn, rli
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)))
        >>> cut = rli.ablate(policy, 1, [1.0, 0.0, 0.0, 0.0])
        >>> cut
        Intervention(ablate: zero 1 direction at actor.1)
        >>> with cut:
        ...     acts = rli.capture(policy, np.ones((5, 3)), layers=[1])[1]
        >>> bool(np.all(acts[:, 0] == 0)), cut.active
        (True, False)
    """

    def __init__(self, policy: Policy, layer: Layer, kind: str, edit: _Edit, description: str,
                 details: dict[str, Any]) -> None:
        self.policy = policy
        self.layer = layer
        self.kind = kind
        self._edit = edit
        self._description = description
        self._details = details
        assert layer.width is not None and layer.shape is not None, "interventions are built on layers that run"
        self._sample_shape = torch.Size(layer.shape)
        self._width = layer.width
        self._handle: Any = None
        self._fingerprint = policy.fingerprint  # the network the edit was computed on
        self._origin: Intervention = self  # shared by the copies bind() makes: one edit, applied once per network
        self._attached: dict[int, _Attachment] = {}  # id(root module) of other copies it edits while active
        self._verdicts: dict[int, tuple[Policy, str, bool]] = {}  # id(policy) -> (policy, fingerprint, same network)

    @property
    def fingerprint(self) -> str:
        """Fingerprint of the network this intervention was built from, as it was when it was built."""
        return self._fingerprint

    def bind(self, policy: Policy) -> Intervention:
        """This intervention applied to ``policy``: itself, or a copy that edits ``policy``'s module.

        The copy is made when ``policy`` is another object with the same network:
        the same fingerprint as when this intervention was built, and the same
        architecture (module types and layer table). :class:`RliError` otherwise,
        naming both fingerprints (build the intervention from the policy you run),
        and also when this intervention's own policy has changed since it was built.
        :func:`rli.evaluate` and :func:`rli.compare` call this for you.

        Example:
            >>> import copy, numpy as np, torch.nn as nn, rli
            >>> net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
            >>> p, q = rli.load_policy(net), rli.load_policy(copy.deepcopy(net))
            >>> cut = rli.ablate(q, 1, np.eye(4))
            >>> with cut.bind(p):
            ...     acts = rli.capture(p, np.ones((2, 3)), layers=[1])[1]
            >>> bool(np.all(acts == 0)), cut.bind(q) is cut
            (True, True)
        """
        checks.policy(policy)
        now = policy.fingerprint
        if now != self._fingerprint:
            if policy is self.policy:
                raise self._changed(now)
            raise RliError(f"this intervention ({self._description}) was built from a network with fingerprint "
                           f"{self._fingerprint[:12]} but is used with {_named_policy(policy)}, fingerprint {now[:12]}: "
                           "another network, so the edit would not apply to the policy that runs; build the "
                           "intervention from the policy you evaluate (e.g. rli.ablate(policy, ...) with that policy)")
        if policy is self.policy:
            return self
        difference = _architecture_difference(self.policy, policy)
        if difference:
            raise RliError(f"this intervention ({self._description}) was built from a network with the same parameters "
                           f"(fingerprint {now[:12]}) as {_named_policy(policy)} but another architecture ({difference}); "
                           "build the intervention from the policy you evaluate")
        return self._copy_for(policy)

    def _copy_for(self, policy: Policy) -> Intervention:
        bound = copy.copy(self)
        bound.policy, bound.layer, bound._handle = policy, policy.layer(self.layer.name), None
        bound._attached, bound._verdicts = {}, {}
        return bound

    def attach(self, policy: Policy) -> Callable[[], None] | None:
        """While active, apply this intervention to ``policy``'s forward passes too, if it is another copy of the network.

        :meth:`rli.Policy.inference` calls this for every active intervention (you do not
        need to). ``policy`` gets the edit when its module is not this intervention's own
        but its network is the same (fingerprint as when this was built, and architecture,
        as :meth:`bind` decides; the verdict is kept until the block ends). Returns a
        function that undoes it, or ``None`` when nothing was attached: inactive, its own
        module (no fingerprint is computed), a different network, or a copy of this
        intervention (from :meth:`bind`) already editing that module.

        Example:
            >>> import copy, numpy as np, torch.nn as nn, rli
            >>> net = nn.Sequential(nn.Linear(3, 4), nn.Tanh())
            >>> p, q = rli.load_policy(net), rli.load_policy(copy.deepcopy(net))
            >>> with rli.ablate(q, 1, np.eye(4)) as cut:  # built from q, acts on p: the same network
            ...     acts = rli.capture(p, np.ones((2, 3)), layers=[1])[1]
            ...     undo = cut.attach(p)
            >>> bool(np.all(acts == 0)), undo is not None
            (True, True)
            >>> undo()
        """
        module = policy.module
        if self._handle is None or module is self.policy.module:
            return None
        key = id(module)
        with _LOCK:
            record = self._attached.get(key)
            if record is None:
                if self._relative_edits(module) or not self._same_network(policy):
                    return None
                try:
                    record = self._hook_onto(policy)
                except BaseException:  # never leave a half-made attachment (it would count users and edit nothing)
                    dropped = self._attached.pop(key, None)
                    if dropped is not None and dropped.handle is not None:
                        dropped.handle.remove()
                    raise
            record.users += 1

        def undo() -> None:
            with _LOCK:
                if self._attached.get(key) is record:
                    record.users -= 1
                    if record.users == 0:
                        if record.handle is not None:
                            record.handle.remove()
                        del self._attached[key]
        return undo

    def _same_network(self, policy: Policy) -> bool:
        fingerprint = policy.fingerprint
        seen = self._verdicts.get(id(policy))
        if seen is not None and seen[0] is policy and seen[1] == fingerprint:
            return seen[2]
        same = fingerprint == self._fingerprint and not _architecture_difference(self.policy, policy)
        self._verdicts[id(policy)] = (policy, fingerprint, same)
        return same

    def _relative_edits(self, module: nn.Module) -> bool:
        """Whether another active copy of this intervention (same origin) already edits ``module``."""
        return any(other is not self and other._origin is self._origin
                   and (other.policy.module is module or id(module) in other._attached)
                   for other in active_edits if isinstance(other, Intervention))

    def _hook_onto(self, policy: Policy) -> _Attachment:
        """Hook a copy of this intervention onto ``policy``'s layer, first among that layer's forward hooks.

        A hook registered inside the ``with`` block (after the edit, on the intervention's
        own module) reads the edited output, so the edit goes before the layer's other
        hooks; rli's interventions on that layer stay in the order they were entered
        (``with a, b:`` on one layer: a edits first, wherever a and b were built).
        """
        bound = self._copy_for(policy)
        submodule = policy.module.get_submodule(bound.layer.name)
        record = _Attachment(policy.module, submodule, bound, None)
        self._attached[id(policy.module)] = record
        ours: list[tuple[Intervention, Any]] = []  # (the hook's intervention, where its handle is kept) in entry order
        for other in active_edits:
            theirs = other._attached.get(id(policy.module)) if isinstance(other, Intervention) else None
            if theirs is not None and theirs.submodule is submodule:
                ours.append((theirs.bound, theirs))
            elif isinstance(other, Intervention) and other._handle is not None \
                    and other.policy.module is policy.module and submodule is \
                    policy.module.get_submodule(other.layer.name):
                ours.append((other, None))
        for edit, holder in reversed(ours):
            if holder is None:
                edit._handle.remove()
                edit._handle = submodule.register_forward_hook(edit._hook, prepend=True)
            else:
                if holder.handle is not None:
                    holder.handle.remove()
                holder.handle = submodule.register_forward_hook(edit._hook, prepend=True)
        return record

    def _changed(self, now: str) -> RliError:
        return RliError(f"the parameters of the policy this intervention ({self._description}) was built from have "
                        f"changed since (fingerprint {self._fingerprint[:12]} then, {now[:12]} now), so its edit "
                        "describes the old network; build the intervention again from the policy as it is now")

    @property
    def active(self) -> bool:
        """Whether the hook is in place (inside a ``with`` block)."""
        return self._handle is not None

    def describe(self) -> str:
        """One line saying what the intervention does, e.g. ``"zero 1 direction at actor.5 (pc1)"``."""
        return self._description

    def to_dict(self) -> dict[str, Any]:
        """Plain-python form (for reports and JSON)."""
        return {"kind": self.kind, "layer": _where(self.layer), "module": self.layer.name,
                "description": self._description, **self._details}

    def __repr__(self) -> str:
        return f"Intervention({self.kind}: {self._description}{', active' if self.active else ''})"

    def __str__(self) -> str:
        return self._description

    def __enter__(self) -> Intervention:
        if self._handle is not None:
            raise RliError(f"this intervention ({self._description}) is already active; exit its `with` block "
                           "before entering it again, or build a second one")
        now = self.policy.fingerprint
        if now != self._fingerprint:
            raise self._changed(now)
        with _LOCK:
            module = self.policy.module
            relatives = [other for other in active_edits if isinstance(other, Intervention)
                         and other is not self and other._origin is self._origin]
            if any(other.policy.module is module for other in relatives):
                raise RliError(f"this intervention ({self._description}) is already active on this network (entered "
                               "directly or through a copy from bind()); exit its `with` block before entering it "
                               "again, or build a second one")
            for other in relatives:  # one attached to this module now: this entry's own hook takes over
                record = other._attached.pop(id(module), None)
                if record is not None and record.handle is not None:
                    record.handle.remove()
            self._handle = self.policy.module.get_submodule(self.layer.name).register_forward_hook(self._hook)
            active_edits.append(self)
            try:
                for running in tuple(running_policies):  # forward passes already under way (a user's own loop)
                    self.attach(running)  # kept until exit
            except BaseException:
                self.__exit__()
                raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        with _LOCK:
            handle, self._handle = self._handle, None
            if handle is not None:
                handle.remove()
            if any(item is self for item in active_edits):
                del active_edits[next(i for i, item in enumerate(active_edits) if item is self)]
            for record in self._attached.values():
                if record.handle is not None:
                    record.handle.remove()
            self._attached.clear()
            self._verdicts.clear()

    def _hook(self, _module: nn.Module, _inputs: Any, output: Any) -> Any:
        tensor = output if isinstance(output, torch.Tensor) else first_tensor(output)
        if tensor.shape[-len(self._sample_shape):] != self._sample_shape or not tensor.is_floating_point():
            raise RliError(f"layer {_where(self.layer)} produced a {tensor.dtype} output of shape "
                           f"{tuple(tensor.shape)}, not float samples of shape {tuple(self._sample_shape)}; "
                           f"the intervention ({self._description}) does not fit it")
        if tensor.dim() == 2 and len(self._sample_shape) == 1:
            edited = self._edit(tensor)
        else:
            edited = self._edit(tensor.reshape(-1, self._width)).reshape(tensor.shape)
        return edited if output is tensor else _replace_first(output, edited)


def _replace_first(output: Any, tensor: torch.Tensor) -> Any:
    """``output`` with its first tensor (as found by ``first_tensor``) replaced: the module's structure is kept."""
    if isinstance(output, torch.Tensor):
        return tensor
    first = _replace_first(output[0], tensor)
    if hasattr(output, "_fields"):
        return output._replace(**{output._fields[0]: first})
    return type(output)([first, *output[1:]])


def bind_all(intervention: Any, policy: Policy) -> Any:
    """``intervention`` (``None``, one, or a list or tuple of them) bound to ``policy`` with :meth:`Intervention.bind`.

    Other context managers in the list are passed through unchanged. The result is
    a list when a list or tuple was given. This is what :func:`rli.evaluate` and
    :func:`rli.compare` do before they run anything.

    Example:
        >>> import copy, numpy as np, torch.nn as nn, rli
        >>> from rli.interventions import bind_all
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.Tanh())
        >>> p, q = rli.load_policy(net), rli.load_policy(copy.deepcopy(net))
        >>> a, b = rli.ablate(q, 1, np.eye(4)[0]), rli.ablate(p, 1, np.eye(4)[1])
        >>> [item.policy is p for item in bind_all([a, b], p)]
        [True, True]
    """
    if intervention is None:
        return None
    if isinstance(intervention, (list, tuple)):
        return [bind_all(item, policy) for item in intervention]
    return intervention.bind(policy) if isinstance(intervention, Intervention) else intervention


def _named_policy(policy: Policy) -> str:
    return f"policy {policy.source!r}" if policy.source else f"a {policy.kind} policy"


def _module_type(module: nn.Module) -> str:
    if isinstance(module, torch.jit.ScriptModule):  # every scripted module's type is RecursiveScriptModule
        try:
            code = module.code
        except (RuntimeError, AttributeError):
            code = ""
        digest = hashlib.sha256(code.encode()).hexdigest()[:12]
        return f"{getattr(module, 'original_name', type(module).__name__)} (TorchScript, code {digest})"
    return f"{type(module).__module__}.{type(module).__qualname__}"


def _architecture_difference(built: Policy, other: Policy) -> str:
    """The first way ``other``'s network is built differently from ``built``'s, or ``""``."""
    if built.obs_shape != other.obs_shape:
        return f"observations of shape {built.obs_shape} vs {other.obs_shape}"
    ours = [(name, _module_type(module)) for name, module in built.module.named_modules()]
    theirs = [(name, _module_type(module)) for name, module in other.module.named_modules()]
    for mine, yours in zip(ours, theirs):
        if mine != yours:
            return f"module {mine[0] or '(root)'!r} is {mine[1]} vs {yours[0] or '(root)'!r}: {yours[1]}"
    if len(ours) != len(theirs):
        return f"{len(ours)} vs {len(theirs)} modules"
    for mine, yours in zip(built.layers, other.layers):
        if mine != yours:
            return f"layer {mine.name!r}: {mine.to_dict()} vs {yours.to_dict()}"
    return ""


class _Cached:
    """numpy arrays turned into tensors once per (device, dtype) the layer produces."""

    def __init__(self, *arrays: np.ndarray | None) -> None:
        self._arrays = arrays
        self._tensors: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor | None, ...]] = {}

    def like(self, rows: torch.Tensor) -> tuple[Any, ...]:
        key = (rows.device, rows.dtype)
        if key not in self._tensors:
            self._tensors[key] = tuple(None if array is None else
                                       torch.as_tensor(array, dtype=rows.dtype, device=rows.device)
                                       for array in self._arrays)
        return self._tensors[key]


class _LowRankEdit:
    """``rows ↦ beta·rows + gamma·(rows @ left) @ right + shift`` in one ``addmm``; ``left`` is (d, m), ``right`` (m, d)."""

    def __init__(self, left: np.ndarray, right: np.ndarray, *, beta: float, gamma: float,
                 shift: np.ndarray | None = None) -> None:
        self._factors = _Cached(np.ascontiguousarray(left), np.ascontiguousarray(right), shift)
        self._beta, self._gamma = beta, gamma

    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        left, right, shift = self._factors.like(rows)
        out = torch.addmm(rows, rows @ left, right, beta=self._beta, alpha=self._gamma)
        return out.add_(shift) if shift is not None else out


class _ReplaceEdit:
    """Rows replaced by stored source rows (one source row broadcasts to any batch)."""

    def __init__(self, source: np.ndarray, where: str) -> None:
        self._source = _Cached(source)
        self._n = source.shape[0]
        self._where = where

    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        if self._n != 1 and rows.shape[0] != self._n:
            raise RliError(f"the patch at {self._where} holds {self._n} source activations but the layer ran on a "
                           f"batch of {rows.shape[0]}; run the policy on exactly {self._n} observations at a time "
                           f"(e.g. chunk_size={self._n} in rli.capture or policy.act), or patch from one source "
                           "observation")
        (source,) = self._source.like(rows)
        return source.expand(rows.shape[0], -1).clone()


def _projection(basis: np.ndarray, *, alpha: float, center: np.ndarray | None = None,
                complement_of: bool = False) -> _LowRankEdit:
    """``h ← h + (α − 1) P (h − center)`` with ``P`` the projector on span(basis), or on its complement.

    Works through whichever of the edited subspace and its complement has fewer
    dimensions, so the cost is ``2·n·d·min(m, d − m)`` for an ``m``-dimensional edit.
    """
    d, k = basis.shape
    edited_dims = d - k if complement_of else k
    if edited_dims <= d - edited_dims:
        edited = complement(basis) if complement_of else basis
        edit = dict(left=edited, right=edited.T, beta=1.0, gamma=alpha - 1.0)
        along = (edited @ (edited.T @ center)) if center is not None else None
    else:
        kept = basis if complement_of else complement(basis)
        edit = dict(left=kept, right=kept.T, beta=alpha, gamma=1.0 - alpha)
        along = (center - kept @ (kept.T @ center)) if center is not None else None
    return _LowRankEdit(**edit, shift=None if along is None else (1.0 - alpha) * along)


def _target(policy: Policy, spec: LayerSpec) -> Layer:
    layer = checks.policy(policy).layer(spec)
    if layer.width is None:
        raise RliError(f"layer {layer.name!r} does not run when the policy acts, so there is nothing to intervene on; "
                       "see `policy.layers` for the layers with a width")
    return layer


def _where(layer: Layer) -> str:
    return layer.aliases[0] if layer.aliases else layer.name


def _activations(policy: Policy, layer: Layer, obs: Any,
                 recurrent_state: RecurrentState | None) -> tuple[np.ndarray, RecurrentState | None]:
    """The layer's activations on ``obs`` and the recurrent state they ran from (``None``: feed-forward)."""
    acts = capture(policy, obs, layers=[layer], recurrent_state=recurrent_state)
    return acts[layer.name], acts.recurrent_state


def _states(mode: RecurrentState | None) -> str:
    """How a recurrent policy's activations were taken, for descriptions (``""`` for feed-forward policies)."""
    return f", {mode} recurrent states" if mode else ""


def _finite(value: Any, name: str) -> float:
    return checks.real(value, name)


def _basis(policy: Policy, layer: Layer, direction: Any, acts: np.ndarray | None,
           argument: str) -> tuple[np.ndarray, str]:
    """(orthonormal basis d×k, how it was named: "pc1", "pc1-3", "probe of 'upwash'" or "")."""
    if isinstance(direction, str):
        match = _PCS.fullmatch(direction.strip())
        if match is None:
            raise RliError(f"unknown direction {direction!r}; give 'pcK' (the K-th principal direction), 'pcI-J' "
                           "(principal directions I to J), an array (d,) or (d, k), or a fitted probe")
        first, last = int(match.group(1)), int(match.group(2) or match.group(1))
        if not 1 <= first <= last:
            raise RliError(f"direction {direction!r}: principal directions are numbered from 1, "
                           "as 'pcK' or 'pcI-J' with I ≤ J")
        if acts is None:
            raise RliError(f"direction {direction!r} needs observations to fit PCA on; pass {argument}=... "
                           "(the layer's activations on them define the principal directions)")
        return fit_pca(acts, last)[0][:, first - 1:last], f"pc{first}" if first == last else f"pc{first}-{last}"
    label = ""
    if hasattr(direction, "direction"):
        direction, label = _probe_direction(policy, layer, direction)
    return orthonormalize(direction, width=layer.width), label


def _probe_direction(policy: Policy, layer: Layer, probe: Any) -> tuple[Any, str]:
    """A fitted probe's direction, checked against the layer it was fit at when the probe says which."""
    kind = type(probe).__name__
    fitted_at = getattr(probe, "layer", None)
    if isinstance(fitted_at, str):
        try:
            same = policy.layer(fitted_at).name == layer.name
        except RliError:
            same = False
        if not same:
            raise RliError(f"the {kind} was fit at layer {fitted_at!r} but the intervention is at {layer.name!r}; "
                           "its direction lives in another activation space: fit the probe at this layer")
    if probe.direction is None:
        raise RliError(f"this {kind} has no direction (only linear probes have one); "
                       "use a ridge or lasso probe, or give the direction as an array")
    target = getattr(probe, "target", None)
    return probe.direction, f"probe of {target!r}" if isinstance(target, str) else f"{kind} direction"


def _count(basis: np.ndarray) -> str:
    return f"{basis.shape[1]} direction{'s' if basis.shape[1] > 1 else ''}"


def _named(label: str, mode: RecurrentState | None = None) -> str:
    parts = [part for part in (label, f"{mode} recurrent states" if mode else "") if part]
    return f" ({', '.join(parts)})" if parts else ""


def _with_mode(details: dict[str, Any], mode: RecurrentState | None) -> dict[str, Any]:
    """``details`` with the recurrent state the activations ran from, for recurrent policies."""
    return {**details, "recurrent_state": mode} if mode else details


def ablate(policy: Policy, layer: LayerSpec, direction: Any, alpha: float = 0.0, *, obs: Any = None,
           recurrent_state: RecurrentState | None = None) -> Intervention:
    """Scale the component of ``layer``'s output along a direction or subspace by ``alpha``: ``h ← h − P h + α P h``.

    ``alpha=0`` removes the component (zeroing, not mean-ablation: see
    :func:`mean_ablate`), ``alpha=1`` changes nothing, ``alpha=-1`` reflects.
    ``direction`` is an array (d,) or (d, k), ``"pcK"`` / ``"pcI-J"`` (principal
    directions of the layer's activations on ``obs``; ``obs`` is used for nothing
    else) or a fitted probe. On a recurrent policy those activations run from the
    hidden states chosen by ``recurrent_state``, as in :func:`rli.capture` (by
    default the states recorded with observations from :meth:`rli.ObsSet.from_rollouts`;
    a plain array needs ``recurrent_state="fresh"``); the description says which.

    A direction fitted on data (``"pcK"``, a probe, a steering vector) is an estimate,
    fixed here once: :func:`rli.compare` of this intervention gives an interval for this
    one fixed direction (episode noise only). Fitted on other rollouts it comes out
    different, and so does its effect; :func:`rli.compare_refit` refits it on resampled
    episodes and gives an interval that covers the direction's estimation too.

    Example:
        >>> import numpy as np, torch.nn as nn, rli
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2)))
        >>> obs = np.random.default_rng(0).normal(size=(200, 3))
        >>> cut = rli.ablate(policy, 1, "pc1", obs=obs)
        >>> cut.describe()
        'zero 1 direction at actor.1 (pc1)'
        >>> with cut:
        ...     ablated = policy.act(obs)
        >>> bool(np.abs(ablated - policy.act(obs)).max() > 0)
        True
    """
    target = _target(policy, layer)
    alpha = _finite(alpha, "alpha")
    recurrent.check_mode(recurrent_state)
    acts, mode = (_activations(policy, target, obs, recurrent_state) if isinstance(direction, str) and obs is not None
                  else (None, None))
    basis, label = _basis(policy, target, direction, acts, "obs")
    verb = f"zero {_count(basis)}" if alpha == 0 else f"scale {_count(basis)} by {alpha:g}"
    description = f"{verb} at {_where(target)}{_named(label, mode)}"
    return Intervention(policy, target, "ablate", _projection(basis, alpha=alpha), description,
                        _with_mode({"alpha": alpha, "rank": basis.shape[1], "directions": label or "given"}, mode))


@renamed_arguments(w="direction")
def reflect(policy: Policy, layer: LayerSpec, direction: Any, *, obs: Any = None,
            recurrent_state: RecurrentState | None = None) -> Intervention:
    """Householder reflection of ``layer``'s output: ``h ← h − 2 (h·ŵ) ŵ`` (for a subspace, ``h − 2 P h``).

    ``direction`` (ŵ; ``w=`` before, deprecated) is given as for :func:`ablate` (``obs``
    and ``recurrent_state`` too); the reflection is its own inverse and preserves norms.

    Example:
        >>> import numpy as np, torch.nn as nn, rli
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(2, 2)))
        >>> with rli.reflect(policy, 0, [0.0, 1.0]) as flip:
        ...     flipped = rli.capture(policy, np.ones((1, 2)), layers=[0])[0]
        >>> flip.describe(), bool(np.allclose(flipped * [1, -1], rli.capture(policy, np.ones((1, 2)), layers=[0])[0]))
        ('reflect 1 direction at actor.0', True)
    """
    target = _target(policy, layer)
    recurrent.check_mode(recurrent_state)
    acts, mode = (_activations(policy, target, obs, recurrent_state) if isinstance(direction, str) and obs is not None
                  else (None, None))
    basis, label = _basis(policy, target, direction, acts, "obs")
    description = f"reflect {_count(basis)} at {_where(target)}{_named(label, mode)}"
    return Intervention(policy, target, "reflect", _projection(basis, alpha=-1.0), description,
                        _with_mode({"rank": basis.shape[1], "directions": label or "given"}, mode))


@renamed_arguments(basis="direction", reference_obs="obs")
def mean_ablate(policy: Policy, layer: LayerSpec, direction: Any, obs: Any, *,
                recurrent_state: RecurrentState | None = None) -> Intervention:
    """Replace the component of ``layer``'s output in a subspace by its mean: ``h ← h − P (h − μ)``.

    ``direction`` is given as for :func:`ablate`; μ is the mean activation over ``obs``
    (which also defines ``"pcK"`` directions). Unlike zeroing, this keeps the layer's
    average output, so it removes the variation along the subspace and nothing else.
    ``recurrent_state`` chooses the hidden states a recurrent policy runs ``obs`` from,
    as in :func:`rli.capture`. (``basis=`` and ``reference_obs=`` are the deprecated
    old names of ``direction=`` and ``obs=``.)

    Example:
        >>> import numpy as np, torch.nn as nn, rli
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2)))
        >>> obs = np.random.default_rng(0).normal(size=(300, 3))
        >>> with rli.mean_ablate(policy, 1, "pc1-2", obs) as flat:
        ...     acts = rli.capture(policy, obs, layers=[1])[1]
        >>> flat.describe()
        'set 2 directions to their mean over 300 observations at actor.1 (pc1-2)'
        >>> basis, _ = rli.fit_pca(rli.capture(policy, obs, layers=[1])[1], 2)
        >>> bool(np.ptp(acts @ basis, axis=0).max() < 1e-5)
        True
    """
    target = _target(policy, layer)
    acts, mode = _activations(policy, target, obs, recurrent_state)
    space, label = _basis(policy, target, direction, acts, "obs")
    its = "its" if space.shape[1] == 1 else "their"
    description = (f"set {_count(space)} to {its} mean over {acts.shape[0]} observations "
                   f"at {_where(target)}{_named(label, mode)}")
    edit = _projection(space, alpha=0.0, center=acts.mean(axis=0, dtype=np.float64))
    return Intervention(policy, target, "mean_ablate", edit, description,
                        _with_mode({"rank": space.shape[1], "directions": label or "given",
                                    "n_reference": acts.shape[0]}, mode))


@renamed_arguments(basis="direction", reference_obs="obs")
def keep_subspace(policy: Policy, layer: LayerSpec, direction: Any, obs: Any = None, *,
                  recurrent_state: RecurrentState | None = None) -> Intervention:
    """Keep only the component of ``layer``'s output in a subspace; the rest is set to its mean, or zeroed.

    ``direction`` (the subspace kept) is given as for :func:`ablate`. With ``obs``
    (recommended for PCA subspaces, and what a minimal-subspace search uses) the
    orthogonal complement is replaced by its mean over those observations:
    ``h ← μ + P (h − μ)``, i.e. :func:`mean_ablate` of the complement. Without, it is
    zeroed: ``h ← P h``, i.e. :func:`ablate` of the complement. ``"pcK"`` / ``"pcI-J"``
    directions are fitted on ``obs``, which a recurrent policy runs from the hidden
    states ``recurrent_state`` chooses (as in :func:`rli.capture`). (``basis=`` and
    ``reference_obs=`` are the deprecated old names of ``direction=`` and ``obs=``.)

    Example:
        >>> import numpy as np, torch.nn as nn, rli
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2)))
        >>> obs = np.random.default_rng(0).normal(size=(300, 3))
        >>> keep = rli.keep_subspace(policy, 1, "pc1-3", obs=obs)
        >>> keep.describe()
        'keep only 3 directions at actor.1 (pc1-3), the rest set to its mean over 300 observations'
        >>> with keep:
        ...     kept = policy.act(obs)
        >>> bool(np.abs(kept - policy.act(obs)).mean() < np.abs(policy.act(obs)).mean())
        True
    """
    target = _target(policy, layer)
    recurrent.check_mode(recurrent_state)
    acts, mode = (_activations(policy, target, obs, recurrent_state) if obs is not None else (None, None))
    space, label = _basis(policy, target, direction, acts, "obs")
    center = acts.mean(axis=0, dtype=np.float64) if acts is not None else None
    rest = f"the rest set to its mean over {acts.shape[0]} observations" if acts is not None else "the rest zeroed"
    description = f"keep only {_count(space)} at {_where(target)}{_named(label, mode)}, {rest}"
    edit = _projection(space, alpha=0.0, center=center, complement_of=True)
    return Intervention(policy, target, "keep_subspace", edit, description,
                        _with_mode({"rank": space.shape[1], "directions": label or "given",
                                    "rest": "zero" if acts is None else "mean",
                                    "n_reference": None if acts is None else acts.shape[0]}, mode))


class _LeaceEdit:
    """``rows ↦ rows − ((rows − mean) @ right) @ left`` in float64 (where the device has it), cast back.

    The whitening factors of an exact eraser can be large (a layer with directions of
    variance 1e-10 of its largest): in float32 the edit would be off by ~1e-5 relative
    and leave a cross-covariance of ~1e-7 with the concept; in float64 the output is the
    exact eraser's, rounded once to the layer's dtype.
    """

    def __init__(self, mean: np.ndarray, right: np.ndarray, left: np.ndarray) -> None:
        self._factors = _Cached(np.ascontiguousarray(right), np.ascontiguousarray(left), mean)

    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        wide = rows if rows.device.type == "mps" else rows.to(torch.float64)  # MPS has no float64
        right, left, mean = self._factors.like(wide)
        return torch.addmm(wide, (wide - mean) @ right, left, alpha=-1.0).to(rows.dtype)


def erase(policy: Policy, layer: LayerSpec, obs: Any, concept: Any, *, categorical: bool | None = None,
          shrinkage: bool = False, recurrent_state: RecurrentState | None = None) -> Intervention:
    """LEACE erasure of ``concept`` from ``layer``'s output, fitted on the activations of ``obs``.

    After it, no linear predictor recovers the concept from the layer's activations
    on ``obs`` better than a constant, with the smallest possible change to them
    (Belrose et al., 2023). ``concept`` is a label name of the ObsSet ``obs`` or an
    array (n,) / (n, k); integer, boolean and string concepts are one-hot encoded
    (``categorical=`` overrides the guess). ``shrinkage=True`` whitens with
    concept-erasure's default shrunk covariance (:func:`rli.erasure.linear_shrinkage`).
    A recurrent policy runs ``obs`` from the hidden states ``recurrent_state`` chooses,
    as in :func:`rli.capture`. Statistics are float64 and the edit runs in float64, so a
    float32 layer gets the exact eraser's output.

    The guarantee is in-sample and linear only: on new observations (the eraser's
    covariances are estimates) and for nonlinear read-outs the concept can remain;
    :func:`rli.erasure.erasure_report` measures both on held-out episodes.

    Example:
        >>> import numpy as np, torch.nn as nn, rli
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2)))
        >>> x = np.random.default_rng(0).normal(size=(500, 3))
        >>> obs = rli.ObsSet(x, labels={"first": x[:, 0]})
        >>> with rli.erase(policy, 1, obs, "first") as leace:
        ...     acts = rli.capture(policy, obs, layers=[1])[1]
        >>> leace.describe()
        "LEACE erasure of 'first' at actor.1 (rank 1, fit on 500 observations)"
        >>> from sklearn.linear_model import RidgeCV
        >>> from sklearn.model_selection import cross_val_score
        >>> bool(cross_val_score(RidgeCV(), acts, x[:, 0], cv=5).mean() < 0.01)
        True
    """
    target = _target(policy, layer)
    if not (categorical is None or isinstance(categorical, (bool, np.bool_))):
        raise RliError(f"categorical must be True, False or None (guess from the dtype), not {categorical!r}")
    checks.flag(shrinkage, "shrinkage")
    acts, mode = _activations(policy, target, obs, recurrent_state)
    matrix, name = concept_matrix(concept, obs, acts.shape[0], categorical=categorical)
    fit = fit_leace(acts, matrix, shrinkage=shrinkage)
    edit = _LeaceEdit(fit.mean, fit.proj_right.T, fit.proj_left.T)
    description = (f"LEACE erasure of {name} at {_where(target)} (rank {fit.rank}, fit on {acts.shape[0]} "
                   f"observations{_states(mode)}{', shrunk covariance' if fit.shrinkage else ''})")
    return Intervention(policy, target, "erase", edit, description,
                        _with_mode({"method": "LEACE", "concept": name, "concept_columns": matrix.shape[1],
                                    "rank": fit.rank, "n_fit": acts.shape[0], "shrinkage": fit.shrinkage,
                                    "whitened_directions": fit.whitened,
                                    "guarantee": "in-sample, linear: no linear read-out of the concept beats a "
                                                 "constant on the fit observations; new observations and nonlinear "
                                                 "read-outs are not covered (rli.erasure.erasure_report measures "
                                                 "both)"}, mode))


def patch(policy: Policy, layer: LayerSpec, source_obs: Any, *,
          recurrent_state: RecurrentState | None = None) -> Intervention:
    """Activation patching: ``layer``'s output for the i-th input becomes its output on ``source_obs[i]``.

    The source activations are captured once, here (with the policy as it is now),
    and reused on every forward pass and every entry. A single source observation
    broadcasts to any batch; otherwise every batch must have ``len(source_obs)`` rows.
    A recurrent policy runs ``source_obs`` from the hidden states ``recurrent_state``
    chooses, as in :func:`rli.capture` (a plain array needs ``recurrent_state="fresh"``).

    Example:
        >>> import numpy as np, torch.nn as nn, rli
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2)))
        >>> clean, counterfactual = np.zeros((4, 3)), np.ones((4, 3))
        >>> with rli.patch(policy, 1, counterfactual) as swap:
        ...     patched = policy.act(clean)
        >>> swap.describe(), bool(np.allclose(patched, policy.act(counterfactual)))
        ('patch actor.1 with its activations on 4 source observations', True)
    """
    target = _target(policy, layer)
    source, mode = _activations(policy, target, source_obs, recurrent_state)
    n = source.shape[0]
    description = (f"patch {_where(target)} with its activations on {n} source observation{'s' if n > 1 else ''}"
                   f"{f' ({mode} recurrent states)' if mode else ''}")
    return Intervention(policy, target, "patch", _ReplaceEdit(source, _where(target)), description,
                        _with_mode({"n_source": n}, mode))
