"""Seeded stratified train / validation / test split: every class is divided in (nearly) the
given proportions, so small validation and test sets still see every frequent class."""

from __future__ import annotations

import numpy as np


def _cycle(weights: tuple[int, ...]) -> np.ndarray:
    """One period of split indices with weights[i] entries of split i, spread evenly (e.g. 8, 1, 1
    gives 0 0 0 0 1 0 0 0 0 2), so a run of any length is divided close to the weights."""
    total = sum(weights)
    counts = [0] * len(weights)
    cycle = []
    for step in range(1, total + 1):
        chosen = max(range(len(weights)), key=lambda i: weights[i] * step / total - counts[i])
        counts[chosen] += 1
        cycle.append(chosen)
    return np.array(cycle)


def stratified_split(
    labels: np.ndarray, weights: tuple[int, int, int], seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Disjoint sorted index arrays (train, validation, test) covering range(len(labels)), in the
    proportions of `weights` within every class; the same seed gives the same split."""
    order = np.random.default_rng(seed).permutation(len(labels))
    order = order[np.argsort(labels[order], kind="stable")]  # grouped by class, shuffled within
    assignment = np.resize(_cycle(weights), len(order))
    train, validation, test = (np.sort(order[assignment == split]) for split in range(3))
    return train, validation, test
