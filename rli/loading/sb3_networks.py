"""Reading the actor and critic trunks out of Stable-Baselines3 policies.

Integer layer indices follow the actor's forward order the way papers number them:
for ``PPO("MlpPolicy", policy_kwargs={"net_arch": [64, 64, 64]})`` indices 0–5 are
``mlp_extractor.policy_net.0`` … ``.5`` (Linear, Tanh, Linear, Tanh, Linear, Tanh)
and 6 is ``action_net``. A features extractor that only flattens is skipped; a real
one (``NatureCNN``, a custom MLP) comes first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from rli.network import (
    Network,
    RecurrentSteps,
    evaluating,
    is_leaf,
    is_pass_through,
    is_plain_stack,
    leaf_names,
    trace_forward,
)
from rli.space_fit import flat_dtype, flat_shape

if TYPE_CHECKING:
    from stable_baselines3.common.policies import BasePolicy


def _names(root: nn.Module, path: str) -> list[str]:
    """Layers of the trunk part at ``path``; none for an empty container (CnnPolicy's default ``policy_net``)."""
    module = root.get_submodule(path)
    if is_pass_through(module) and isinstance(module, nn.Sequential):
        return []
    if is_leaf(module):
        return [path]
    return leaf_names(module, path)


def _zeros_like_space(space: Any, device: Any) -> Any:
    if isinstance(space, spaces.Dict):
        return {key: _zeros_like_space(sub, device) for key, sub in space.spaces.items()}
    return torch.zeros((2, *space.shape), dtype=torch.float32, device=device)


def _extractor_names(root: BasePolicy, path: str) -> list[str]:
    """Layers of a features extractor in the order they produce outputs (none for one that only flattens).

    A ``NatureCNN`` or a user's extractor is traced once on zeros, so that layers are in
    forward order and an output the extractor computes itself (``tanh(self.net(x))``, a
    concatenation, a residual sum) is a layer of its own.
    """
    from stable_baselines3.common.preprocessing import preprocess_obs
    from stable_baselines3.common.torch_layers import FlattenExtractor

    try:
        module = root.get_submodule(path)
    except AttributeError:
        return []
    if isinstance(module, FlattenExtractor):
        return []
    if is_plain_stack(module) and isinstance(module, nn.Sequential):
        return _names(root, path)
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    zeros = _zeros_like_space(root.observation_space, device)
    normalize = bool(getattr(root, "normalize_images", True))
    with evaluating(module):
        trace = trace_forward(root, lambda: module(preprocess_obs(zeros, root.observation_space,
                                                                  normalize_images=normalize)), prefix=path)
    return trace.order


def _to_actions(policy: Any) -> Any:
    """Post-processing of SB3's ``BasePolicy.predict``: reshape, then unscale (squashed) or clip."""
    action_space = policy.action_space

    def to_actions(raw: np.ndarray) -> np.ndarray:
        actions = raw.reshape((-1, *action_space.shape))
        if isinstance(action_space, spaces.Box):
            if policy.squash_output:
                return policy.unscale_action(actions)
            return np.clip(actions, action_space.low, action_space.high)
        return actions

    return to_actions


def _sb3_to_tensor_dtype(observation_space: Any) -> np.dtype:
    return np.dtype(observation_space.dtype) if getattr(observation_space, "dtype", None) is not None else np.dtype(np.float32)


def _actor_critic_mode(policy: Any, x: Any) -> Any:
    """Deterministic actions of an ``ActorCriticPolicy``.

    For a diagonal Gaussian (Box actions, no gSDE) the mode is the network's mean
    output, so rli computes it directly: the same modules, the same arithmetic as
    ``_predict(deterministic=True)``, without building a distribution object per step
    (a third of the rollout time for small policies). Other distributions use ``_predict``.
    """
    from stable_baselines3.common.distributions import DiagGaussianDistribution
    from stable_baselines3.common.policies import BasePolicy

    if type(policy.action_dist) is not DiagGaussianDistribution:
        return lambda obs: policy._predict(x(obs), deterministic=True)

    def mean_actions(obs: torch.Tensor) -> torch.Tensor:
        features = BasePolicy.extract_features(policy, x(obs), policy.pi_features_extractor)
        return policy.action_net(policy.mlp_extractor.forward_actor(features))

    return mean_actions


def sb3_network(policy: Any, algorithm: str | None = None) -> Network:
    """Describe an SB3 policy (``model.policy``) as a :class:`~rli.network.Network`."""
    from stable_baselines3.common.policies import ActorCriticPolicy
    from stable_baselines3.dqn.policies import DQNPolicy
    from stable_baselines3.sac.policies import SACPolicy
    from stable_baselines3.td3.policies import TD3Policy

    x = _input_adapter(policy.observation_space)
    is_dict = isinstance(policy.observation_space, spaces.Dict)
    common = dict(
        root=policy,
        obs_shape=flat_shape(policy.observation_space),
        to_actions=_to_actions(policy),
        observation_space=policy.observation_space,
        action_space=policy.action_space,
        obs_dtype=flat_dtype(policy.observation_space) if is_dict else _sb3_to_tensor_dtype(policy.observation_space),
    )
    recurrent = hasattr(policy, "lstm_actor")
    if isinstance(policy, ActorCriticPolicy) or _is_maskable(policy):
        shared = policy.share_features_extractor
        pi_fe = "features_extractor" if shared else "pi_features_extractor"
        vf_fe = "features_extractor" if shared else "vf_features_extractor"
        actor = _extractor_names(policy, pi_fe)
        critic = _extractor_names(policy, vf_fe)
        if recurrent:
            actor += ["lstm_actor"]
            if getattr(policy, "lstm_critic", None) is not None:
                critic += ["lstm_critic"]
            elif getattr(policy, "critic", None) is not None:
                critic += ["critic"]
        actor += [*_names(policy, "mlp_extractor.policy_net"), "action_net"]
        critic += [*_names(policy, "mlp_extractor.value_net"), "value_net"]
        if recurrent:
            return _recurrent_network(policy, algorithm or "RecurrentPPO", actor, critic, common, x)
        name = algorithm or "ActorCriticPolicy"
        return Network(
            kind=name,
            actor=actor,
            critic=critic,
            run_actor=_actor_critic_mode(policy, x),
            run_critic=lambda obs: policy.predict_values(x(obs)),
            **common,
        )
    if isinstance(policy, (SACPolicy, TD3Policy)):
        is_sac = isinstance(policy, SACPolicy)
        actor = _extractor_names(policy, "actor.features_extractor")
        actor += [*_names(policy, "actor.latent_pi"), "actor.mu"] if is_sac else _names(policy, "actor.mu")
        critic = _extractor_names(policy, "critic.features_extractor") + _names(policy, "critic.qf0")

        def run_critic(obs: torch.Tensor) -> torch.Tensor:
            obs = x(obs)
            return policy.critic(obs, policy.actor(obs, deterministic=True) if is_sac else policy.actor(obs))[0]

        return Network(
            kind=algorithm or ("SAC" if is_sac else "TD3"),
            actor=actor,
            critic=critic,
            run_actor=lambda obs: policy._predict(x(obs), deterministic=True),
            run_critic=run_critic,
            **common,
        )
    if isinstance(policy, DQNPolicy):
        actor = _extractor_names(policy, "q_net.features_extractor") + _names(policy, "q_net.q_net")
        return Network(
            kind=algorithm or "DQN",
            actor=actor,
            run_actor=lambda obs: policy._predict(x(obs), deterministic=True),
            **common,
        )
    contrib = _contrib_network(policy, algorithm, common, x)
    if contrib is not None:
        return contrib
    from rli.errors import RliError

    raise RliError(unsupported_policy_message(type(policy).__name__))


SUPPORTED_SB3 = ("PPO, A2C, TRPO, MaskablePPO (ActorCriticPolicy), RecurrentPPO, DQN, QRDQN, SAC, TD3, DDPG, TQC, "
                 "CrossQ and ARS")


def unsupported_policy_message(class_name: str) -> str:
    """The one message for an SB3 policy class rli cannot read (the same whether the file is trusted or not)."""
    return (f"unsupported SB3 policy class {class_name}: rli reads the policies of {SUPPORTED_SB3}; "
            "wrap other networks as a plain torch nn.Module and pass that to rli.load_policy")


def _input_adapter(observation_space: Any) -> Any:
    """What turns rli's flat observation tensor into the network's input: unflattening for a Dict space."""
    if not isinstance(observation_space, spaces.Dict):
        return lambda obs: obs
    from rli.space_fit import dict_entries, unflatten_tensor

    dict_entries(observation_space)  # an unsupported entry is refused at load time, not at first use
    return lambda obs: unflatten_tensor(observation_space, obs) if isinstance(obs, torch.Tensor) else obs


def _is_maskable(policy: Any) -> bool:
    return any(cls.__name__ == "MaskableActorCriticPolicy" for cls in type(policy).__mro__)


def _contrib_network(policy: Any, algorithm: str | None, common: dict, x: Any) -> Network | None:
    """sb3-contrib's other policies: QRDQN (quantile Q-network), TQC and CrossQ (SAC-like actors), ARS."""
    act = lambda obs: policy._predict(x(obs), deterministic=True)  # noqa: E731 — SB3's own deterministic action
    if hasattr(policy, "quantile_net"):
        actor = _extractor_names(policy, "quantile_net.features_extractor") + _names(policy, "quantile_net.quantile_net")
        return Network(kind=algorithm or "QRDQN", actor=actor, run_actor=act, **common)
    actor_module = getattr(policy, "actor", None)
    if isinstance(actor_module, nn.Module) and hasattr(actor_module, "latent_pi") and hasattr(actor_module, "mu"):
        actor = _extractor_names(policy, "actor.features_extractor") + _names(policy, "actor.latent_pi")
        actor += _names(policy, "actor.mu")
        critic = _extractor_names(policy, "critic.features_extractor") + _names(policy, "critic.qf0")

        def run_critic(obs: torch.Tensor) -> Any:
            obs = x(obs)
            return policy.critic(obs, policy.actor(obs, deterministic=True))

        tqc = any(cls.__name__ == "TQCPolicy" for cls in type(policy).__mro__)
        kind = algorithm or ("TQC" if tqc else "CrossQ" if type(policy).__name__ == "CrossQPolicy" else
                             type(policy).__name__)
        return Network(kind=kind, actor=actor, critic=critic, run_actor=act, run_critic=run_critic, **common)
    if hasattr(policy, "action_net") and not hasattr(policy, "mlp_extractor"):
        actor = _extractor_names(policy, "features_extractor") + _names(policy, "action_net")
        return Network(kind=algorithm or "ARS", actor=actor, run_actor=act, **common)
    return None


def _recurrent_network(policy: Any, kind: str, actor: list[str], critic: list[str], common: dict,
                       x: Any = lambda obs: obs) -> Network:
    def zeros(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        layers, _, hidden = policy.lstm_hidden_state_shape
        z = torch.zeros(layers, n, hidden, device=policy.device)
        return (z, z.clone())

    def step(obs: torch.Tensor, state: Any, episode_start: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """One step for a batch of environments (actor LSTM state only, as SB3's ``predict``)."""
        return policy._predict(x(obs), lstm_states=state, episode_starts=episode_start, deterministic=True)

    def run_actor(obs: torch.Tensor) -> torch.Tensor:
        return step(obs, zeros(obs.shape[0]), torch.ones(obs.shape[0], device=obs.device))[0]

    def run_critic(obs: torch.Tensor) -> torch.Tensor:
        return policy.predict_values(x(obs), zeros(obs.shape[0]), torch.ones(obs.shape[0], device=obs.device))

    def critic_step(obs: torch.Tensor, state: Any, episode_start: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """``predict_values`` that also returns the next state of the LSTM the critic reads (as SB3's rollouts carry)."""
        lstm = policy.lstm_critic if policy.lstm_critic is not None else policy.lstm_actor if policy.shared_lstm else None
        if lstm is None:
            return policy.predict_values(x(obs), state, episode_start), state
        from stable_baselines3.common.policies import BasePolicy

        features = BasePolicy.extract_features(policy, x(obs), policy.vf_features_extractor)
        latent, state = policy._process_sequence(features, state, episode_start, lstm)
        return policy.value_net(policy.mlp_extractor.forward_critic(latent)), state

    return Network(
        kind=kind,
        actor=actor,
        critic=critic,
        run_actor=run_actor,
        run_critic=run_critic,
        recurrent=RecurrentSteps(initial_state=zeros, step=step, critic_step=critic_step),
        **common,
    )
