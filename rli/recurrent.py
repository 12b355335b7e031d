"""The hidden state a recurrent policy has at each observation: recorded along rollouts, replayed, or fresh.

A recurrent policy's activations depend on its hidden state as well as on the
observation. :meth:`rli.ObsSet.from_rollouts` records, for every step, the state the
policy had *before* that step (for sb3-contrib's ``RecurrentPPO``: the actor LSTM's
``(h, c)`` and the state of the LSTM the critic reads), with the fingerprint of the
policy that computed it. :func:`rli.capture` (and so probes, PCA and the interventions
built from observations) then runs every observation from its own state:

``"recorded"`` (the default when the observations carry states)
    the states stored with the observations; they must come from this very policy
    (same fingerprint), otherwise :class:`~rli.RliError`.
``"replay"``
    the states recomputed with *this* policy by running every episode of the
    observations from its first step, in order (``episode`` and ``step`` labels, each
    episode complete from step 0): the same trajectories through another network
    (an untrained copy, a later checkpoint).
``"fresh"``
    every observation from the policy's initial state, as if it began an episode.
    Never chosen silently: a plain array given to a recurrent policy is refused
    unless this is asked for.

States are stored per observation as float arrays named ``"actor.0"``, ``"actor.1"``,
``"critic.0"``, ``"critic.1"`` (for an LSTM, 0 is ``h`` and 1 is ``c``), each of shape
``(n, *state_shape)``; the batch dimension of the network's own layout is moved first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, cast

import numpy as np
import torch

from rli.errors import RliError
from rli.tensors import to_numpy
from rli.threads import one_torch_thread

RecurrentState = Literal["recorded", "replay", "fresh"]
MODES: tuple[str, ...] = ("recorded", "replay", "fresh")
#: ``ObsSet.meta`` key holding the fingerprint of the policy whose hidden states the ObsSet stores.
STATE_OF = "recurrent_state_of"
PARTS = ("actor", "critic")


# ----------------------------------------------------------------------------------------- layout
def _leaves(state: Any) -> list[torch.Tensor]:
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, (tuple, list)):
        return [leaf for item in state for leaf in _leaves(item)]
    raise RliError(f"cannot store a recurrent state made of {type(state).__name__}; rli stores tensors "
                   "and tuples of tensors")


def _rebuild(template: Any, leaves: list[torch.Tensor]) -> Any:
    """``template``'s structure with its tensors replaced, in order, by ``leaves`` (consumed from the front)."""
    if isinstance(template, torch.Tensor):
        return leaves.pop(0)
    rebuilt = [_rebuild(item, leaves) for item in template]
    return type(template)(rebuilt) if not hasattr(template, "_fields") else type(template)(*rebuilt)


def _batch_dims(policy: Any) -> list[int]:
    """Per state tensor, the dimension that indexes parallel episodes (found by comparing 1 and 2 episodes)."""
    one, two = _leaves(policy.initial_state(1)), _leaves(policy.initial_state(2))
    dims = []
    for a, b in zip(one, two):
        differ = [i for i, (x, y) in enumerate(zip(a.shape, b.shape)) if x != y]
        if len(differ) != 1:
            raise RliError(f"cannot tell which dimension of a recurrent state of shape {tuple(b.shape)} indexes "
                           "episodes; rli stores states whose batch dimension grows with the number of episodes")
        dims.append(differ[0])
    return dims


def layout(policy: Any) -> dict[str, tuple[int, ...]]:
    """State names and per-observation shapes this policy's states are stored under (empty if not recurrent).

    Example:
        >>> import torch.nn as nn, rli
        >>> layout(rli.load_policy(nn.Sequential(nn.Linear(3, 2))))
        {}
    """
    if not policy.is_recurrent:
        return {}
    dims = _batch_dims(policy)
    shapes: dict[str, tuple[int, ...]] = {}
    leaves = _leaves(policy.initial_state(1))
    parts = PARTS if _critic_step(policy) is not None else PARTS[:1]
    for part in parts:
        for i, (leaf, dim) in enumerate(zip(leaves, dims)):
            shape = list(leaf.shape)
            del shape[dim]
            shapes[f"{part}.{i}"] = tuple(shape)
    return shapes


def _critic_step(policy: Any) -> Any:
    return policy._net.recurrent.critic_step if policy.is_recurrent else None


def to_rows(policy: Any, part: str, state: Any, dims: list[int] | None = None) -> dict[str, np.ndarray]:
    """A state for ``k`` episodes as named float32 arrays of ``k`` rows (batch dimension first)."""
    dims = _batch_dims(policy) if dims is None else dims
    return {f"{part}.{i}": np.ascontiguousarray(to_numpy(leaf.movedim(dim, 0)), dtype=np.float32)
            for i, (leaf, dim) in enumerate(zip(_leaves(state), dims))}


def from_rows(policy: Any, part: str, rows: Mapping[str, np.ndarray], index: Any = slice(None),
              dims: list[int] | None = None) -> Any:
    """The network's state for the rows ``index`` of stored states (inverse of :func:`to_rows`)."""
    dims = _batch_dims(policy) if dims is None else dims
    template = policy.initial_state(1)
    device = policy.device
    leaves = [torch.as_tensor(np.ascontiguousarray(rows[f"{part}.{i}"][index]), dtype=leaf.dtype, device=device).movedim(0, dim)
              .contiguous() for i, (leaf, dim) in enumerate(zip(_leaves(template), dims))]
    return _rebuild(template, leaves)


# ---------------------------------------------------------------------------------- choosing a mode
def check_mode(recurrent_state: Any) -> RecurrentState | None:
    """Validate a ``recurrent_state=`` argument (``None``, ``"recorded"``, ``"replay"`` or ``"fresh"``)."""
    if recurrent_state is None or (isinstance(recurrent_state, str) and recurrent_state in MODES):
        return cast(RecurrentState, recurrent_state)
    raise RliError(f"recurrent_state must be 'recorded' (the states stored with observations from "
                   f"rli.ObsSet.from_rollouts), 'replay' (recompute them with this policy along the episodes), "
                   f"'fresh' (every observation from an initial state) or None (recorded), not {recurrent_state!r}")


def resolve(policy: Any, obs: Any, recurrent_state: Any) -> tuple[RecurrentState | None, dict[str, np.ndarray] | None]:
    """``(mode, per-observation states)`` for capturing ``obs`` on ``policy``; ``(None, None)`` if not recurrent.

    States are returned for ``"recorded"`` and ``"replay"`` (one row per observation),
    ``None`` for ``"fresh"``. Raises :class:`~rli.RliError`, before any forward pass,
    when the observations cannot give the state asked for.
    """
    from rli.observations import ObsSet

    mode = check_mode(recurrent_state)
    if not policy.is_recurrent:
        return None, None
    if mode == "fresh":
        return "fresh", None
    if not isinstance(obs, ObsSet):
        raise RliError(f"{policy.kind} is recurrent: its activations depend on the hidden state it has at each "
                       f"observation, which a plain {type(obs).__name__} does not carry; collect observations with "
                       "rli.ObsSet.from_rollouts(env, policy, ...) (it records the state at every step), or pass "
                       "recurrent_state='fresh' to run every observation from an initial state")
    if mode == "replay":
        return "replay", replay(policy, obs)
    if not obs.states:
        raise RliError(f"{policy.kind} is recurrent but these observations carry no hidden states; collect them with "
                       "rli.ObsSet.from_rollouts(env, policy, ...) (it records them), pass recurrent_state='replay' "
                       "to recompute them along the episodes (episode and step labels), or recurrent_state='fresh'")
    return "recorded", checked_states(policy, obs)


def checked_states(policy: Any, obs: Any) -> dict[str, np.ndarray]:
    """The states stored in ``obs``, after checking they were recorded by ``policy`` and fit its layout."""
    recorded_by = obs.meta.get(STATE_OF)
    mine = policy.fingerprint
    if recorded_by != mine:
        who = f"a policy with fingerprint {str(recorded_by)[:12]}" if recorded_by else "an unknown policy"
        raise RliError(f"the hidden states stored with these observations were recorded by {who}, not by this policy "
                       f"(fingerprint {mine[:12]}); pass recurrent_state='replay' to recompute them with this policy "
                       "along the same episodes, or collect the observations with this policy")
    expected = layout(policy)
    got = {name: tuple(values.shape[1:]) for name, values in obs.states.items()}
    if got != expected:
        raise RliError(f"the stored hidden states {got} do not fit this policy's {expected}; pass "
                       "recurrent_state='replay' to recompute them with this policy")
    return dict(obs.states)


# ----------------------------------------------------------------------------------- running states
class Recorder:
    """Collects the state before every step of one or more rollouts (actor and, where recurrent, critic).

    Used by :meth:`rli.ObsSet.from_rollouts`: call :meth:`record` with the actor's state
    and the prepared observation just before the policy steps on it; the critic's state
    is advanced here, as SB3's training rollouts carry it.
    """

    def __init__(self, policy: Any) -> None:
        self.policy = policy
        self._dims = _batch_dims(policy)
        self._critic = _critic_step(policy)
        self._rows: list[dict[str, np.ndarray]] = []
        self._critic_state: Any = None

    def record(self, actor_state: Any, obs: Any, episode_start: bool) -> None:
        """Store the states before this step, then advance the critic's state on ``obs`` (a batch of one)."""
        policy = self.policy
        if episode_start or actor_state is None:
            actor_state = policy.initial_state(1)
        row = to_rows(policy, "actor", actor_state, self._dims)
        if self._critic is not None:
            if episode_start or self._critic_state is None:
                self._critic_state = policy.initial_state(1)
            row.update(to_rows(policy, "critic", self._critic_state, self._dims))
            with policy.inference():
                starts = torch.full((1,), float(episode_start), device=policy.device)
                tensor = policy._tensor(policy.prepare_obs(obs))
                self._critic_state = self._critic(tensor, self._critic_state, starts)[1]
        self._rows.append(row)

    def states(self, n: int) -> dict[str, np.ndarray]:
        """The first ``n`` recorded rows, stacked per state name."""
        names = self._rows[0].keys() if self._rows else layout(self.policy).keys()
        return {name: np.concatenate([row[name] for row in self._rows[:n]]) for name in names}


def replay(policy: Any, obs: Any) -> dict[str, np.ndarray]:
    """States before every observation of ``obs``, recomputed with ``policy`` along its episodes.

    ``obs`` needs ``episode`` and ``step`` labels, and every episode complete from
    step 0 (any row order). Episodes run side by side, one batched step per time step.
    Interventions active around the call apply (the states are those of the edited policy).

    Example:
        >>> import rli
        >>> from sb3_contrib import RecurrentPPO
        >>> model = RecurrentPPO("MlpLstmPolicy", "CartPole-v1", policy_kwargs={"lstm_hidden_size": 4}, seed=0)
        >>> policy = rli.load_policy(model)
        >>> obs = rli.ObsSet.from_rollouts("CartPole-v1", policy, n=30, seed=0)
        >>> states = replay(policy, obs)
        >>> bool(abs(states["actor.0"] - obs.states["actor.0"]).max() < 1e-5)
        True
    """
    labels = obs.labels
    missing = [name for name in ("episode", "step") if name not in labels]
    if missing:
        raise RliError(f"recurrent_state='replay' needs 'episode' and 'step' labels (as rli.ObsSet.from_rollouts "
                       f"records them) to run the episodes in order; these observations lack {missing}")
    episode, step = np.asarray(labels["episode"]), np.asarray(labels["step"])
    if episode.ndim != 1 or step.ndim != 1 or step.dtype.kind not in "iu":
        raise RliError("recurrent_state='replay' needs one episode id and one integer step per observation")
    every = obs.meta.get("subsampled_every", 1.0)
    if isinstance(every, (int, float)) and every > 1:
        raise RliError(f"recurrent_state='replay' needs every step of each episode, but these observations keep one "
                       f"step in {every:.3g} (rli.ObsSet.from_rollouts(..., episodes=) spread n over longer episodes); "
                       "use the recorded states (recurrent_state='recorded'), or collect with n at least the "
                       f"{obs.meta.get('visited_steps', 'visited')} steps visited to replay them")
    ids, which = np.unique(episode, return_inverse=True)
    order = np.lexsort((step, which))
    lengths = np.bincount(which, minlength=len(ids))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    expected = np.arange(len(order)) - np.repeat(starts, lengths)
    if not np.array_equal(step[order], expected):
        first = int(np.argmax(step[order] != expected))
        bad = int(which[order][first])
        mine = step[order][which[order] == bad]
        why = ("its steps have gaps (steps between them are missing)" if mine[0] == 0 and np.all(np.diff(mine) > 0)
               else "it does not start at step 0" if mine.min() != 0 else "a step occurs more than once")
        raise RliError(f"recurrent_state='replay' needs every episode complete from step 0, each step once; episode "
                       f"{ids[bad]!r} is not: {why} (a slice, a selection of rows or a subsampled collection cuts "
                       "episodes); replay the whole ObsSet and select rows from the result, or use the recorded "
                       "states")
    arr = policy.prepare_obs(obs.obs)
    dims = _batch_dims(policy)
    critic = _critic_step(policy)
    n_ep = len(ids)
    zero = {name: np.zeros((n_ep, *shape), dtype=np.float32) for name, shape in layout(policy).items()}
    current = {name: values.copy() for name, values in zero.items()}
    out = {name: np.empty((len(arr), *shape), dtype=np.float32) for name, shape in layout(policy).items()}
    recurrent = policy._net.recurrent
    with policy.inference(), one_torch_thread():
        for t in range(int(lengths.max())):
            active = np.flatnonzero(lengths > t)
            rows = order[starts[active] + t]
            for name in out:
                out[name][rows] = current[name][active]
            x = policy._tensor(arr[rows])
            first_step = torch.full((len(active),), float(t == 0), device=policy.device)
            _, actor = recurrent.step(x, from_rows(policy, "actor", current, active, dims), first_step)
            updated = to_rows(policy, "actor", actor, dims)
            if critic is not None:
                _, value_state = critic(x, from_rows(policy, "critic", current, active, dims), first_step)
                updated.update(to_rows(policy, "critic", value_state, dims))
            for name, values in updated.items():
                current[name][active] = values
    return out


def run(policy: Any, tensor: torch.Tensor, states: Mapping[str, np.ndarray], part: str = "actor") -> None:
    """Run the actor (or the critic) one step on a prepared batch, from its per-row ``states``.

    The outputs are not returned: callers read activations through forward hooks. A
    critic that is not recurrent runs from the actor's state (it ignores it).
    """
    dims = _batch_dims(policy)
    recurrent = policy._net.recurrent
    going = torch.zeros(tensor.shape[0], device=tensor.device)
    if part == "actor":
        recurrent.step(tensor, from_rows(policy, "actor", states, dims=dims), going)
    elif recurrent.critic_step is not None:
        recurrent.critic_step(tensor, from_rows(policy, "critic", states, dims=dims), going)
    elif policy._net.run_critic is not None:
        policy._net.run_critic(tensor)
