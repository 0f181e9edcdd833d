"""The four objectives and the geometry of their front: dominance, the normalisation that makes
them comparable, and the hypervolume.

Hypervolume units (docs/search.md): every objective becomes a loss to minimise and is
divided by a fixed scale, so that the reference point is (1, 1, 1, 1) and the hypervolume is the
fraction of that unit box the front dominates, in [0, 1]:

    accuracy -> 1 - accuracy                  (reference: accuracy 0)
    flops    -> flops / (1.1 * flops_dense)   (reference: 110% of the dense model's)
    params   -> params / (1.1 * params_total) (reference: 110% of all weights trainable)
    latency  -> latency / 2                   (reference: twice the dense model's latency)

`latency` is the compact model's latency as a multiple of the dense base model's, both timed
in turns at the deployment shape (1.0: as fast as the base). The margins let the dense model
and full fine-tuning still count. flops_dense and params_total come from the anchor, the
study's completed trial with the lowest number (the same for every trial of a study).

Studies made before compaction recorded `latency_ms` (the ratio times the reference's time in
ms) as the fourth objective; autohm.outcome reads them as the ratio they were made from.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
from optuna.trial import FrozenTrial

OBJECTIVES = ("accuracy", "flops", "params", "latency")
DIRECTIONS = ("maximize", "minimize", "minimize", "minimize")
MARGIN = 1.1  # the reference point lies this far beyond the dense model and full fine-tuning
LATENCY_REFERENCE = 2.0  # twice the dense model's latency
OLD_OBJECTIVES = ("accuracy", "flops", "params", "latency_ms")  # studies before compaction


class Anchor(Protocol):
    """What the hypervolume units need of the anchor trial (autohm.outcome.TrialOutcome)."""

    flops: float
    params: float
    flops_dense: float | None
    params_total: float | None


def scales(anchor: Anchor) -> np.ndarray:
    """The divisors of the loss units from the anchor trial (objective values alone suffice:
    a missing dense count falls back to twice the anchor's own value)."""
    flops = MARGIN * (anchor.flops_dense or 2 * anchor.flops)
    params = MARGIN * (anchor.params_total or 2 * anchor.params)
    return np.array([1.0, flops, params, LATENCY_REFERENCE], dtype=float)


def to_loss(values: Sequence[Sequence[float]], scale: np.ndarray) -> np.ndarray:
    """Objective vectors (accuracy, flops, params, latency_ms) as normalised losses; the
    reference point is all ones."""
    points = np.asarray(values, dtype=float).reshape(-1, len(OBJECTIVES))
    losses = points.copy()
    losses[:, 0] = 1.0 - points[:, 0]
    return losses / scale


def minimised(values: Sequence[Sequence[float]]) -> np.ndarray:
    """Objective vectors with accuracy negated, so that every column is minimised."""
    points = np.asarray(values, dtype=float).reshape(-1, len(OBJECTIVES)).copy()
    points[:, 0] = -points[:, 0]
    return points


def pareto_mask(losses: np.ndarray) -> np.ndarray:
    """True for the points no other point dominates (all columns minimised; equal points are
    all kept)."""
    losses = np.asarray(losses, dtype=float)
    if len(losses) == 0:
        return np.zeros(0, dtype=bool)
    no_worse = (losses[:, None, :] <= losses[None, :, :]).all(-1)
    better = (losses[:, None, :] < losses[None, :, :]).any(-1)
    return ~(no_worse & better).any(axis=0)


def hypervolume(losses: np.ndarray, reference: Sequence[float] | None = None) -> float:
    """The volume dominated by `losses` (minimised) and bounded by `reference` (default: all
    ones); exact, by slicing along the last objective (fine for fronts of a few hundred points
    in 4-D)."""
    losses = np.asarray(losses, dtype=float)
    if losses.ndim != 2 or len(losses) == 0:
        return 0.0
    ref = np.ones(losses.shape[1]) if reference is None else np.asarray(reference, dtype=float)
    inside = losses[(losses < ref).all(axis=1)]
    if len(inside) == 0:
        return 0.0
    return float(_sliced(inside[pareto_mask(inside)], ref))


def _sliced(points: np.ndarray, ref: np.ndarray) -> float:
    if points.shape[1] == 1:
        return float(ref[0] - points[:, 0].min())
    if points.shape[1] == 2:
        staircase = points[np.argsort(points[:, 0], kind="stable")]
        lowest = np.minimum.accumulate(staircase[:, 1])
        widths = np.diff(np.append(staircase[:, 0], ref[0]))
        return float(np.sum(widths * (ref[1] - lowest)))
    ordered = points[np.argsort(points[:, -1], kind="stable")]
    tops = np.append(ordered[1:, -1], ref[-1])
    total = 0.0
    for i in range(len(ordered)):
        depth = tops[i] - ordered[i, -1]
        if depth > 0:
            slab = ordered[: i + 1, :-1]
            total += depth * _sliced(slab[pareto_mask(slab)], ref[:-1])
    return total


def normalised_hypervolume(values: Sequence[Sequence[float]], anchor: Anchor) -> float:
    """The hypervolume of objective vectors in the units above (anchor: the anchor trial's
    outcome)."""
    if len(values) == 0:
        return 0.0
    return hypervolume(to_loss(values, scales(anchor)))


def front_mask(losses: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """pareto_mask for many points: a point dominated within its chunk is dominated, so only
    the chunks' survivors are compared with each other (about n * chunk comparisons instead of
    n^2 when the front is small; every point on it is compared with every other)."""
    losses = np.asarray(losses, dtype=float)
    if len(losses) <= chunk:
        return pareto_mask(losses)
    starts = range(0, len(losses), chunk)
    survivors = np.concatenate(
        [start + np.flatnonzero(pareto_mask(losses[start : start + chunk])) for start in starts]
    )
    mask = np.zeros(len(losses), dtype=bool)
    mask[survivors] = pareto_mask(losses[survivors])
    return mask


def feasible(trial: FrozenTrial) -> bool:
    """Every constraint satisfied (a trial without constraints is feasible)."""
    return all(value <= 0 for value in trial.constraints.values())
