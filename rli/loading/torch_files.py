"""Reading ``torch.save`` files, safetensors and TorchScript files into a network (weights only unless ``trust=True``).

* ``torch.save`` files: a ``state_dict`` (plus ``arch=``), a dict ``{"state_dict": ..., "arch": {...}}``,
  or a whole pickled module built from ``torch.nn`` layers (allow-listed for ``weights_only`` loading).
* safetensors: a ``state_dict`` plus ``arch=`` (or ``{"rli.arch": json}`` metadata).
* TorchScript: rebuilt as eager modules (:mod:`rli.loading.torchscript`) or loaded into ``arch=``,
  and checked against the file's own outputs.

Each reader returns ``(network, normaliser or None)`` for :func:`rli.loading.load_policy`.
"""

from __future__ import annotations

import io
import json
import pickle
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rli.errors import RliError
from rli.loading.arch import ArchSpec, build_arch
from rli.loading.messages import TRUST_HINT, first_line
from rli.loading.normalization import ObsNormalizer
from rli.loading.torch_networks import module_network
from rli.loading.torchscript import from_script
from rli.network import evaluating, first_tensor


def torch_load_weights(file: Any, label: str) -> Any:
    """Tensors from a ``torch.save`` file or buffer, read with ``weights_only=True``; ``label`` names it in errors."""
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if isinstance(file, io.BytesIO) and not _looks_pickled(file.getvalue()[:2]):
            raise RliError(f"{label} is not a readable torch file (neither a torch.save archive nor a pickle); "
                           "re-save the checkpoint") from None
        culprit = _unsupported_global(str(err))
        what = f"a pickled {culprit}" if culprit else "pickled Python objects"
        raise RliError(f"{label} holds {what}, not just tensors; rli loads weights with weights_only=True, so "
                       f"loading it would run code from the file. {TRUST_HINT}") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as err:
        raise RliError(f"{label} is not a readable torch file ({first_line(err)}); re-save the checkpoint") from None


def _standard_nn_classes() -> list[type[nn.Module]]:
    return [obj for name in dir(nn) if isinstance(obj := getattr(nn, name), type) and issubclass(obj, nn.Module)]


def load_torch_file(path: Path, *, trust: bool, arch: ArchSpec, spec: dict) -> tuple[Any, Any]:
    """A ``torch.save`` file (module, TorchScript, ``state_dict`` or ``{"state_dict": ..., "arch": ...}``) as a network."""
    try:
        if trust:
            obj = torch.load(path, map_location="cpu", weights_only=False)
        else:
            # list(): safe_globals declares an invariant list of callables
            with torch.serialization.safe_globals(list(_standard_nn_classes())):
                obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        culprit = _unsupported_global(str(err))
        with open(path, "rb") as handle:
            head = handle.read(2)
        if culprit is None and not _looks_pickled(head):
            raise RliError(f"{path} is not a readable torch checkpoint (neither a torch.save archive nor a pickle); "
                           "check the file") from None
        what = f"a pickled {culprit}" if culprit else "pickled Python objects"
        raise RliError(f"{path} contains {what}; loading it would run code from the file. Save a state_dict and "
                       f"pass arch=..., or: {TRUST_HINT}") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as err:
        raise RliError(f"{path} is not a readable torch checkpoint ({first_line(err)})") from None
    if isinstance(obj, torch.jit.ScriptModule):
        eager = from_script(obj)
        network = module_network(eager, kind="TorchScript", **spec)
        _check_same_outputs(obj, eager, network, str(path))
        return network, None
    if isinstance(obj, nn.Module):
        return module_network(obj, **spec), None
    if isinstance(obj, Mapping):
        return _from_state_dict(obj, arch=arch, spec=spec, label=str(path))
    raise RliError(f"{path} holds a {type(obj).__name__}, not a module or a state_dict")


def _looks_pickled(head: bytes) -> bool:
    """Whether a file starting with ``head`` is a ``torch.save`` archive (a zip) or a pickle (protocol 2 and up)."""
    return head.startswith(b"PK") or head[:1] == b"\x80"


def _unsupported_global(message: str) -> str | None:
    marker = "GLOBAL "
    if marker in message:
        return message.split(marker, 1)[1].split()[0]
    return None


def load_safetensors(path: Path, *, arch: ArchSpec, spec: dict) -> tuple[Any, Any]:
    """A safetensors ``state_dict`` as a network built from ``arch`` (or the file's ``rli.arch`` metadata)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise RliError(f"{path} is not a readable safetensors file ({err})") from None
    if arch is None and "rli.arch" in metadata:
        try:
            arch = json.loads(metadata["rli.arch"])
        except json.JSONDecodeError:
            raise RliError(f"{path}: its 'rli.arch' metadata is not valid JSON") from None
    return _from_state_dict(state, arch=arch, spec=spec, label=str(path))


def _from_state_dict(obj: Mapping[str, Any], *, arch: ArchSpec, spec: dict, label: str) -> tuple[Any, Any]:
    state = obj
    for key in ("state_dict", "model_state_dict", "policy_state_dict"):
        if isinstance(obj.get(key), Mapping):
            state = obj[key]
            arch = arch if arch is not None else obj.get("arch")
            break
    state = dict(state)
    normalizer = _normalizer_from_state(state, label)
    if not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise RliError(f"{label} is a dict but not a state_dict (not every value is a tensor)")
    if arch is None:
        raise RliError(f"{label} holds bare weights ({len(state)} tensors); pass arch= (an nn.Module, a factory, "
                       "or {'mlp': [in, hidden..., out], 'activation': 'tanh'}) so rli knows the network")
    if isinstance(arch, Mapping):
        # shapes checked on a memoryless ("meta") build first: a spec naming absurd sizes (as a crafted
        # file's metadata may) is refused instead of allocated
        with torch.device("meta"):
            expected = {key: tuple(value.shape) for key, value in build_arch(arch).state_dict().items()}
        given = {key: tuple(value.shape) for key, value in state.items()}
        if expected != given:
            wrong = sorted(set(expected) ^ set(given)) or [k for k in expected if expected[k] != given[k]]
            raise RliError(f"{label}: the weights do not fit the given arch (first difference at {wrong[0]!r}: "
                           f"arch {expected.get(wrong[0])}, file {given.get(wrong[0])})")
    module = build_arch(arch)
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        raise RliError(f"{label}: the weights do not fit the given arch ({first_line(err)})") from None
    return module_network(module, **spec), normalizer


def _normalizer_from_state(state: dict[str, Any], label: str) -> ObsNormalizer | None:
    keys = [key for key in state if key.startswith("obs_rms.")]
    if not keys:
        return None
    stats = {key[len("obs_rms."):]: state.pop(key) for key in keys}
    if "mean" not in stats or "var" not in stats:
        raise RliError(f"{label}: obs_rms needs both 'obs_rms.mean' and 'obs_rms.var'")
    extra = {name: float(stats[name]) for name in ("clip", "epsilon") if name in stats}
    return ObsNormalizer(mean=stats["mean"].double().numpy(), var=stats["var"].double().numpy(),
                         source=f"obs_rms in {Path(label).name}", **extra)


def load_torchscript(path: Path, *, spec: dict, arch: ArchSpec = None) -> tuple[Any, Any]:
    """A TorchScript file as an eager, hookable network, checked to compute what the scripted one computes.

    Without ``arch`` the module is rebuilt from its graph (:func:`rli.loading.torchscript.from_script`);
    with ``arch`` (the user's class or factory) the file's parameters are loaded into it.
    """
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "`torch.jit.load` is deprecated", DeprecationWarning)
            scripted = torch.jit.load(str(path), map_location="cpu")
    except RuntimeError as err:
        raise RliError(f"{path} is not a readable TorchScript file ({first_line(err)})") from None
    if arch is not None:
        module = build_arch(arch)
        try:
            module.load_state_dict({k: v.detach().clone() for k, v in scripted.state_dict().items()})
        except RuntimeError as err:
            raise RliError(f"{path}: its parameters do not fit the given arch ({first_line(err)})") from None
    else:
        module = from_script(scripted)
    network = module_network(module, kind="TorchScript", **spec)
    _check_same_outputs(scripted, module, network, str(path))
    return network, None


def _check_same_outputs(scripted: Any, module: nn.Module, network: Any, label: str) -> None:
    """Refuse a rebuilt module whose outputs differ from the scripted original's on random observations."""
    generator = torch.Generator().manual_seed(0)
    dtype = torch.from_numpy(np.zeros(0, dtype=network.obs_dtype)).dtype
    obs = torch.randn((4, *network.obs_shape), generator=generator).to(dtype)
    try:
        with evaluating(module), evaluating(scripted):
            expected, got = first_tensor(scripted(obs)), first_tensor(module(obs))
    except (RuntimeError, TypeError, ValueError, IndexError) as err:
        raise RliError(f"{label}: the rebuilt network cannot run on observations of shape {tuple(network.obs_shape)} "
                       f"({first_line(err)}); pass obs_shape= or arch=") from None
    if expected.shape != got.shape or not torch.allclose(expected.float(), got.float(), rtol=1e-4, atol=1e-5):
        diff = (expected.float() - got.float()).abs().max().item() if expected.shape == got.shape else "shape"
        raise RliError(f"{label}: the network rli rebuilt from the TorchScript file computes other outputs than the "
                       f"file (largest difference {diff}); pass arch= (your module class) to rebuild it from the code")
