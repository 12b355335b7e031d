"""Attribution assertions: "the decision rests on these inputs", decided on the confidence interval of a share.

:func:`assert_attribution_in` measures, with :func:`rli.attribution.attribute`, the share
of the absolute attribution mass that falls on some inputs (or an image region), averaged
over episodes, and passes when the **lower end of its 95% CI** reaches ``min_share``: a
share that only might be that large does not pass. Like the assertions of
:mod:`pytest_rli.assertions` it records its metric through :func:`pytest_rli.assertions.finish`
(session summary, JUnit properties, baselines, history) and fails with the evidence: every region's share with its CI, IG's
completeness residual, and what was attributed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pytest_rli.assertions import finish
from rli import checks
from rli.attribution import AttributionResult, attribute, groups_of
from rli.errors import RliError
from rli.policy import Policy


def _evidence(result: AttributionResult) -> list[str]:
    lines = [f"{result.method} attribution of {result.target}"
             + (f" at {result.layer}" if result.layer else "")
             + f" over {result.n_rows} rows in {np.unique(result.groups).size} groups (by {result.grouped_by})"
             + (f", baseline {result.baseline}, {result.n_steps} steps" if result.n_steps else "")]
    ranked = sorted(result.shares.values(), key=lambda s: -s.share)
    lines.append("shares of |attribution| by region (mean over groups, 95% CI): "
                 + "; ".join(str(s) for s in ranked[:8]) + (f"; … {len(ranked) - 8} more" if len(ranked) > 8 else ""))
    if result.completeness is not None:
        lines.append(f"IG completeness residual |sum attr − (f(x) − f(baseline))|: max "
                     f"{float(np.max(np.abs(result.completeness))):.3g} (output range "
                     f"{float(np.ptp(result.outputs)):.3g})")
    lines += list(result.notes)
    return lines


def assert_attribution_in(*, policy: Policy, obs: Any, min_share: float, inputs: Any = None, region: Any = None,
                          target: str = "action", method: str = "ig", baseline: Any = None, n_steps: int = 50,
                          layer: Any = None, groups: Any = None, regions: Any = None, seed: int = 0,
                          tolerance: float | None = None, **options: Any) -> AttributionResult:
    """Assert that at least ``min_share`` of the attribution mass falls on ``inputs`` (or ``region``).

    ``inputs``: input indices (``[0, 1]``) or region names (``["obs[0]", "obs[1]"]``, the
    keys of a ``Dict`` observation); ``region``: a region name (``"patch[1,2]"``, a key of
    ``regions=``) or a boolean mask of the attributed layout (an image mask of height ×
    width covers every channel). Several are one region, their union. The share is
    measured by :func:`rli.attribution.attribute` (``target``, ``method``, ``baseline``,
    ``n_steps``, ``layer``, ``regions`` and ``options`` are passed on) and averaged over
    episodes (``groups=``, default the ``episode`` label); the claim passes when the lower
    end of the share's 95% CI is at least ``min_share``. Observations from at least two
    episodes (groups) are required.

    Example:
        >>> import torch, torch.nn as nn, numpy as np, rli
        >>> net = nn.Linear(4, 1)
        >>> with torch.no_grad():
        ...     _ = net.weight.copy_(torch.tensor([[1.0, -1.0, 0.0, 0.0]]))
        >>> obs = rli.ObsSet(np.random.default_rng(0).normal(size=(40, 4)), labels={"episode": np.arange(40) // 10})
        >>> result = assert_attribution_in(policy=rli.load_policy(net), obs=obs, inputs=[0, 1], min_share=0.9,
        ...                                target="action:0", n_steps=8)
    """
    __tracebackhide__ = True
    if not isinstance(policy, Policy):
        raise RliError(f"assert_attribution_in: policy must be an rli.Policy (from rli.load_policy), not "
                       f"{type(policy).__name__}")
    if (inputs is None) == (region is None):
        raise RliError("assert_attribution_in: give exactly one of inputs= (input indices or region names, e.g. "
                       "[0, 1]) or region= (a region name or a boolean mask)")
    min_share = checks.real(min_share, "min_share")
    if not 0.0 < min_share <= 1.0:
        raise RliError(f"assert_attribution_in: min_share must be in (0, 1] (a fraction of the attribution mass), "
                       f"got {min_share}")
    n = policy.prepare_obs(obs).shape[0]
    ids, grouped_by = groups_of(obs, groups, n)
    if np.unique(ids).size < 2:
        raise RliError(f"assert_attribution_in: the observations come from {np.unique(ids).size} group (by "
                       f"{grouped_by}); the share's CI is over episodes, so give observations from several episodes "
                       "(rli.ObsSet.from_rollouts with episodes=, or groups=)")
    result = attribute(policy, obs, target=target, method=method, baseline=baseline, n_steps=n_steps, layer=layer,
                       groups=groups, regions=regions, seed=seed, **options)
    which = inputs if inputs is not None else region
    if isinstance(which, (int, np.integer)) and not isinstance(which, bool):
        which = [int(which)]
    if isinstance(which, Sequence) and not isinstance(which, str) and which and \
            all(isinstance(i, str) for i in which) and len(which) == 1:
        which = which[0]
    share = result.share_of(which)
    passed = bool(share.ci[0] >= min_share)
    summary = (f"assert_attribution_in: the share of |attribution| on {share.name} is {share.share:.3f} (95% CI "
               f"[{share.ci[0]:.3f}, {share.ci[1]:.3f}]); its CI lower bound {share.ci[0]:.3f} < min_share={min_share}")
    details = {"method": result.method, "ci": list(share.ci), "n_groups": int(np.unique(result.groups).size),
               "shares": {s.name: s.share for s in result.shares.values()}}
    finish("assert_attribution_in", f"assert_attribution_in[{result.target}:{share.name}]",
           metric="attribution_share", value=share.share, threshold=min_share, op="ci_low >=", higher_is_better=True,
           passed=passed, summary=summary, evidence=_evidence(result), ci=share.ci, target=result.target,
           tolerance=tolerance, details=details)
    return result
