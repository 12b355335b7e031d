"""Every default that more than one place uses, in one place (standard library only: the CLI's help reads it).

Example:
    >>> from rli import defaults
    >>> defaults.EPISODES, defaults.SWEEP_EPISODES
    (20, 10)
"""

from __future__ import annotations

#: paired episodes per comparison: :func:`rli.compare`, the intervention assertions, the protocol's steps 3 and 4.
EPISODES = 20
#: episodes per point of a sweep (:func:`rli.ablation_curve`, :func:`rli.minimal_subspace`), which runs many
#: comparisons; fewer than :data:`EPISODES` each, the sweep's points share their seeds.
SWEEP_EPISODES = 10
#: visited observations kept from rollouts (the protocol's probe and PCA fit, ``rli probe`` without ``--obs``).
N_OBS = 4000
#: whole episodes those observations are spread over (enough for probes that split by episode).
OBS_EPISODES = 20
#: the k of the protocol's top-k ablations.
KS = (1, 2, 4, 8, 16)
#: K of the K-fold probe splits (:func:`rli.probe`, :func:`rli.probe_layers`, :func:`rli.polarity_test`, the
#: erasure checks, the sweep specs, ``rli probe --folds``).
FOLDS = 5
#: the largest relative drop in return a sufficient subspace may cost (:func:`rli.minimal_subspace`, the
#: protocol's step 4, the sweep spec).
TOLERANCE = 0.05
#: principal directions the protocol's subspace search may use (its sweep spec too).
CANDIDATES = 32
