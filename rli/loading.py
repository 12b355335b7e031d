"""`load_policy`: every form a policy arrives in → :class:`~rli.Policy`, without unpickling untrusted code.

Formats, and how each is read safely:

* Stable-Baselines3 ``.zip`` (PPO, A2C, SAC, TD3, DQN, sb3-contrib RecurrentPPO):
  the spaces and policy settings are decoded with an allow-list unpickler
  (:mod:`rli.safe_pickle`), the policy is rebuilt from its class and the weights are
  read with ``torch.load(weights_only=True)``. A ``VecNormalize`` pickle saved beside
  the zip (``vecnormalize.pkl``, ``<stem>_vecnormalize.pkl``, ``<stem>.vecnormalize.pkl``)
  is read the same way and applied before the network.
* TorchScript ``.pt`` (scripted or traced): rebuilt as eager modules so that every layer
  can be hooked (:mod:`rli.torchscript`; standard layers become ``torch.nn`` classes, custom
  ``forward`` methods run their graph op by op), checked against the file's own outputs;
  or loaded into ``arch=`` (the user's class).
* ``torch.save`` files: a ``state_dict`` (plus ``arch=``), a dict
  ``{"state_dict": ..., "arch": {...}}``, or a whole pickled module built from
  ``torch.nn`` layers (allow-listed for ``weights_only`` loading).
* safetensors: a ``state_dict`` plus ``arch=`` (or ``{"rli.arch": json}`` metadata).
* Live objects: an SB3 model or policy, any ``nn.Module``, a ``Policy``.

Anything that needs full unpickling raises :class:`~rli.RliError` unless ``trust=True``.
"""

from __future__ import annotations

import base64
import copy
import inspect
import io
import itertools
import json
import pickle
import warnings
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from rli.errors import RliError
from rli.normalization import ObsNormalizer
from rli.policy import Policy
from rli.safe_pickle import PickledRecord, UnsafePickleError, safe_loads
from rli.sb3_networks import sb3_network, unsupported_policy_message
from rli.space_fit import check_env_fit, flat_shape
from rli.torch_networks import module_network

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.policies import BasePolicy
    from stable_baselines3.common.vec_env import VecEnv

ArchSpec = Any
_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU, "silu": nn.SiLU,
                "leaky_relu": nn.LeakyReLU, "sigmoid": nn.Sigmoid, "identity": nn.Identity}
_SB3_ESSENTIAL = ("observation_space", "action_space", "policy_class", "policy_kwargs")
_MAX_SB3_DATA = 64 * 2**20
_TRUST_HINT = "If you trust the file, pass trust=True (this runs code stored in it)"


def load_policy(
    src: Any,
    *,
    env: Any = None,
    trust: bool = False,
    arch: ArchSpec = None,
    obs_shape: tuple[int, ...] | None = None,
    observation_space: Any = None,
    action_space: Any = None,
    normalizer: ObsNormalizer | str | Path | bool | None = None,
    device: str | torch.device = "cpu",
) -> Policy:
    """Load a policy from a file or a live object.

    Args:
        src: path to an SB3 ``.zip``, TorchScript or ``torch.save`` ``.pt``/``.pth``,
            ``.safetensors``; or an SB3 model/policy, an ``nn.Module``, a ``Policy``.
        env: gymnasium id or env whose spaces describe a plain torch module's input
            and output (optional), or an SB3 ``VecNormalize`` whose statistics to apply.
            With ``env`` (or ``action_space``) the policy is checked against it before it
            is returned: observation shape, action space, and the shape and type of the
            actions it computes; a mismatch is an :class:`~rli.RliError` naming both.
            ``Dict`` observation spaces are flattened in gymnasium's order (a plain
            module then takes the flat vector).
        trust: allow full unpickling (code execution) for files that need it.
        arch: architecture for bare weights: an ``nn.Module`` to load into, a factory
            returning one, or ``{"mlp": [28, 256, 256, 128, 4], "activation": "elu"}``.
        obs_shape, observation_space, action_space: describe a plain module's input/output.
        normalizer: an :class:`~rli.ObsNormalizer`, a path to a ``VecNormalize`` pickle,
            or ``False`` to ignore one found beside the checkpoint.
        device: where the network runs (``"cpu"`` or ``"cuda"``); results are numpy either way.

    Example:
        >>> import torch.nn as nn, rli
        >>> rli.load_policy(nn.Sequential(nn.Linear(28, 64), nn.Tanh(), nn.Linear(64, 4)))
        Policy(Sequential, obs (28,), 3 actor layers, fingerprint ...)
    """
    if not isinstance(trust, (bool, np.bool_)):
        raise RliError(f"trust must be True or False, not {trust!r} (a string such as 'false' would count as True)")
    if isinstance(src, Policy):
        return src.to(device)
    _check_description(obs_shape, observation_space, action_space)
    device = _device(device)
    check_against = action_space is not None or observation_space is not None
    where = "the given spaces"
    if env is not None:
        observation_space, action_space, env_normalizer = _spaces_from_env(env, observation_space, action_space)
        if normalizer is None and env_normalizer is not None:
            normalizer = env_normalizer
        check_against, where = True, env if isinstance(env, str) else f"the env {type(env).__name__}"
    if obs_shape is None and observation_space is not None and observation_space.shape is None:
        obs_shape = flat_shape(observation_space)  # a Dict space: a plain module takes the flat vector
    spec = dict(obs_shape=obs_shape, observation_space=observation_space, action_space=action_space)
    if isinstance(src, (str, Path)):
        path = Path(src)
        if not path.is_file():
            raise RliError(f"no such policy file: {path}")
        network, found_normalizer = _load_file(path, trust=trust, arch=arch, spec=spec, device=device)
        source = str(path)
    else:
        network, found_normalizer = _load_live(src, arch=arch, spec=spec)
        source = f"<{type(src).__name__}>"
    chosen = _choose_normalizer(normalizer, found_normalizer)
    policy = Policy(network, normalizer=chosen, source=source).to(device)
    try:
        _ = policy.layers  # one forward pass on zeros: a wrong obs_shape fails here, not at first use
    except (RuntimeError, MemoryError, ValueError) as err:
        raise RliError(f"a forward pass of the policy on zeros of shape (2, {', '.join(map(str, policy.obs_shape))}) "
                       f"failed ({_first_line(err)}); pass the right obs_shape= (or observation_space=)") from None
    if check_against:
        check_env_fit(policy, observation_space, action_space, where)
    return policy


def _device(device: Any) -> torch.device:
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError, ValueError, OverflowError) as err:
        raise RliError(f"device must be 'cpu' or 'cuda' (or a torch.device), not {device!r} ({_first_line(err)})") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise RliError(f"device {device!r} is not available: this torch has no usable CUDA; use device='cpu'")
    return chosen


def _check_description(obs_shape: Any, observation_space: Any, action_space: Any) -> None:
    from gymnasium import spaces

    if obs_shape is not None and not (isinstance(obs_shape, (tuple, list)) and obs_shape and all(
            isinstance(size, (int, np.integer)) and not isinstance(size, bool) and size > 0 for size in obs_shape)):
        raise RliError(f"obs_shape must be a tuple of positive sizes such as (28,), not {obs_shape!r}")
    for name, space in (("observation_space", observation_space), ("action_space", action_space)):
        if space is not None and not isinstance(space, spaces.Space):
            raise RliError(f"{name} must be a gymnasium space, not {type(space).__name__}")


# ---------------------------------------------------------------------- live objects
def _load_live(src: Any, *, arch: ArchSpec, spec: dict) -> tuple[Any, ObsNormalizer | None]:
    algorithm = _sb3_algorithm_base()
    if algorithm is not None and isinstance(src, algorithm):
        vec_normalize = src.get_vec_normalize_env()
        found = ObsNormalizer.from_vecnormalize(vec_normalize) if vec_normalize is not None else None
        return sb3_network(src.policy, type(src).__name__), found
    base_policy = _sb3_base_policy()
    if base_policy is not None and isinstance(src, base_policy):
        return sb3_network(src), None
    if isinstance(src, torch.jit.ScriptModule):
        return module_network(_descript(src), kind="TorchScript", **spec), None
    if isinstance(src, nn.Module):
        return module_network(src, **spec), None
    raise RliError(f"cannot load a policy from {type(src).__name__}; pass a file path, an SB3 model, "
                   "an nn.Module or an rli.Policy")


def _sb3_algorithm_base() -> type[BaseAlgorithm] | None:
    try:
        from stable_baselines3.common.base_class import BaseAlgorithm
    except ImportError:
        return None
    return BaseAlgorithm


def _sb3_base_policy() -> type[BasePolicy] | None:
    try:
        from stable_baselines3.common.policies import BasePolicy
    except ImportError:
        return None
    return BasePolicy


def _sb3_vec_env(env: Any) -> VecEnv | None:
    try:
        from stable_baselines3.common.vec_env import VecEnv
    except ImportError:
        return None
    return env if isinstance(env, VecEnv) else None


def _spaces_from_env(env: Any, observation_space: Any, action_space: Any) -> tuple[Any, Any, Any]:
    found = None
    if _sb3_vec_env(env) is not None:
        from stable_baselines3.common.vec_env import VecNormalize

        wrapper: Any = env
        while wrapper is not None and not isinstance(wrapper, VecNormalize):
            wrapper = getattr(wrapper, "venv", None)
        if wrapper is not None:
            found = ObsNormalizer.from_vecnormalize(wrapper)
        return (env.observation_space if observation_space is None else observation_space,
                env.action_space if action_space is None else action_space, found)
    from rli.envs_util import make_env

    made, owned = make_env(env)
    try:
        return (made.observation_space if observation_space is None else observation_space,
                made.action_space if action_space is None else action_space, None)
    finally:
        if owned:
            made.close()


def _choose_normalizer(normalizer: Any, found: ObsNormalizer | None) -> ObsNormalizer | None:
    if normalizer is False:
        return None
    if normalizer is None or normalizer is True:
        return found
    if isinstance(normalizer, ObsNormalizer):
        return normalizer
    if isinstance(normalizer, (str, Path)):
        return read_vecnormalize(Path(normalizer))
    try:
        return ObsNormalizer.from_vecnormalize(normalizer)
    except (KeyError, TypeError, AttributeError):
        raise RliError(f"normalizer must be an ObsNormalizer, a VecNormalize, a path to its pickle or False, "
                       f"not {type(normalizer).__name__}") from None


def read_vecnormalize(path: Path) -> ObsNormalizer | None:
    """Observation statistics from a ``VecNormalize.save`` pickle, read without running code from it."""
    replacements = {
        ("stable_baselines3.common.vec_env.vec_normalize", "VecNormalize"): PickledRecord,
        ("stable_baselines3.common.running_mean_std", "RunningMeanStd"): PickledRecord,
    }
    try:
        record = safe_loads(path.read_bytes(), replacements)
    except FileNotFoundError:
        raise RliError(f"no such VecNormalize file: {path}") from None
    except UnsafePickleError as err:
        raise RliError(f"{path} refers to {err.qualified_name}, which is not a VecNormalize statistic; "
                       "rli will not unpickle it") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise RliError(f"{path} is not a readable VecNormalize pickle ({err})") from None
    if not isinstance(record, PickledRecord) or not isinstance(record.state.get("obs_rms"), PickledRecord):
        raise RliError(f"{path} does not hold VecNormalize statistics")
    state = dict(record.state, obs_rms=record.state["obs_rms"].state)
    return ObsNormalizer.from_vecnormalize(state, source=f"VecNormalize ({path.name})")


# ----------------------------------------------------------------------------- files
def _load_file(path: Path, *, trust: bool, arch: ArchSpec, spec: dict, device: Any) -> tuple[Any, Any]:
    if path.suffix == ".safetensors":
        return _load_safetensors(path, arch=arch, spec=spec)
    names = _zip_names(path)
    if names is not None and "data" in names and "policy.pth" in names:
        return _load_sb3_zip(path, trust=trust, device=device)
    if names is not None and any("/code/" in name or name.startswith("code/") for name in names):
        return _load_torchscript(path, spec=spec, arch=arch)
    if path.suffix == ".zip":
        if names is None:
            raise RliError(f"{path} is not a zip archive, so not a Stable-Baselines3 model; the file is damaged or "
                           "of another kind")
        raise RliError(f"{path} is a zip but not a Stable-Baselines3 model (no 'data' and 'policy.pth' inside)")
    return _load_torch_file(path, trust=trust, arch=arch, spec=spec)


def _zip_names(path: Path) -> list[str] | None:
    if not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except zipfile.BadZipFile as err:
        raise RliError(f"{path} is a damaged zip archive ({err}); re-save the checkpoint") from None


def _decode_sb3_entry(path: Path, key: str, value: Any) -> Any:
    if not (isinstance(value, dict) and ":serialized:" in value):
        return value
    try:
        return safe_loads(base64.b64decode(value[":serialized:"].encode()))
    except UnsafePickleError as err:
        raise RliError(f"{path.name}: its {key} refers to {err.qualified_name}, which is not on rli's allow-list "
                       f"of inert classes. {_TRUST_HINT}") from None
    except Exception as err:  # noqa: BLE001 — any decoding failure means the same to the user
        raise RliError(f"{path.name}: cannot decode its {key} ({type(err).__name__}: {err}); the file may be "
                       f"damaged or from an incompatible SB3 version. {_TRUST_HINT}") from None


_POLICY_ALGORITHMS = (("RecurrentActorCriticPolicy", "RecurrentPPO"), ("MaskableActorCriticPolicy", "MaskablePPO"),
                      ("QRDQNPolicy", "QRDQN"), ("TQCPolicy", "TQC"), ("CrossQPolicy", "CrossQ"), ("ARSPolicy", "ARS"),
                      ("DQNPolicy", "DQN"), ("SACPolicy", "SAC"))


def _sb3_algorithm_name(policy_class: type, data: Mapping[str, Any]) -> str:
    """The algorithm that saved a zip, from its policy class and the hyperparameters in its ``data``.

    SB3 does not store the algorithm's name. The policy class tells most apart; the
    on-policy algorithms sharing ``ActorCriticPolicy`` are told apart by the settings
    only they save (TRPO: ``cg_max_steps``; PPO: ``n_epochs``; A2C: neither), and DDPG
    from TD3 by what makes it DDPG (``policy_delay=1``, no target policy noise clip).
    """
    names = {cls.__name__ for cls in policy_class.__mro__}
    for class_name, algorithm in _POLICY_ALGORITHMS:
        if class_name in names:
            return algorithm
    if "TD3Policy" in names:
        return "DDPG" if data.get("policy_delay") == 1 and data.get("target_noise_clip") == 0.0 else "TD3"
    if "ActorCriticPolicy" in names:
        if "cg_max_steps" in data:
            return "TRPO"
        return "PPO" if "n_epochs" in data else "A2C"
    raise RliError(unsupported_policy_message(policy_class.__name__))


def _sb3_algorithm_class(name: str, label: str) -> type[BaseAlgorithm]:
    import stable_baselines3

    if hasattr(stable_baselines3, name):
        return getattr(stable_baselines3, name)
    try:
        import sb3_contrib
    except ImportError:
        raise RliError(f"{label} is an sb3-contrib {name} model; install sb3-contrib (pip install sb3-contrib) "
                       "to load it") from None
    return getattr(sb3_contrib, name)


def _load_sb3_zip(path: Path, *, trust: bool, device: Any) -> tuple[Any, Any]:
    try:
        with zipfile.ZipFile(path) as archive:
            size = archive.getinfo("data").file_size
            if size > _MAX_SB3_DATA:
                raise RliError(f"{path}: its 'data' entry unpacks to {size} bytes; SB3 writes a few kilobytes of JSON "
                               "there, so the file is damaged or crafted")
            data = json.loads(archive.read("data"))
            policy_bytes = archive.read("policy.pth")
    except (zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError, KeyError, OSError, EOFError,
            zlib.error) as err:
        raise RliError(f"{path} is not a readable Stable-Baselines3 model ({_first_line(err)})") from None
    if not isinstance(data, dict):
        raise RliError(f"{path} is not a readable Stable-Baselines3 model (its 'data' entry is not a JSON object)")
    if trust:
        try:
            policy, algorithm = _load_sb3_trusted(path, data, device)
        except RliError:
            raise
        except Exception as err:  # noqa: BLE001 — whatever SB3 trips over in a damaged file means the same
            raise RliError(f"{path.name}: Stable-Baselines3 cannot load it ({type(err).__name__}: "
                           f"{_first_line(err)}); the file may be damaged or from an incompatible SB3 version") from None
    else:
        decoded = {key: _decode_sb3_entry(path, key, data.get(key)) for key in _SB3_ESSENTIAL}
        policy_class = decoded["policy_class"]
        if not isinstance(policy_class, type) or not issubclass(policy_class, nn.Module):
            raise RliError(f"{path.name} does not name an SB3 policy class; is it an SB3 model?")
        if not isinstance(decoded["policy_kwargs"] or {}, Mapping):
            raise RliError(f"{path.name}: its policy_kwargs are a {type(decoded['policy_kwargs']).__name__}, not a "
                           "dict; the file is damaged")
        kwargs = dict(decoded["policy_kwargs"] or {})
        from stable_baselines3.common.policies import ActorCriticPolicy

        algorithm = _sb3_algorithm_name(policy_class, data)
        if issubclass(policy_class, ActorCriticPolicy):
            kwargs.setdefault("use_sde", bool(data.get("use_sde", False)))
        # ARS builds its policy without a learning-rate schedule (it does not use an optimiser)
        schedule = () if algorithm == "ARS" else (lambda _: 0.0,)
        try:
            policy = policy_class(decoded["observation_space"], decoded["action_space"], *schedule, **kwargs)
        except Exception as err:  # noqa: BLE001 — a constructor failure is a broken or foreign file
            raise RliError(f"{path.name}: cannot rebuild its {policy_class.__name__} ({type(err).__name__}: {err})") from None
        state = _torch_load_weights(io.BytesIO(policy_bytes), f"{path.name}/policy.pth")
        try:
            policy.load_state_dict(state)
        except RuntimeError as err:
            raise RliError(f"{path.name}: the weights do not fit the policy it describes ({str(err).splitlines()[0]})") from None
    policy.to(device)
    return sb3_network(policy, algorithm), _sibling_vecnormalize(path)


def _load_sb3_trusted(path: Path, data: Mapping[str, Any], device: Any) -> tuple[Any, str]:
    """SB3's own ``load`` of the algorithm named by :func:`_sb3_algorithm_name` (the policy class fully unpickled)."""
    entry = data.get("policy_class")
    if not (isinstance(entry, dict) and ":serialized:" in entry):
        raise RliError(f"{path.name} does not name an SB3 policy class; is it an SB3 model?")
    try:
        policy_class = pickle.loads(base64.b64decode(entry[":serialized:"].encode()))
    except Exception as err:  # noqa: BLE001 — any decoding failure means the same to the user
        raise RliError(f"{path.name}: cannot decode its policy_class ({type(err).__name__}: {_first_line(err)}); "
                       "the file may be damaged, or need a package that is not installed") from None
    if not isinstance(policy_class, type):
        raise RliError(f"{path.name} does not name an SB3 policy class; is it an SB3 model?")
    name = _sb3_algorithm_name(policy_class, data)
    model = _sb3_algorithm_class(name, path.name).load(path, device=device)
    return model.policy, name


def _sibling_vecnormalize(path: Path) -> ObsNormalizer | None:
    for candidate in (path.with_name(f"{path.stem}_vecnormalize.pkl"), path.with_name(f"{path.stem}.vecnormalize.pkl"),
                      path.with_name("vecnormalize.pkl"), path.with_suffix("") / "vecnormalize.pkl"):
        if candidate.is_file():
            return read_vecnormalize(candidate)
    return None


def _torch_load_weights(file: Any, label: str) -> Any:
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if isinstance(file, io.BytesIO) and not _looks_pickled(file.getvalue()[:2]):
            raise RliError(f"{label} is not a readable torch file (neither a torch.save archive nor a pickle); "
                           "re-save the checkpoint") from None
        culprit = _unsupported_global(str(err))
        what = f"a pickled {culprit}" if culprit else "pickled Python objects"
        raise RliError(f"{label} holds {what}, not just tensors; rli loads weights with weights_only=True, so "
                       f"loading it would run code from the file. {_TRUST_HINT}") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as err:
        raise RliError(f"{label} is not a readable torch file ({_first_line(err)}); re-save the checkpoint") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _standard_nn_classes() -> list[type[nn.Module]]:
    return [obj for name in dir(nn) if isinstance(obj := getattr(nn, name), type) and issubclass(obj, nn.Module)]


def _load_torch_file(path: Path, *, trust: bool, arch: ArchSpec, spec: dict) -> tuple[Any, Any]:
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
                       f"pass arch=..., or: {_TRUST_HINT}") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as err:
        raise RliError(f"{path} is not a readable torch checkpoint ({_first_line(err)})") from None
    if isinstance(obj, torch.jit.ScriptModule):
        eager = _descript(obj)
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


def _load_safetensors(path: Path, *, arch: ArchSpec, spec: dict) -> tuple[Any, Any]:
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
        raise RliError(f"{label}: the weights do not fit the given arch ({_first_line(err)})") from None
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


def build_arch(arch: ArchSpec) -> nn.Module:
    """An ``nn.Module`` from an architecture spec: a module (copied), a class or factory called without
    arguments (a custom residual network, say), or ``{"mlp": sizes, "activation": name}``.

    Example:
        >>> build_arch({"mlp": [28, 256, 4], "activation": "elu"})
        Sequential(
          (0): Linear(in_features=28, out_features=256, bias=True)
          (1): ELU(alpha=1.0)
          (2): Linear(in_features=256, out_features=4, bias=True)
        )
    """
    if isinstance(arch, nn.Module):
        return copy.deepcopy(arch)
    if isinstance(arch, Mapping):
        sizes = arch.get("mlp")
        if not isinstance(sizes, (list, tuple)) or len(sizes) < 2 or not all(
                isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes):
            raise RliError(f"arch['mlp'] must list at least two positive layer sizes, got {sizes!r}")
        activation = str(arch.get("activation", "tanh")).lower()
        output = arch.get("output_activation")
        if activation not in _ACTIVATIONS or (output is not None and str(output).lower() not in _ACTIVATIONS):
            raise RliError(f"unknown activation in arch; choose from {', '.join(sorted(_ACTIVATIONS))}")
        layers: list[nn.Module] = []
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
            try:
                layers.append(nn.Linear(fan_in, fan_out))
            except (RuntimeError, MemoryError):
                raise RliError(f"arch['mlp'] = {sizes} needs a {fan_out}×{fan_in} weight matrix, more memory than "
                               "there is; check the layer sizes") from None
            if i < len(sizes) - 2:
                layers.append(_ACTIVATIONS[activation]())
        if output is not None:
            layers.append(_ACTIVATIONS[str(output).lower()]())
        return nn.Sequential(*layers)
    if isinstance(arch, str):
        raise RliError(f"arch={arch!r} is a name, not an architecture; in Python pass the class or an instance "
                       "(arch=MyNet, arch=MyNet(...)); on the command line --arch module:Class with --trust imports it")
    if callable(arch):
        name = getattr(arch, "__name__", type(arch).__name__)
        try:
            inspect.signature(arch).bind()
        except TypeError as err:
            raise RliError(f"arch {name} cannot be built without arguments ({err}); pass an instance "
                           f"or a factory such as lambda: {name}(...)") from None
        except ValueError:
            pass  # no signature to check (a builtin): call it and let it say what it needs
        module = arch()  # an exception from the user's own code reaches them unchanged
        if not isinstance(module, nn.Module):
            raise RliError(f"the arch factory returned {type(module).__name__}, not an nn.Module")
        return module
    raise RliError(f"arch must be an nn.Module, a factory or an mlp spec dict, not {type(arch).__name__}")


# ------------------------------------------------------------------------ TorchScript
def _load_torchscript(path: Path, *, spec: dict, arch: ArchSpec = None) -> tuple[Any, Any]:
    """A TorchScript file as an eager, hookable network, checked to compute what the scripted one computes.

    Without ``arch`` the module is rebuilt from its graph (:func:`rli.torchscript.from_script`);
    with ``arch`` (the user's class or factory) the file's parameters are loaded into it.
    """
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "`torch.jit.load` is deprecated", DeprecationWarning)
            scripted = torch.jit.load(str(path), map_location="cpu")
    except RuntimeError as err:
        raise RliError(f"{path} is not a readable TorchScript file ({_first_line(err)})") from None
    if arch is not None:
        module = build_arch(arch)
        try:
            module.load_state_dict({k: v.detach().clone() for k, v in scripted.state_dict().items()})
        except RuntimeError as err:
            raise RliError(f"{path}: its parameters do not fit the given arch ({_first_line(err)})") from None
    else:
        module = _descript(scripted)
    network = module_network(module, kind="TorchScript", **spec)
    _check_same_outputs(scripted, module, network, str(path))
    return network, None


def _check_same_outputs(scripted: Any, module: nn.Module, network: Any, label: str) -> None:
    """Refuse a rebuilt module whose outputs differ from the scripted original's on random observations."""
    from rli.network import evaluating, first_tensor

    generator = torch.Generator().manual_seed(0)
    dtype = torch.from_numpy(np.zeros(0, dtype=network.obs_dtype)).dtype
    obs = torch.randn((4, *network.obs_shape), generator=generator).to(dtype)
    try:
        with evaluating(module), evaluating(scripted):
            expected, got = first_tensor(scripted(obs)), first_tensor(module(obs))
    except (RuntimeError, TypeError, ValueError, IndexError) as err:
        raise RliError(f"{label}: the rebuilt network cannot run on observations of shape {tuple(network.obs_shape)} "
                       f"({_first_line(err)}); pass obs_shape= or arch=") from None
    if expected.shape != got.shape or not torch.allclose(expected.float(), got.float(), rtol=1e-4, atol=1e-5):
        diff = (expected.float() - got.float()).abs().max().item() if expected.shape == got.shape else "shape"
        raise RliError(f"{label}: the network rli rebuilt from the TorchScript file computes other outputs than the "
                       f"file (largest difference {diff}); pass arch= (your module class) to rebuild it from the code")


def _descript(scripted: Any) -> nn.Module:
    """An eager copy of a TorchScript module (Python hooks cannot reach scripted code); see :mod:`rli.torchscript`."""
    from rli.torchscript import from_script

    return from_script(scripted)
