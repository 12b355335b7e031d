"""TorchScript modules as eager ``nn.Module`` trees, so that every layer can be hooked.

Python hooks cannot reach scripted code (``register_forward_hook`` on a ScriptModule
raises), so rli rebuilds a scripted or traced module eagerly: a ``Sequential`` and
standard ``torch.nn`` layers become the real ``torch.nn`` classes, and a module with
its own ``forward`` (a residual block, a custom network) becomes a
:class:`ScriptGraphModule` that runs the module's TorchScript graph op by op, calling
its submodules as ordinary modules (so their hooks fire) and torch's own operators
(``torch.ops.aten``) for the rest. Nothing from the file is executed as Python: only
operators named in the graph run, and a graph with anything else (loops, calls to
functions outside ``torch.nn.functional``, custom classes) is refused with an
:class:`~rli.RliError` that says what to do instead.
"""

from __future__ import annotations

import functools
import inspect
import keyword
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from rli.errors import RliError

_SAVE_INSTEAD = ("save the module's state_dict (torch.save(model.state_dict(), path)) and load it with "
                 "arch=YourModuleClass (--arch module:Class --trust on the command line), or pass arch= with the "
                 "TorchScript file to rebuild it from your class")
_F_PREFIX = "__torch__.torch.nn.functional."
_SCRIPT_ATTRS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "ELU": lambda m: {"alpha": m.alpha},
    "LeakyReLU": lambda m: {"negative_slope": m.negative_slope},
    "Softplus": lambda m: {"beta": m.beta, "threshold": m.threshold},
    "Softmax": lambda m: {"dim": m.dim},
    "LogSoftmax": lambda m: {"dim": m.dim},
    "Flatten": lambda m: {"start_dim": m.start_dim, "end_dim": m.end_dim},
}
_CONTAINERS = ("Sequential", "ModuleList")
_PLAIN = (bool, int, float, str, type(None))
_Step = tuple[str, tuple[int, ...], tuple[int, ...], Any]


class ScriptGraphModule(nn.Module):
    """An eager module that runs a TorchScript module's graph, calling eager copies of its submodules.

    Parameters and buffers keep their names (``state_dict`` keys equal the scripted
    module's), submodules are eager (hooks fire on them), and ``type(module).__name__``
    is the scripted class's name (``"Block"``), so layer tables read as for the original.

    Example:
        >>> import torch, torch.nn as nn
        >>> class Block(nn.Module):
        ...     def __init__(self):
        ...         super().__init__(); self.fc = nn.Linear(3, 3)
        ...     def forward(self, x):
        ...         return x + torch.relu(self.fc(x))
        >>> eager = from_script(torch.jit.script(Block()))
        >>> type(eager).__name__, type(eager.fc).__name__
        ('Block', 'Linear')
    """

    def __init__(self, scripted: Any) -> None:
        super().__init__()
        for name, child in scripted.named_children():
            self.add_module(name, from_script(child))
        for name, param in scripted.named_parameters(recurse=False):
            self.register_parameter(name, nn.Parameter(param.detach().clone(), requires_grad=param.requires_grad))
        for name, buffer in scripted.named_buffers(recurse=False):
            self.register_buffer(name, buffer.detach().clone())
        self._programs: dict[str, tuple[tuple[int, ...], list[_Step], tuple[int, ...]]] = {}
        self._plain: dict[str, Any] = {}
        self._compile(scripted, "forward")

    def _compile(self, scripted: Any, method: str) -> None:
        if method in self._programs:
            return
        try:
            graph = scripted._c._get_method(method).graph  # freshly traced modules expose it only here
        except (AttributeError, RuntimeError):
            raise _refuse(scripted, f"it calls a method {method!r} that the file does not hold") from None
        inputs = tuple(value.unique() for value in graph.inputs())
        self._programs[method] = (inputs, [], ())  # sentinel while compiling: a method calling itself is refused, not looped
        steps, returns = self._block(scripted, graph.nodes(), graph.return_node(), inputs[0])
        self._programs[method] = (inputs, steps, returns)

    def _block(self, scripted: Any, nodes: Any, ret: Any, self_id: int) -> tuple[list[_Step], tuple[int, ...]]:
        steps = [self._step(scripted, node, self_id) for node in nodes]
        return steps, tuple(value.unique() for value in ret.inputs())

    def _step(self, scripted: Any, node: Any, self_id: int) -> _Step:
        kind = node.kind()
        ins = tuple(value.unique() for value in node.inputs())
        outs = tuple(value.unique() for value in node.outputs())
        if kind == "prim::Constant":
            type_text = str(node.output().type())
            if type_text.startswith(_F_PREFIX):
                return ("function", outs, ins, _functional(scripted, type_text[len(_F_PREFIX):]))
            try:
                value = node.output().toIValue()
            except RuntimeError:
                raise _refuse(scripted, f"it holds a constant of type {type_text}") from None
            return ("const", outs, ins, value)
        if kind == "prim::GetAttr":
            name = node.s("name")
            if ins[0] == self_id and name != "training" and name not in self._modules and \
                    name not in self._parameters and name not in self._buffers:
                value = getattr(scripted, name)
                if not (isinstance(value, (*_PLAIN, torch.Tensor)) or _plain_sequence(value)):
                    raise _refuse(scripted, f"its attribute {name!r} is a {type(value).__name__}")
                self._plain[name] = value
            return ("getattr", outs, ins, name)
        if kind == "prim::CallMethod":
            name = node.s("name")
            if ins[0] == self_id:
                self._compile(scripted, name)
            return ("method", outs, ins, name)
        if kind == "prim::CallFunction":
            return ("call", outs, ins, None)
        if kind == "prim::If":
            blocks = [self._block(scripted, block.nodes(), block.returnNode(), self_id) for block in node.blocks()]
            return ("if", outs, ins, blocks)
        if kind in _PRIM:
            return ("prim", outs, ins, kind)
        if kind.startswith("aten::"):
            return ("aten", outs, ins, _aten(scripted, node))
        raise _refuse(scripted, f"its graph uses {kind}")

    def forward(self, *args: Any) -> Any:
        return self._run("forward", args)

    def _run(self, method: str, args: tuple[Any, ...]) -> Any:
        inputs, steps, returns = self._programs[method]
        env: dict[int, Any] = {inputs[0]: self}
        env.update(zip(inputs[1:], args))
        out = self._exec(steps, returns, env)
        return out[0] if len(out) == 1 else out

    def _exec(self, steps: list[_Step], returns: tuple[int, ...], env: dict[int, Any]) -> tuple[Any, ...]:
        for op, outs, ins, payload in steps:
            args = [env[i] for i in ins]
            if op == "const":
                result: Any = payload
            elif op == "function":
                result = getattr(F, payload)
            elif op == "getattr":
                owner = args[0]
                plain = owner._plain if isinstance(owner, ScriptGraphModule) else {}
                result = plain[payload] if payload in plain else getattr(owner, payload)
            elif op == "method":
                owner = args[0]
                if owner is self or (payload != "forward" and isinstance(owner, ScriptGraphModule)):
                    result = owner._run(payload, tuple(args[1:]))
                elif payload == "forward":
                    result = owner(*args[1:])  # through __call__: hooks on the submodule fire
                else:
                    result = getattr(owner, payload)(*args[1:])
            elif op == "call":
                result = _bind_call(args[0], args[1:])
            elif op == "if":
                branch_steps, branch_returns = payload[0 if args[0] else 1]
                branch = self._exec(branch_steps, branch_returns, env)
                result = branch[0] if len(outs) == 1 else branch
            elif op == "prim":
                result = _PRIM[payload](*args)
            else:
                op_name, overload, kwarg_only = payload
                positional = len(args) - len(kwarg_only)
                result = _overload(op_name, overload)(*args[:positional], **dict(zip(kwarg_only, args[positional:])))
            if len(outs) == 1:
                env[outs[0]] = result
            else:
                env.update(zip(outs, result))
        return tuple(env[i] for i in returns)


def _raise(message: Any, *_: Any) -> None:
    raise RuntimeError(str(message))


_PRIM: dict[str, Callable[..., Any]] = {
    "prim::ListConstruct": lambda *xs: list(xs),
    "prim::TupleConstruct": lambda *xs: tuple(xs),
    "prim::ListUnpack": lambda xs: tuple(xs),
    "prim::TupleUnpack": lambda xs: tuple(xs),
    "prim::TupleIndex": lambda xs, i: xs[i],
    "prim::NumToTensor": lambda x: torch.tensor(x),
    "prim::device": lambda x: x.device,
    "prim::dtype": lambda x: x.dtype,
    "prim::unchecked_cast": lambda x: x,
    "prim::Uninitialized": lambda: None,
    "prim::RaiseException": _raise,
    "aten::Int": lambda x: int(x),
    "aten::Float": lambda x: float(x),
    "aten::Bool": lambda x: bool(x),
    "aten::ScalarImplicit": lambda x: x.item(),
    "aten::__getitem__": lambda xs, i: xs[i],
    "aten::len": lambda xs: len(xs),
    "aten::__is__": lambda a, b: a is b,
    "aten::__isnot__": lambda a, b: a is not b,
    "aten::__not__": lambda a: not a,
}


def _plain_sequence(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(item, _PLAIN) for item in value)


def _refuse(scripted: Any, why: str) -> RliError:
    return RliError(f"TorchScript module {scripted.original_name!r} cannot be opened layer by layer ({why}); "
                    + _SAVE_INSTEAD)


def _functional(scripted: Any, name: str) -> str:
    """The name of a public ``torch.nn.functional`` function the graph calls (stored by name: copies stay cheap)."""
    function = getattr(F, name, None) if name.isidentifier() and not name.startswith("_") else None
    if not inspect.isfunction(function) and not inspect.isbuiltin(function):
        raise _refuse(scripted, f"it calls torch.nn.functional.{name}, which this torch does not have")
    return name


def _bind_call(function: Callable[..., Any], args: list[Any]) -> Any:
    """Call a ``torch.nn.functional`` function with the graph's positional arguments (keyword-only ones by name)."""
    try:
        params = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return function(*args)
    positional, keywords = [], {}
    for param, value in zip(params, args):
        if param.kind is inspect.Parameter.KEYWORD_ONLY:
            keywords[param.name] = value
        else:
            positional.append(value)
    return function(*positional, **keywords)


def _aten(scripted: Any, node: Any) -> tuple[str, str, tuple[str, ...]]:
    """``(operator, overload, keyword-only argument names)`` of an ``aten::`` node, checked to exist in this torch."""
    kind, schema = node.kind(), node.schema()
    if schema == "(no schema)":
        raise _refuse(scripted, f"its graph uses {kind} without a schema")
    parsed = torch._C.parse_schema(schema)
    op, overload = kind[len("aten::"):], parsed.overload_name or "default"
    if _overload(op, overload) is None:
        raise _refuse(scripted, f"its graph uses {schema}, which this torch does not have")
    return op, overload, tuple(arg.name for arg in parsed.arguments if arg.kwarg_only)


@functools.cache
def _overload(op: str, overload: str) -> Any:
    packet = getattr(torch.ops.aten, op, None)
    return getattr(packet, overload, None) if packet is not None else None


def _class_for(name: str) -> type[ScriptGraphModule]:
    clean = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name) or "ScriptModule"
    if clean[0].isdigit() or keyword.iskeyword(clean):
        clean = f"Script_{clean}"
    return type(clean, (ScriptGraphModule,), {"__module__": __name__, "__doc__": f"TorchScript {name!r}, eager."})


def from_script(scripted: Any) -> nn.Module:
    """An eager, hookable copy of a TorchScript module (scripted or traced) with the same parameters.

    ``Sequential``/``ModuleList`` and standard ``torch.nn`` layers become the real
    ``torch.nn`` classes; any other module becomes a :class:`ScriptGraphModule`.
    Raises :class:`~rli.RliError` for graphs rli cannot run op by op.

    Example:
        >>> import torch, torch.nn as nn
        >>> eager = from_script(torch.jit.script(nn.Sequential(nn.Linear(2, 3), nn.Tanh())))
        >>> eager
        Sequential(
          (0): Linear(in_features=2, out_features=3, bias=True)
          (1): Tanh()
        )
    """
    name = scripted.original_name
    if name in _CONTAINERS:
        children = [from_script(child) for child in scripted.children()]
        container = nn.Sequential(*children) if name == "Sequential" else nn.ModuleList(children)
        return container.train(bool(scripted.training))
    module = _standard_layer(scripted, name)
    if module is None:
        module = _class_for(name)(scripted)
    return module.train(bool(scripted.training))


def _standard_layer(scripted: Any, name: str) -> nn.Module | None:
    """The real ``torch.nn`` class for a scripted standard layer whose settings can all be read back, else ``None``."""
    params = dict(scripted.named_parameters(recurse=False))
    cls = getattr(nn, name, None)
    if any(True for _ in scripted.children()) or not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        return None
    try:
        if name == "Linear" and "weight" in params:
            weight = params["weight"]
            module: nn.Module = nn.Linear(weight.shape[1], weight.shape[0], bias="bias" in params)
        elif name == "LayerNorm":
            module = nn.LayerNorm(tuple(scripted.normalized_shape), eps=scripted.eps,
                                  elementwise_affine="weight" in params)
        elif name in ("Conv1d", "Conv2d", "Conv3d"):
            module = cls(scripted.in_channels, scripted.out_channels, tuple(scripted.kernel_size),
                         stride=tuple(scripted.stride), padding=scripted.padding if isinstance(scripted.padding, str)
                         else tuple(scripted.padding), dilation=tuple(scripted.dilation), groups=scripted.groups,
                         bias="bias" in params, padding_mode=scripted.padding_mode)
        elif not params and not any(True for _ in scripted.buffers()) and _settings_known(cls, name):
            settings = _SCRIPT_ATTRS.get(name, lambda m: {})(scripted)
            if "inplace" in inspect.signature(cls).parameters and hasattr(scripted, "inplace"):
                settings["inplace"] = bool(scripted.inplace)
            module = cls(**settings)
        else:
            return None
        module.load_state_dict({k: v.detach().clone() for k, v in scripted.state_dict().items()})
    except (TypeError, RuntimeError, AttributeError, ValueError):
        return None
    return module


def _settings_known(cls: type, name: str) -> bool:
    """Whether every constructor setting of ``cls`` is one rli reads from the scripted layer (or ``inplace``)."""
    if name in _SCRIPT_ATTRS:
        return True
    try:
        params = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return False
    return all(p.name == "inplace" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params)
