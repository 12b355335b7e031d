"""The untrained-network control: a copy of a policy re-initialised the way its builder initialises it.

A probe on an untrained network tells how much of a target a random network of the same
architecture already decodes (random features keep much of their input). The control is
only fair if the random network is drawn from the distribution training started from:

- **SB3 policies** are rebuilt by their own class from their own constructor arguments
  (``policy._get_constructor_parameters()``, what ``BasePolicy.load`` uses; the saved
  ``policy_kwargs`` such as ``ortho_init``, ``net_arch``, ``features_extractor_class``),
  with python, numpy and torch seeded as SB3's ``set_random_seed(seed)`` seeds them, and
  the copy takes the rebuilt parameters. So an ``ActorCriticPolicy`` (PPO, A2C, TRPO,
  MaskablePPO, RecurrentPPO) gets SB3's orthogonal init (gain √2 for the features
  extractor, ``NatureCNN`` included, and the MLP layers, 0.01 for ``action_net``, 1 for
  ``value_net``, zero biases; a RecurrentPPO's LSTMs keep PyTorch's defaults, as
  sb3-contrib builds them; ``ortho_init=False`` gives PyTorch's defaults everywhere), and
  SAC, TD3, DQN, QRDQN, TQC get PyTorch's default init, as SB3 builds them. The parameters
  are bit-identical to ``PPO(..., seed=seed).policy`` of the same class and kwargs.
- **Plain torch modules**: ``reset_parameters()`` (or torch's ``_reset_parameters()``, as
  ``nn.MultiheadAttention`` names it) on every module that has one. Parameters owned by a
  module with neither (a custom module's own ``nn.Parameter``, the traced ops of a
  TorchScript network rebuilt by :mod:`rli.loading.torchscript`) keep their trained values: the
  copy says so and an :class:`UntrainedInitWarning` names them, since such a control is
  partly trained and weaker. A copy in which nothing could be re-initialised is refused.
- **A user-given initialiser** ``init(module, seed)``, called on the copy's root module
  (on the CPU, with torch seeded by ``seed``), for networks whose builder rli cannot know.

The initialiser used is named on the copy (:attr:`UntrainedPolicy.untrained_init`), so
results can state it.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import random
import types
import warnings
from collections.abc import Callable, Iterator
from dataclasses import fields
from typing import TYPE_CHECKING, Any, TypeGuard

import numpy as np
import torch
from torch import nn

from rli.errors import RliError
from rli.network import Network
from rli.policy import Policy
from rli.threads import one_torch_thread

if TYPE_CHECKING:
    from stable_baselines3.common.policies import BasePolicy

#: An untrained-control initialiser: ``None`` / ``"own"`` (the builder's own), ``"reset_parameters"`` (PyTorch's
#: defaults on every module that has them, SB3 policies included) or a callable ``init(module, seed)``.
UntrainedInit = str | Callable[[nn.Module, int], Any] | None
INIT_NAMES = ("own", "reset_parameters")
_MAX_SEED = 2**63


class UntrainedInitWarning(UserWarning):
    """An untrained-network control that keeps some trained parameters (a weaker control), or that could not
    be built with the policy's own initialiser."""


class UntrainedPolicy(Policy):
    """A :class:`~rli.Policy` that is an untrained copy of another; :attr:`untrained_init` names its initialiser."""

    untrained_init: str


def clone_network(net: Network) -> Network:
    """Deep copy of a network whose run/step closures call the copied modules, not the original ones.

    ``copy.deepcopy`` shares functions, so a ``run_actor`` lambda would keep calling the
    original module. Functions with closures are re-created with deep-copied cells
    (registered in the memo first, so every reference to them is rebound the same way).

    Example:
        >>> import torch, torch.nn as nn, rli
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(3, 2)))
        >>> twin = clone_network(policy._net)
        >>> twin.root is policy.module, torch.equal(twin.root[0].weight, policy.module[0].weight)
        (False, True)
    """
    memo: dict[int, Any] = {}

    def rebind(value: Any) -> None:
        if isinstance(value, types.FunctionType) and value.__closure__ and id(value) not in memo:
            cells = tuple(types.CellType() for _ in value.__closure__)
            clone = types.FunctionType(value.__code__, value.__globals__, value.__name__, value.__defaults__, cells)
            clone.__kwdefaults__ = copy.deepcopy(value.__kwdefaults__, memo)
            memo[id(value)] = clone
            memo.setdefault(id(memo), []).append(value)
            for new, old in zip(cells, value.__closure__):
                rebind(old.cell_contents)
                new.cell_contents = copy.deepcopy(old.cell_contents, memo)
        elif hasattr(value, "__dataclass_fields__"):
            for f in fields(value):
                rebind(getattr(value, f.name))

    copy.deepcopy(net.root, memo)
    rebind(net)
    return copy.deepcopy(net, memo)


def is_sb3_policy(module: nn.Module) -> TypeGuard[BasePolicy]:
    """Whether ``module`` is a Stable-Baselines3 (or sb3-contrib) policy; SB3 is not imported to tell.

    Example:
        >>> import torch.nn as nn
        >>> is_sb3_policy(nn.Linear(2, 2))
        False
    """
    return any(cls.__name__ == "BasePolicy" and cls.__module__.startswith("stable_baselines3")
               for cls in type(module).__mro__)


def check_init(init: Any) -> None:
    """Refuse an untrained-control initialiser that is none of ``None``, ``"own"``, ``"reset_parameters"``, a callable.

    Cheap: call it before heavy work.

    Example:
        >>> check_init("reset_parameters")
        >>> try:
        ...     check_init("xavier")
        ... except RliError as err:
        ...     print(str(err)[:30])
        untrained_init must be None or
    """
    if init is None or callable(init) or (isinstance(init, str) and init in INIT_NAMES):
        return
    raise RliError("untrained_init must be None or 'own' (the policy's own initialiser), 'reset_parameters' (PyTorch "
                   f"defaults) or a callable init(module, seed), not {init!r}")


def _check_seed(seed: Any) -> int:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < _MAX_SEED:
        raise RliError(f"the untrained-copy seed must be an integer in [0, 2**63), not {seed!r}")
    return int(seed)


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """python, numpy and torch seeded with ``seed`` as SB3's ``set_random_seed`` does; every state restored after."""
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng():
            random.seed(seed)
            np.random.seed(seed % 2**32)
            torch.manual_seed(seed)
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


@contextlib.contextmanager
def _on_cpu(root: nn.Module) -> Iterator[None]:
    """Run the initialiser on the CPU (the same numbers whatever device the policy lives on), then move back."""
    devices = {t.device for t in (*root.parameters(), *root.buffers())}
    moved = any(d.type != "cpu" for d in devices)
    if moved:
        root.to("cpu")
    try:
        yield
    finally:
        if moved:
            root.to(next(d for d in devices if d.type != "cpu"))


def _reset_all(root: nn.Module) -> tuple[int, list[str]]:
    """``reset_parameters()`` on every module that has it → (modules reset, names of parameters kept trained)."""
    reset, kept = 0, []
    for name, module in root.named_modules():
        method = getattr(module, "reset_parameters", None) or getattr(module, "_reset_parameters", None)
        if callable(method):
            method()
            reset += 1
            continue
        kept += [f"{name}.{p}" if name else p for p, _ in module.named_parameters(recurse=False)]
    return reset, kept


def _sb3_description(root: nn.Module) -> str:
    cls = type(root).__name__
    if getattr(root, "ortho_init", None) is True:
        text = ("SB3's orthogonal init (gain 1.41 features extractor and MLP, 0.01 action_net, 1 value_net, "
                "zero biases")
        lstm = [n for n in ("lstm_actor", "lstm_critic") if isinstance(getattr(root, n, None), nn.Module)]
        text += f"; {', '.join(lstm)}: PyTorch defaults)" if lstm else ")"
    elif getattr(root, "ortho_init", None) is False:
        text = "PyTorch defaults (ortho_init=False)"
    else:
        text = "PyTorch defaults"
    return f"{cls} rebuilt as SB3 builds it: {text}"


def _constructor_arguments(root: BasePolicy) -> dict[str, Any]:
    """SB3's ``_get_constructor_parameters()`` completed from the instance where a class leaves arguments out
    (sb3-contrib's recurrent policy omits its LSTM's size, layers and sharing; its ``load`` reads them from the
    saved ``policy_kwargs``, which a live policy does not carry)."""
    params = dict(root._get_constructor_parameters())
    lstm = getattr(root, "lstm_actor", None)
    if isinstance(lstm, nn.LSTM):
        params.setdefault("lstm_hidden_size", lstm.hidden_size)
        params.setdefault("n_lstm_layers", lstm.num_layers)
    accepted = inspect.signature(type(root).__init__).parameters
    for name in ("shared_lstm", "enable_critic_lstm", "lstm_kwargs"):
        if name in accepted and name not in params and hasattr(root, name):
            params[name] = getattr(root, name)
    return params


def _rebuild_sb3(root: BasePolicy, seed: int) -> str | None:
    """Load into ``root`` the parameters of a fresh SB3 policy of its class and constructor arguments; ``None`` if
    SB3 cannot rebuild it (the reason is then warned about by the caller)."""
    try:
        params = _constructor_arguments(root)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the constructor's warnings were shown when the policy was built
            with _seeded(seed), one_torch_thread():
                fresh = type(root)(**params)
        root.load_state_dict(fresh.state_dict())
    except Exception as err:  # noqa: BLE001 — any failure of a third-party constructor means the same here
        return f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
    return None


def untrained_copy(policy: Policy, seed: int, init: UntrainedInit = None) -> UntrainedPolicy:
    """A copy of ``policy`` re-initialised with ``seed`` as its builder initialises it (see the module docstring).

    ``init``: ``None`` / ``"own"`` (SB3's own construction for SB3 policies, ``reset_parameters`` for plain
    torch), ``"reset_parameters"`` (PyTorch defaults on every module, SB3 policies too), or a callable
    ``init(module, seed)`` that re-initialises the module in place. The original is untouched (its
    fingerprint does not change) and the global python, numpy and torch RNG states are restored. The copy's
    ``untrained_init`` names what was used and ``source`` repeats it.

    Example:
        >>> import torch.nn as nn, rli
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2)))
        >>> twin = untrained_copy(policy, seed=0)
        >>> twin.untrained_init, twin.fingerprint != policy.fingerprint
        ('PyTorch defaults (reset_parameters on 2 modules)', True)
    """
    seed = _check_seed(seed)
    check_init(init)
    net = clone_network(policy._net)
    root = net.root
    before = {name: p.detach().clone() for name, p in root.named_parameters()} if callable(init) else {}
    with _on_cpu(root):
        description = _initialise(root, seed, init)
    if before and all(torch.equal(p.detach().cpu(), before[name].cpu()) for name, p in root.named_parameters()):
        raise RliError(f"untrained_init ({description}) changed no parameter of the policy's copy, so the control "
                       "would be the trained network itself; pass a callable init(module, seed) that re-initialises "
                       "the module in place, or controls=False")
    clone = UntrainedPolicy(net, normalizer=policy.normalizer,
                            source=f"untrained copy (seed {seed}, {description}) of {policy.source}")
    clone.untrained_init = description
    _check_runs_own_modules(policy, clone)
    return clone


def _initialise(root: nn.Module, seed: int, init: UntrainedInit) -> str:
    if callable(init):
        with _seeded(seed):
            init(root, seed)
        return f"user init {getattr(init, '__qualname__', None) or repr(init)}"
    if (init is None or init == "own") and is_sb3_policy(root):
        failure = _rebuild_sb3(root, seed)
        if failure is None:
            return _sb3_description(root)
        warnings.warn(f"SB3 could not rebuild this {type(root).__name__} from its constructor arguments ({failure}), "
                      "so the untrained control uses PyTorch's reset_parameters, not SB3's own init; pass "
                      "untrained_init=a callable init(module, seed) to say how it was built", UntrainedInitWarning,
                      stacklevel=4)
        prefix = f"not SB3's own init (rebuild failed: {failure}): "
    else:
        prefix = ""
    with _seeded(seed):
        reset, kept = _reset_all(root)
    if reset == 0:
        raise RliError(f"cannot build the untrained-network control for this {type(root).__name__}: none of its modules "
                       "has reset_parameters(); pass untrained_init=a callable init(module, seed), or controls=False")
    description = f"{prefix}PyTorch defaults (reset_parameters on {reset} modules)"
    if kept:
        shown = ", ".join(kept[:5]) + (f" and {len(kept) - 5} more" if len(kept) > 5 else "")
        description += f"; {len(kept)} parameters kept trained (no reset_parameters): {shown}"
        warnings.warn(f"the untrained control of this {type(root).__name__} keeps {len(kept)} trained parameters "
                      f"({shown}): their modules have no reset_parameters(), so the control is partly trained and "
                      "weaker; pass untrained_init=a callable init(module, seed) to re-initialise them",
                      UntrainedInitWarning, stacklevel=4)
    return description


def _check_runs_own_modules(policy: Policy, clone: Policy) -> None:
    """Refuse a copy whose forward pass still calls the original's modules (a closure rli could not rebind)."""
    net = clone._net
    called = []
    handles = [m.register_forward_hook(lambda *_: called.append(True)) for m in policy.module.modules()]
    try:
        with clone.inference():
            net.run_actor(clone._tensor(np.zeros((1, *clone.obs_shape), dtype=net.obs_dtype)))
    finally:
        for handle in handles:
            handle.remove()
    if called:
        raise RliError("cannot build the untrained-network control for this policy: a copy of it still runs the "
                       "original modules; pass controls=False")
