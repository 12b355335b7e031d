"""Reference environments, registered with gymnasium when ``rli`` is imported (:mod:`rli.registration`).

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

from rli.envs.formation import FormationFlightEnv, probe_grid
from rli.envs.wake import SpanUpwash, WakeModel
from rli.registration import register_envs

FORMATION_FLIGHT = "rli/FormationFlight-v0"

register_envs()  # every id in rli.registration.ENVS (e.g. rli/MiniGridDoorKey-v0, which needs minigrid when made)

__all__ = ["FORMATION_FLIGHT", "FormationFlightEnv", "SpanUpwash", "WakeModel", "probe_grid"]
