"""Probe a policy while Stable-Baselines3 trains it: :class:`ProbeCallback`.

Every ``every`` environment steps (and once when training starts) the callback wraps the
live model (``rli.load_policy(model)``: the current weights and ``VecNormalize``
statistics), probes ``target`` at each of ``layers`` with held-out folds, and records
``rli/probe_r2/<layer>`` with ``rli/probe_r2_ci_low/<layer>`` and ``rli/probe_r2_ci_high/<layer>``
in SB3's logger (so TensorBoard / CSV / stdout outputs get them at the next dump). With
``store=`` (a directory) it also appends one JSON line per layer to
``<store>/probe_callback.jsonl`` with the keys of a sweep's records, so
:mod:`rli.emergence`, :mod:`rli.runstats` and :mod:`rli.training_plots` read them directly.

It does not change training: probes use their own seeded generators, and the global torch /
numpy RNG states are restored after each probe; hooks are removed and every module's train/eval mode and torch's grad
mode are restored, also on errors (tests/test_sb3_callback.py trains PPO with and
without it and compares the parameters bit for bit).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

from rli import checks
from rli.errors import RliError
from rli.loading import load_policy
from rli.observations import ObsSet
from rli.probes import ProbeResult, probe_layers

STORE_FILE = "probe_callback.jsonl"


class ProbeCallback(BaseCallback):
    """SB3 callback: probe ``target`` at ``layers`` every ``every`` steps; log to SB3's logger (and ``store``).

    ``obs`` is an :class:`rli.ObsSet` or an array; ``target`` a label name, ``"obs[i]"``,
    an array or ``(name, array)`` (as :func:`rli.probe`). ``history`` keeps every record
    written (the same dicts as the store's lines).

    Example:
        >>> from rli.sb3 import ProbeCallback
        >>> import numpy as np
        >>> callback = ProbeCallback(np.zeros((64, 4)), ("zero", np.arange(64.0)), layers=[1], every=512)
        >>> callback.every
        512
    """

    def __init__(self, obs: Any, target: Any, layers: Sequence[Any], every: int, *, store: Any = None,
                 kind: str = "ridge", controls: bool = False, seed: int = 0, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.every = checks.count(every, "every", hint=" (environment steps between probes)")
        if isinstance(layers, (str, int)) or not isinstance(layers, Sequence) or not layers:
            raise RliError(f"layers must be a non-empty list of layers (indices or names), e.g. [1, 3, 5]; got {layers!r}")
        if kind not in ("ridge", "lasso", "mlp", "logistic"):
            raise RliError(f"kind must be 'ridge', 'lasso', 'mlp' or 'logistic', not {kind!r}")
        self.obs = obs
        self.target = target
        self.layers = list(layers)
        self.kind = kind
        self.controls = bool(controls)
        self.seed = checks.seed(seed)
        self.store = None if store is None else Path(store)
        if self.store is not None and self.store.exists() and not self.store.is_dir():
            raise RliError(f"store must be a directory (the JSON lines go to <store>/{STORE_FILE}); {store} is a file")
        self.history: list[dict[str, Any]] = []
        self._next = 0

    def _target_name(self) -> str:
        if isinstance(self.target, str):
            return self.target
        if isinstance(self.target, tuple) and len(self.target) == 2 and isinstance(self.target[0], str):
            return self.target[0]
        return "target"

    def _spec_key(self) -> str:
        obs = self.obs.fingerprint if isinstance(self.obs, ObsSet) else ObsSet(self.obs).fingerprint
        spec = json.dumps({"analysis": "probe", "kind": self.kind, "controls": self.controls, "seed": self.seed,
                           "target": self._target_name(), "obs": obs}, sort_keys=True)
        return hashlib.sha256(spec.encode()).hexdigest()[:16]

    def _on_training_start(self) -> None:
        if self.store is not None:
            self.store.mkdir(parents=True, exist_ok=True)
        self._spec = self._spec_key()
        self._next = self.num_timesteps
        self._probe_now()

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            self._probe_now()
        return True

    def _probe_now(self) -> None:
        step = int(self.num_timesteps)
        self._next = (step // self.every + 1) * self.every
        results = self.probe(step)
        for layer, result in zip(self.layers, results):
            name = str(layer)
            self.logger.record(f"rli/probe_r2/{name}", result.score)
            self.logger.record(f"rli/probe_r2_ci_low/{name}", result.ci[0])
            self.logger.record(f"rli/probe_r2_ci_high/{name}", result.ci[1])
            record = {"checkpoint": None, "step": step, "seed": self.model.seed, "analysis": "probe", "layer": layer,
                      "target": self._target_name(), "metric": result.metric, "value": result.score,
                      "ci_low": result.ci[0], "ci_high": result.ci[1], "spec_key": self._spec}
            self.history.append(record)
            if self.store is not None:
                with open(self.store / STORE_FILE, "a", encoding="utf-8") as out:
                    out.write(json.dumps(record) + "\n")

    def probe(self, step: int) -> list[ProbeResult]:
        """Probe the live model now (one capture for all layers), leaving its modes and torch's grad mode as found."""
        modules = list(self.model.policy.modules())
        modes = [m.training for m in modules]
        grad = torch.is_grad_enabled()
        numpy_state = np.random.get_state()
        try:
            with torch.random.fork_rng(devices=[]):  # the untrained control re-initialises a network
                policy = load_policy(self.model)
                profile = probe_layers(policy, self.obs, self.target, layers=self.layers, kind=self.kind,
                                       controls=self.controls, seed=self.seed)
        except RliError as err:
            raise RliError(f"ProbeCallback at step {step}: {err}") from None
        finally:
            for module, mode in zip(modules, modes):
                module.train(mode)
            torch.set_grad_enabled(grad)
            np.random.set_state(numpy_state)
        return list(profile.results)
