"""Reading the actor and critic trunks out of Stable-Baselines3 policies.

Integer layer indices follow the actor's forward order the way papers number them:
for ``PPO("MlpPolicy", policy_kwargs={"net_arch": [64, 64, 64]})`` indices 0–5 are
``mlp_extractor.policy_net.0`` … ``.5`` (Linear, Tanh, Linear, Tanh, Linear, Tanh)
and 6 is ``action_net``. A features extractor that only flattens is skipped; a real
one (``NatureCNN``, a custom MLP) comes first.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from rli.network import Network, RecurrentSteps, leaf_names


def _names(root: nn.Module, path: str) -> list[str]:
    module = root.get_submodule(path)
    if isinstance(module, nn.RNNBase) or not any(True for _ in module.children()):
        return [path]
    return leaf_names(module, path)


def _extractor_names(root: nn.Module, path: str) -> list[str]:
    from stable_baselines3.common.torch_layers import FlattenExtractor

    try:
        module = root.get_submodule(path)
    except AttributeError:
        return []
    if isinstance(module, FlattenExtractor):
        return []
    return _names(root, path)


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


def _actor_critic_mode(policy: Any) -> Any:
    """Deterministic actions of an ``ActorCriticPolicy``.

    For a diagonal Gaussian (Box actions, no gSDE) the mode is the network's mean
    output, so rli computes it directly: the same modules, the same arithmetic as
    ``_predict(deterministic=True)``, without building a distribution object per step
    (a third of the rollout time for small policies). Other distributions use ``_predict``.
    """
    from stable_baselines3.common.distributions import DiagGaussianDistribution
    from stable_baselines3.common.policies import BasePolicy

    if type(policy.action_dist) is not DiagGaussianDistribution:
        return lambda obs: policy._predict(obs, deterministic=True)

    def mean_actions(obs: torch.Tensor) -> torch.Tensor:
        features = BasePolicy.extract_features(policy, obs, policy.pi_features_extractor)
        return policy.action_net(policy.mlp_extractor.forward_actor(features))

    return mean_actions


def sb3_network(policy: Any, algorithm: str | None = None) -> Network:
    """Describe an SB3 policy (``model.policy``) as a :class:`~rli.network.Network`."""
    from stable_baselines3.common.policies import ActorCriticPolicy
    from stable_baselines3.dqn.policies import DQNPolicy
    from stable_baselines3.sac.policies import SACPolicy
    from stable_baselines3.td3.policies import TD3Policy

    if isinstance(policy.observation_space, spaces.Dict):
        from rli.errors import RliError

        raise RliError("Dict observation spaces are not supported yet: rli policies take array observations")
    common = dict(
        root=policy,
        obs_shape=tuple(policy.observation_space.shape),
        to_actions=_to_actions(policy),
        observation_space=policy.observation_space,
        action_space=policy.action_space,
        obs_dtype=_sb3_to_tensor_dtype(policy.observation_space),
    )
    recurrent = hasattr(policy, "lstm_actor")
    if isinstance(policy, ActorCriticPolicy):
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
        actor += _names(policy, "mlp_extractor.policy_net") + ["action_net"]
        critic += _names(policy, "mlp_extractor.value_net") + ["value_net"]
        if recurrent:
            return _recurrent_network(policy, algorithm or "RecurrentPPO", actor, critic, common)
        name = algorithm or "ActorCriticPolicy"
        return Network(
            kind=name,
            actor=actor,
            critic=critic,
            run_actor=_actor_critic_mode(policy),
            run_critic=policy.predict_values,
            **common,
        )
    if isinstance(policy, (SACPolicy, TD3Policy)):
        is_sac = isinstance(policy, SACPolicy)
        actor = _extractor_names(policy, "actor.features_extractor")
        actor += _names(policy, "actor.latent_pi") + ["actor.mu"] if is_sac else _names(policy, "actor.mu")
        critic = _extractor_names(policy, "critic.features_extractor") + _names(policy, "critic.qf0")

        def run_critic(obs: torch.Tensor) -> torch.Tensor:
            return policy.critic(obs, policy.actor(obs, deterministic=True) if is_sac else policy.actor(obs))[0]

        return Network(
            kind=algorithm or ("SAC" if is_sac else "TD3"),
            actor=actor,
            critic=critic,
            run_actor=lambda obs: policy._predict(obs, deterministic=True),
            run_critic=run_critic,
            **common,
        )
    if isinstance(policy, DQNPolicy):
        actor = _extractor_names(policy, "q_net.features_extractor") + _names(policy, "q_net.q_net")
        return Network(
            kind=algorithm or "DQN",
            actor=actor,
            run_actor=lambda obs: policy._predict(obs, deterministic=True),
            **common,
        )
    from rli.errors import RliError

    raise RliError(
        f"unsupported SB3 policy class {type(policy).__name__}: rli reads ActorCriticPolicy (PPO, A2C), "
        "RecurrentActorCriticPolicy (RecurrentPPO), SACPolicy, TD3Policy and DQNPolicy; "
        "wrap other networks as a plain torch nn.Module"
    )


def _recurrent_network(policy: Any, kind: str, actor: list[str], critic: list[str], common: dict) -> Network:
    def zeros(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        layers, _, hidden = policy.lstm_hidden_state_shape
        z = torch.zeros(layers, n, hidden, device=policy.device)
        return (z, z.clone())

    def step(obs: torch.Tensor, state: Any, episode_start: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """One step for a batch of environments (actor LSTM state only, as SB3's ``predict``)."""
        return policy._predict(obs, lstm_states=state, episode_starts=episode_start, deterministic=True)

    def run_actor(obs: torch.Tensor) -> torch.Tensor:
        return step(obs, zeros(obs.shape[0]), torch.ones(obs.shape[0], device=obs.device))[0]

    def run_critic(obs: torch.Tensor) -> torch.Tensor:
        return policy.predict_values(obs, zeros(obs.shape[0]), torch.ones(obs.shape[0], device=obs.device))

    return Network(
        kind=kind,
        actor=actor,
        critic=critic,
        run_actor=run_actor,
        run_critic=run_critic,
        recurrent=RecurrentSteps(initial_state=zeros, step=step),
        **common,
    )
