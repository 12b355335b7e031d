"""`load_policy`: every form a policy arrives in → :class:`~rli.Policy`, without unpickling untrusted code.

Formats, and how each is read safely:

* Stable-Baselines3 ``.zip`` (PPO, A2C, SAC, TD3, DQN, sb3-contrib RecurrentPPO):
  the spaces and policy settings are decoded with an allow-list unpickler
  (:mod:`rli.loading.safe_pickle`), the policy is rebuilt from its class and the weights are
  read with ``torch.load(weights_only=True)``. A ``VecNormalize`` pickle saved beside
  the zip (``<stem>_vecnormalize.pkl``, SB3 ``CheckpointCallback``'s ``<prefix>_vecnormalize_<N>_steps.pkl``,
  ``vecnormalize.pkl``...: :func:`~rli.loading.normalization.vecnormalize_beside`) is read the same way
  and applied before the network.
* TorchScript ``.pt`` (scripted or traced): rebuilt as eager modules so that every layer
  can be hooked (:mod:`rli.loading.torchscript`; standard layers become ``torch.nn`` classes, custom
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

import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from rli import checks
from rli.errors import RliError
from rli.loading.arch import ArchSpec
from rli.loading.messages import first_line
from rli.loading.normalization import ObsNormalizer, read_vecnormalize, vecnormalize_beside
from rli.loading.sb3 import load_sb3_zip
from rli.loading.sb3_networks import sb3_network
from rli.loading.torch_files import load_safetensors, load_torch_file, load_torchscript
from rli.loading.torch_networks import module_network
from rli.loading.torchscript import from_script
from rli.policy import Policy
from rli.space_fit import check_env_fit, flat_shape

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.policies import BasePolicy
    from stable_baselines3.common.vec_env import VecEnv


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
    checks.flag(trust, "trust", hint=" (a string such as 'false' would count as True)")
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
        look_beside = normalizer is None or normalizer is True  # an explicit normalizer= settles it: no search
        network, found_normalizer = _load_file(path, trust=trust, arch=arch, spec=spec, device=device,
                                               look_beside=look_beside)
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
                       f"failed ({first_line(err)}); pass the right obs_shape= (or observation_space=)") from None
    if check_against:
        check_env_fit(policy, observation_space, action_space, where)
    return policy


def _device(device: Any) -> torch.device:
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError, ValueError, OverflowError) as err:
        raise RliError(f"device must be 'cpu' or 'cuda' (or a torch.device), not {device!r} ({first_line(err)})") from None
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
        return module_network(from_script(src), kind="TorchScript", **spec), None
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


def _load_file(path: Path, *, trust: bool, arch: ArchSpec, spec: dict, device: Any,
               look_beside: bool) -> tuple[Any, ObsNormalizer | None]:
    """The network in ``path`` (chosen by the file's kind) and the normaliser stored in or beside it."""
    if path.suffix == ".safetensors":
        return load_safetensors(path, arch=arch, spec=spec)
    names = _zip_names(path)
    if names is not None and "data" in names and "policy.pth" in names:
        beside = vecnormalize_beside(path) if look_beside else None  # before the heavy work: an ambiguity fails fast
        found = read_vecnormalize(beside) if beside is not None else None
        return load_sb3_zip(path, trust=trust, device=device), found
    if names is not None and any("/code/" in name or name.startswith("code/") for name in names):
        return load_torchscript(path, spec=spec, arch=arch)
    if path.suffix == ".zip":
        if names is None:
            raise RliError(f"{path} is not a zip archive, so not a Stable-Baselines3 model; the file is damaged or "
                           "of another kind")
        raise RliError(f"{path} is a zip but not a Stable-Baselines3 model (no 'data' and 'policy.pth' inside)")
    return load_torch_file(path, trust=trust, arch=arch, spec=spec)


def _zip_names(path: Path) -> list[str] | None:
    if not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except zipfile.BadZipFile as err:
        raise RliError(f"{path} is a damaged zip archive ({err}); re-save the checkpoint") from None
