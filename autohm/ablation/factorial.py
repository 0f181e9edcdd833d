"""A 2^3 factorial analysis of the three pillars: main effects and interactions with bootstrap
intervals, so "the pillars work better together" becomes a number with an error bar.

Factors are coded -1 (off) / +1 (on). An effect is the contrast of the cell means: for a set
of factors S, effect(S) = mean over cells of y * prod_{f in S} x_f * 2 / 2^k, i.e. the mean of y
where the product is +1 minus the mean where it is -1 (the classical Yates effect). The
three-way effect (order x masks x peft) is the synergy of all three beyond what the main effects
and two-way interactions explain. Intervals: percentile bootstrap, resampling the seeds of each
cell with replacement.
"""

from __future__ import annotations

from itertools import combinations, product

import numpy as np
import pandas as pd

FACTORS = ("order", "masks", "peft")


def effect_names(factors: tuple[str, ...] = FACTORS) -> list[tuple[str, ...]]:
    """Every non-empty subset of the factors: main effects first, then interactions."""
    return [s for size in range(1, len(factors) + 1) for s in combinations(factors, size)]


def effects_of_means(cell_means: dict[tuple[int, ...], float], factors=FACTORS) -> dict[str, float]:
    """Yates effects from the mean of each cell (a tuple of -1/+1 levels in `factors` order)."""
    cells = list(product((-1, 1), repeat=len(factors)))
    missing = [c for c in cells if c not in cell_means]
    if missing:
        raise ValueError(f"the factorial is incomplete: no runs for cells {missing}")
    result = {}
    for subset in effect_names(factors):
        index = [factors.index(f) for f in subset]
        contrast = sum(cell_means[c] * np.prod([c[i] for i in index]) for c in cells)
        result[" x ".join(subset)] = float(contrast * 2 / len(cells))
    return result


def factorial_effects(
    runs: pd.DataFrame, metric: str, factors=FACTORS, bootstrap: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """Effects of `factors` on `metric` with 95% bootstrap intervals; `runs` has one row per run
    with a -1/+1 (or False/True) column per factor. Columns: effect, estimate, low, high."""
    coded = runs.assign(**{f: np.where(runs[f].astype(float) > 0, 1, -1) for f in factors})
    groups = {
        tuple(key): group[metric].to_numpy(dtype=float)
        for key, group in coded.groupby(list(factors))
    }
    estimate = effects_of_means({k: v.mean() for k, v in groups.items()}, factors)
    rng = np.random.default_rng(seed)
    samples = {name: [] for name in estimate}
    for _ in range(bootstrap):
        means = {k: rng.choice(v, size=v.size).mean() for k, v in groups.items()}
        for name, value in effects_of_means(means, factors).items():
            samples[name].append(value)
    rows = [
        {
            "effect": name,
            "estimate": value,
            "low": float(np.percentile(samples[name], 2.5)),
            "high": float(np.percentile(samples[name], 97.5)),
        }
        for name, value in estimate.items()
    ]
    return pd.DataFrame(rows)
