"""Reference environments, registered with gymnasium when ``rli`` is imported.

``rli/FormationFlight-v0`` (:class:`~rli.envs.formation.FormationFlightEnv`): a
follower aircraft keeping formation behind a leader and saving energy in its
wake; 400 steps of 0.05 s. In a fresh process that has not imported ``rli``
(e.g. an ``AsyncVectorEnv`` worker started with "spawn"), use the id
``"rli.envs:rli/FormationFlight-v0"`` so gymnasium imports this module first.

Example:
    >>> import gymnasium as gym, rli
    >>> env = gym.make("rli/FormationFlight-v0")
    >>> env.spec.max_episode_steps
    400
"""

from gymnasium.envs.registration import register, registry

from rli.envs.formation import FormationFlightEnv, probe_grid
from rli.envs.wake import SpanUpwash, WakeModel

FORMATION_FLIGHT = "rli/FormationFlight-v0"

if FORMATION_FLIGHT not in registry:
    register(id=FORMATION_FLIGHT, entry_point="rli.envs.formation:FormationFlightEnv", max_episode_steps=400)

__all__ = ["FORMATION_FLIGHT", "FormationFlightEnv", "SpanUpwash", "WakeModel", "probe_grid"]
