"""Rollouts: `evaluate` (vectorised, batched, seeded, optionally under interventions) and the observations a policy
visits (`collect_rollouts`, behind :meth:`rli.ObsSet.from_rollouts`)."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rli import checks, recurrent
from rli.envs_util import resolve_env
from rli.errors import RliError
from rli.interventions import bind_all
from rli.observations import LabelFn, ObsSet, numeric_info
from rli.policy import Policy
from rli.progress import progress_bar, shown
from rli.space_fit import check_env_fit
from rli.threads import one_torch_thread

EnvSpec = Any


@dataclass(frozen=True)
class EvalResult:
    """Per-episode results of :func:`evaluate`, in episode order.

    ``returns[i]`` is the undiscounted return of the episode reset with seed ``seeds[i]``.
    """

    returns: np.ndarray
    lengths: np.ndarray
    seeds: np.ndarray
    env: str
    intervention: str | None = None
    truncated_by_max_steps: int = field(default=0)

    @property
    def mean(self) -> float:
        """Mean return."""
        return float(self.returns.mean())

    @property
    def std(self) -> float:
        """Standard deviation of the returns (ddof=1; 0 for one episode)."""
        return float(self.returns.std(ddof=1)) if len(self.returns) > 1 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain-python form (JSON-able)."""
        return {"env": self.env, "intervention": self.intervention, "episodes": len(self.returns),
                "mean_return": self.mean, "std_return": self.std, "returns": self.returns.tolist(),
                "lengths": self.lengths.tolist(), "seeds": self.seeds.tolist(),
                "truncated_by_max_steps": self.truncated_by_max_steps}

    def __str__(self) -> str:
        under = f" under {self.intervention}" if self.intervention else ""
        return (f"{len(self.returns)} episodes of {self.env}{under} (seeds {self.seeds[0]}..{self.seeds[-1]}): "
                f"return {self.mean:.3f} ± {self.std:.3f} (sd), length {self.lengths.mean():.1f}")


def _env_factory(env: EnvSpec) -> tuple[Callable[[], Any], str, bool]:
    """``(factory, name, shareable)``: shareable factories can build one env per vector slot.

    Names are resolved by :func:`rli.envs_util.resolve_env`, as everywhere in rli (``"module:EnvId"`` included).
    """
    ref = resolve_env(env)
    return ref.factory, ref.name, ref.shareable


def _describe(intervention: Any) -> str | None:
    if intervention is None:
        return None
    items = intervention if isinstance(intervention, (list, tuple)) else [intervention]
    return " + ".join(item.describe() if hasattr(item, "describe") else repr(item) for item in items)


def evaluate(
    policy: Policy,
    env: EnvSpec,
    episodes: int,
    seed: int,
    intervention: Any = None,
    n_envs: int | None = None,
    *,
    max_steps: int | None = None,
    asynchronous: bool = False,
    progress: bool | None = None,
) -> EvalResult:
    """Run ``episodes`` deterministic episodes; episode *i* is reset with seed ``seed + i``.

    All environments step together and the policy acts on the whole batch in one
    forward pass per step. Results never depend on ``n_envs``: each episode keeps its
    seed whatever slot runs it, and exactly ``episodes`` episodes are counted (slots
    that finish early are not used to start extra episodes, so short episodes are not
    over-represented). ``intervention`` (an rli intervention, or a list of them; pass it
    by keyword, ``intervention=``, as :func:`rli.compare` takes it) is entered once for
    the whole evaluation; one built from another ``Policy`` object
    with the same network edits this one (:meth:`~rli.Intervention.bind`), one built
    from a different network is an :class:`RliError`. ``asynchronous=True`` steps environments in
    worker processes (worth it when stepping dominates). ``max_steps`` caps episode
    length on top of the env's own time limit. A progress bar shows on a terminal.

    Example:
        >>> import torch.nn as nn, rli
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(4, 2)), env="CartPole-v1")
        >>> result = rli.evaluate(policy, "CartPole-v1", episodes=4, seed=0, n_envs=2)
        >>> result.seeds.tolist(), len(result.returns)
        ([0, 1, 2, 3], 4)
    """
    from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

    checks.policy(policy)
    checks.flag(asynchronous, "asynchronous")
    shown(progress)  # a bad progress= fails here, before any environment starts
    episodes = checks.count(episodes, "episodes", maximum=MAX_EPISODES)
    seed = checks.seed(seed)
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer))
                                  or max_steps < 1):
        raise RliError(f"max_steps must be positive (an integer number of steps per episode), got {max_steps!r}")
    if n_envs is not None:
        checks.count(n_envs, "n_envs", hint=" (environments stepped together)")
    items = intervention if isinstance(intervention, (list, tuple)) else [intervention]
    for item in items:
        if item is not None and not (hasattr(item, "__enter__") and hasattr(item, "__exit__")):
            raise RliError(f"intervention must be an rli intervention (rli.ablate(...), ...) or a list of them, "
                           f"not {type(item).__name__}")
    intervention = bind_all(intervention, policy)  # onto this policy's network, or RliError before any work
    factory, name, shareable = _env_factory(env)
    slots = int(min(episodes, n_envs or min(episodes, 8)))
    if not shareable and slots > 1:
        raise RliError("a gymnasium.Env instance cannot be copied into several vector slots; pass its id or a "
                       "factory (e.g. lambda: MyWrapper(gym.make(...))) to use n_envs > 1, or n_envs=1")
    vector_cls = AsyncVectorEnv if asynchronous else SyncVectorEnv
    envs = vector_cls([factory] * slots, autoreset_mode=AutoresetMode.DISABLED)
    completed = False
    try:
        check_env_fit(policy, envs.single_observation_space, envs.single_action_space, name)  # before any step
        with contextlib.ExitStack() as stack:
            stack.enter_context(one_torch_thread())
            for item in (intervention if isinstance(intervention, (list, tuple)) else [intervention]):
                if item is not None:
                    stack.enter_context(item)
            returns, lengths, capped = _run(policy, envs, episodes, int(seed), slots, max_steps,
                                            stack.enter_context(progress_bar(episodes, f"evaluate {name}", unit="ep",
                                                                             progress=progress)))
        completed = True
    finally:
        if shareable:
            # after an error or an interrupt a worker may be mid-step: terminate, never wait on it
            envs.close(terminate=not completed)
    return EvalResult(returns=returns, lengths=lengths, seeds=int(seed) + np.arange(episodes), env=name,
                      intervention=_describe(intervention), truncated_by_max_steps=capped)


BLOCK = 16
MAX_EPISODES = 10**9


def _pad_rows(values: Any, rows: int, dim: int = 0) -> Any:
    """``values`` (array or tensor) with zero rows appended along ``dim`` up to ``rows``."""
    import torch

    missing = rows - values.shape[dim]
    if missing == 0:
        return values
    shape = list(values.shape)
    shape[dim] = missing
    if isinstance(values, torch.Tensor):
        return torch.cat([values, values.new_zeros(shape)], dim=dim)
    return np.concatenate([values, np.zeros(shape, dtype=values.dtype)], axis=dim)


def _fixed_block_step(policy: Policy, obs: np.ndarray, state: Any, starts: np.ndarray) -> tuple[np.ndarray, Any]:
    """One policy step, computed in blocks of exactly ``BLOCK`` rows (zero-padded).

    Matrix products round differently for different batch sizes (BLAS picks other
    kernels), and in chaotic environments such as MuJoCo locomotion a last-bit
    difference in one action changes the whole episode. With a fixed block size
    every row is computed the same way whatever ``n_envs`` is and wherever the row
    sits in the block (checked in the tests), so results never depend on parallelism.
    Recurrent states are padded along their batch dimension (dim 1, SB3's LSTM layout).
    """
    import torch

    actions, states = [], []
    for start in range(0, obs.shape[0], BLOCK):
        stop = min(obs.shape[0], start + BLOCK)
        n = stop - start
        block_obs = _pad_rows(obs[start:stop], BLOCK)
        block_starts = _pad_rows(starts[start:stop], BLOCK)
        block_state = None if state is None else tuple(_pad_rows(t[:, start:stop], BLOCK, dim=1) for t in state)
        acted, new_state = policy.step_prepared(block_obs, block_state, block_starts)
        actions.append(acted[:n])
        if new_state is not None:
            states.append(tuple(t[:, :n] for t in new_state))
    joined = None if not states else tuple(torch.cat([part[i] for part in states], dim=1)
                                           for i in range(len(states[0])))
    return np.concatenate(actions), joined


def _run(policy: Policy, envs: Any, episodes: int, seed: int, slots: int, max_steps: int | None,
         bar: Any) -> tuple[np.ndarray, np.ndarray, int]:
    returns = np.zeros(episodes)
    lengths = np.zeros(episodes, dtype=np.int64)
    episode_of = np.arange(slots)            # which episode each slot runs; -1 once it has nothing left to run
    next_episode = slots
    running_return = np.zeros(slots)
    running_length = np.zeros(slots, dtype=np.int64)
    obs, _ = envs.reset(seed=[seed + i for i in range(slots)])
    state, starts = policy.initial_state(slots), np.ones(slots, dtype=bool)
    finished_count, capped = 0, 0
    with policy.inference():
        while finished_count < episodes:
            actions, state = _fixed_block_step(policy, policy.prepare_obs(obs), state, starts)
            obs, reward, terminated, truncated, _ = envs.step(actions)
            running_return += reward
            running_length += 1
            hit_cap = running_length >= max_steps if max_steps is not None else np.zeros(slots, dtype=bool)
            done = terminated | truncated | hit_cap
            starts = done.copy()
            if not done.any():
                continue
            reset_seeds: list[int | None] = [None] * slots
            for slot in np.flatnonzero(done):
                episode = episode_of[slot]
                if episode >= 0:
                    returns[episode], lengths[episode] = running_return[slot], running_length[slot]
                    capped += int(hit_cap[slot] and not (terminated[slot] or truncated[slot]))
                    finished_count += 1
                    bar.update(1)
                if next_episode < episodes:
                    episode_of[slot], reset_seeds[slot] = next_episode, seed + next_episode
                    next_episode += 1
                else:
                    episode_of[slot], reset_seeds[slot] = -1, seed + episodes + int(slot)
            running_return[done], running_length[done] = 0.0, 0
            if finished_count < episodes:
                obs, _ = envs.reset(seed=reset_seeds, options={"reset_mask": done})
    return returns, lengths, capped


# ------------------------------------------------------------------------------ observations from rollouts
#: ``collect_rollouts(..., episodes=)`` in an env with no stated time limit: the steps after which an episode that
#: has not ended is refused (an RliError asking for ``max_episode_steps``) rather than run for ever.
UNLIMITED_EPISODE_STEPS = 100_000


def collect_rollouts(env: Any, policy: Any, n: int, seed: int, *, episodes: int | None = None,
                     label_fn: LabelFn | None = None, max_episode_steps: int | None = None,
                     into: type[ObsSet] = ObsSet) -> ObsSet:
    """``n`` observations visited by ``policy`` acting deterministically in ``env``: :meth:`rli.ObsSet.from_rollouts`.

    ``into`` is the ObsSet class built (a subclass calling ``from_rollouts`` gets its own kind).

    Example:
        >>> import rli, torch.nn as nn
        >>> from rli.rollout import collect_rollouts
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(3, 1)), env="Pendulum-v1")
        >>> obs = collect_rollouts("Pendulum-v1", policy, n=30, seed=0, episodes=3, max_episode_steps=20)
        >>> len(obs), sorted(set(obs.labels["episode"].tolist()))
        (30, [0, 1, 2])
    """
    from rli.envs_util import make_env

    n, seed = checks.count(n, "n"), checks.seed(seed)
    if episodes is not None:
        episodes = checks.count(episodes, "episodes", hint=" (whole episodes to run; None keeps the first n "
                                                           "consecutive steps)")
        checks.seed(seed + episodes - 1, "seed + episodes - 1 (the last episode's seed)")
    checks.policy(policy)
    if max_episode_steps is not None:
        checks.count(max_episode_steps, "max_episode_steps")
    environment, owned = make_env(env)
    try:
        check_env_fit(policy, environment.observation_space, environment.action_space,
                      env if isinstance(env, str) else type(environment).__name__)
    except BaseException:
        if owned:
            environment.close()
        raise
    visits = _Visits(policy, label_fn, stop_at=None if episodes is not None else n)
    # whole episodes of an env that states no time limit (it may still truncate itself): refuse a runaway one
    runaway = (UNLIMITED_EPISODE_STEPS if episodes is not None and max_episode_steps is None
               and not _has_time_limit(environment) else None)
    # a feed-forward policy steps inside one inference block (as rli.evaluate does); a recurrent one per step,
    # since its recorder runs the critic in a block of its own
    held = policy.inference() if visits.recorder is None else contextlib.nullcontext()
    with one_torch_thread(), held:
        try:
            for episode in range(episodes) if episodes is not None else itertools.count():
                visits.episode(environment, seed, episode, max_episode_steps, runaway, env)
                if visits.enough():
                    break
        finally:
            if owned:
                environment.close()
    return visits.kept(into, n, episodes, {"env": str(env), "seed": seed})


class _Visits:
    """The rows, labels and (recurrent) states a rollout visits, step by step."""

    def __init__(self, policy: Any, label_fn: LabelFn | None, stop_at: int | None) -> None:
        self.policy, self.label_fn, self.stop_at = policy, label_fn, stop_at
        self.rows: list[np.ndarray] = []
        self.labels: list[dict[str, Any]] = []
        self.recorder = recurrent.Recorder(policy) if policy.is_recurrent else None

    def enough(self) -> bool:
        return self.stop_at is not None and len(self.rows) >= self.stop_at

    def episode(self, environment: Any, seed: int, episode: int, max_episode_steps: int | None,
                runaway: int | None, env: Any) -> None:
        """Run episode ``episode`` (reset with ``seed + episode``) until it ends or enough rows are visited."""
        policy = self.policy
        observation, info = environment.reset(seed=seed + episode)
        state = policy.initial_state(1)
        start = True
        for step in itertools.count():
            flat = policy.flat_observation(observation)  # a Dict observation: flat, in gymnasium's order
            self.rows.append(flat)
            if self.recorder is not None:
                self.recorder.record(state, flat[None], start)
            labels = dict(self.label_fn(observation, info)) if self.label_fn is not None else numeric_info(info)
            labels.update(episode=episode, step=step)
            self.labels.append(labels)
            if self.enough():
                return
            if self.recorder is None:
                action = policy.act_prepared(policy.prepare_obs(flat[None]))
            else:
                action, state = policy.step(flat[None], state, np.array([start]))
            start = False
            observation, _, terminated, truncated, info = environment.step(action[0])
            if terminated or truncated or (max_episode_steps is not None and step + 1 >= max_episode_steps):
                return
            if runaway is not None and step + 1 >= runaway:
                raise RliError(f"episode {episode} of {env!r} has run {runaway:,} steps without ending and "
                               "the env states no time limit; pass max_episode_steps= (or wrap the env "
                               "in gymnasium.wrappers.TimeLimit), or collect n consecutive steps "
                               "(episodes=None)")

    def kept(self, into: type[ObsSet], n: int, episodes: int | None, meta: dict[str, Any]) -> ObsSet:
        """The visited rows kept (all, or ``n`` spread evenly over whole episodes) as an ObsSet."""
        visited = len(self.rows)
        keep = np.arange(visited)
        if episodes is not None:
            if visited > n:
                keep = (np.arange(n, dtype=np.int64) * visited) // n  # evenly spaced, distinct, from step 0 on
            meta.update(episodes=episodes, visited_steps=visited, subsampled_every=max(visited / n, 1.0))
        kept_labels = [self.labels[i] for i in keep]
        common = set.intersection(*(set(r) for r in kept_labels))
        labels = {name: np.asarray([r[name] for r in kept_labels]) for name in sorted(common)}
        obs = np.stack([self.rows[i] for i in keep])
        if self.recorder is None:
            return into(obs, labels, meta=meta)
        meta[recurrent.STATE_OF] = self.policy.fingerprint
        states = {name: values[keep] for name, values in self.recorder.states(visited).items()}
        return into(obs, labels, meta=meta, states=states)


def _has_time_limit(environment: Any) -> bool:
    """Whether a gymnasium env ends its episodes after a number of steps (its spec's limit or a TimeLimit wrapper)."""
    from gymnasium.wrappers import TimeLimit

    spec = getattr(environment, "spec", None)
    if spec is not None and getattr(spec, "max_episode_steps", None) is not None:
        return True
    layer, seen = environment, 0
    while layer is not None and seen < 100:
        if isinstance(layer, TimeLimit):
            return True
        layer, seen = getattr(layer, "env", None), seen + 1
    return False
