"""rl_interrogate's ``ActivationPatcher`` (``rl_interrogate.patching``) on rli's capture engine.

The reference differs from :func:`rli.patch` in two ways that change outputs, and both
are reproduced: the counterfactual activations are recomputed on every forward pass
(so they follow the model as it is at that moment, other hooks included), and they
replace the layer's output as they are — a counterfactual batch of one gives the later
layers a batch of one, whatever the size of the batch that was run. :func:`rli.patch`
captures the source activations once and patches row by row (one source row broadcast
to the whole batch).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from rli.capture import capture_prepared
from rli.compat.engine import engine, measuring_layers
from rli.errors import RliError

__all__ = ["ActivationPatcher"]


class ActivationPatcher:
    """Replace the output of ``model[layer_idx]`` by its output on ``counterfactual_obs``, from construction to :meth:`remove`.

    Same signature and behaviour as ``rl_interrogate.ActivationPatcher``. On every forward
    pass the counterfactual observations run through the model up to the layer (rli's capture
    engine; the observations are validated once, here; the patch itself is taken off meanwhile) and their activations are
    returned in place of the layer's output. Parameters are never modified.

    Rigorous equivalent: ``with rli.patch(policy, layer, source_obs):`` inside
    ``rli.compare(policy, env, intervention, episodes, seed)`` — per-row patching (source i into input
    i), source captured once, paired episodes with a CI on the effect.

    Example:
        >>> import torch, torch.nn as nn
        >>> from rli.compat import ActivationPatcher
        >>> _ = torch.manual_seed(0)
        >>> net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))
        >>> counterfactual = torch.ones(1, 3)
        >>> expected = net(counterfactual)
        >>> patcher = ActivationPatcher(net, 1, counterfactual)
        >>> patched = net(torch.zeros(4, 3))
        >>> patched.shape, bool(torch.equal(patched, expected))
        (torch.Size([1, 2]), True)
        >>> patcher.remove()
        >>> net(torch.zeros(4, 3)).shape
        torch.Size([4, 2])
    """

    def __init__(self, model: nn.Module, layer_idx: int, counterfactual_obs: torch.Tensor) -> None:
        self._model, self._layer_idx, self._cf_obs = model, layer_idx, counterfactual_obs
        self._policy, self._layer = engine(model, layer_idx)
        # Validated once; for a CPU tensor or an array this is a view, so in-place edits are followed, as in the
        # reference (non-finite activations they produce are still refused on every pass).
        self._cf_rows = self._policy.prepare_obs(counterfactual_obs)
        self._module = model[layer_idx]  # type: ignore[index]  # the reference API indexes its model (a Sequential)
        if self._layer.shape is None:
            raise RliError(f"layer {layer_idx} of the model has no fixed output shape to patch")
        self._shape: tuple[int, ...] = self._layer.shape
        self._hook = self._module.register_forward_hook(self._patch)

    def _patch(self, _module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        if measuring_layers.get():
            return output
        self._hook.remove()  # the counterfactual pass runs through this layer too: unpatched
        try:
            acts = capture_prepared(self._policy, self._cf_rows, [self._layer])[self._layer.name]
        finally:
            self._hook = self._module.register_forward_hook(self._patch)
        batch_shape = tuple(self._cf_obs.shape)[:len(self._cf_obs.shape) - len(self._policy.obs_shape)]
        return torch.as_tensor(acts, dtype=output.dtype, device=output.device).reshape(batch_shape + self._shape)

    def remove(self) -> None:
        """Take the patch off: forward passes are unchanged again (calling it twice is harmless)."""
        self._hook.remove()
