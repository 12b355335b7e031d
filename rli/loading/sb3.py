"""Reading Stable-Baselines3 ``.zip`` models without unpickling untrusted code.

The spaces and policy settings stored in the zip's ``data`` entry are decoded with an
allow-list unpickler (:mod:`rli.loading.safe_pickle`), the policy is rebuilt from its class
and the weights are read with ``torch.load(weights_only=True)``; with ``trust=True`` SB3's own
``load`` reads the file.
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from rli.errors import RliError
from rli.loading.messages import TRUST_HINT, first_line
from rli.loading.safe_pickle import UnsafePickleError, safe_loads
from rli.loading.sb3_networks import sb3_network, unsupported_policy_message
from rli.loading.torch_files import torch_load_weights

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm

_SB3_ESSENTIAL = ("observation_space", "action_space", "policy_class", "policy_kwargs")
_MAX_SB3_DATA = 64 * 2**20


def _decode_sb3_entry(path: Path, key: str, value: Any) -> Any:
    if not (isinstance(value, dict) and ":serialized:" in value):
        return value
    try:
        return safe_loads(base64.b64decode(value[":serialized:"].encode()))
    except UnsafePickleError as err:
        raise RliError(f"{path.name}: its {key} refers to {err.qualified_name}, which is not on rli's allow-list "
                       f"of inert classes. {TRUST_HINT}") from None
    except Exception as err:  # noqa: BLE001 — any decoding failure means the same to the user
        raise RliError(f"{path.name}: cannot decode its {key} ({type(err).__name__}: {err}); the file may be "
                       f"damaged or from an incompatible SB3 version. {TRUST_HINT}") from None


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


def load_sb3_zip(path: Path, *, trust: bool, device: Any) -> Any:
    """The network of the SB3 model in ``path``, on ``device`` (its observation statistics are read apart:
    :func:`rli.loading.normalization.vecnormalize_beside` finds them)."""
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
        raise RliError(f"{path} is not a readable Stable-Baselines3 model ({first_line(err)})") from None
    if not isinstance(data, dict):
        raise RliError(f"{path} is not a readable Stable-Baselines3 model (its 'data' entry is not a JSON object)")
    if trust:
        try:
            policy, algorithm = _load_sb3_trusted(path, data, device)
        except RliError:
            raise
        except Exception as err:  # noqa: BLE001 — whatever SB3 trips over in a damaged file means the same
            raise RliError(f"{path.name}: Stable-Baselines3 cannot load it ({type(err).__name__}: "
                           f"{first_line(err)}); the file may be damaged or from an incompatible SB3 version") from None
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
        state = torch_load_weights(io.BytesIO(policy_bytes), f"{path.name}/policy.pth")
        try:
            policy.load_state_dict(state)
        except RuntimeError as err:
            raise RliError(f"{path.name}: the weights do not fit the policy it describes ({str(err).splitlines()[0]})") from None
    policy.to(device)
    return sb3_network(policy, algorithm)


def _load_sb3_trusted(path: Path, data: Mapping[str, Any], device: Any) -> tuple[Any, str]:
    """SB3's own ``load`` of the algorithm named by :func:`_sb3_algorithm_name` (the policy class fully unpickled)."""
    entry = data.get("policy_class")
    if not (isinstance(entry, dict) and ":serialized:" in entry):
        raise RliError(f"{path.name} does not name an SB3 policy class; is it an SB3 model?")
    try:
        policy_class = pickle.loads(base64.b64decode(entry[":serialized:"].encode()))
    except Exception as err:  # noqa: BLE001 — any decoding failure means the same to the user
        raise RliError(f"{path.name}: cannot decode its policy_class ({type(err).__name__}: {first_line(err)}); "
                       "the file may be damaged, or need a package that is not installed") from None
    if not isinstance(policy_class, type):
        raise RliError(f"{path.name} does not name an SB3 policy class; is it an SB3 model?")
    name = _sb3_algorithm_name(policy_class, data)
    model = _sb3_algorithm_class(name, path.name).load(path, device=device)
    return model.policy, name
