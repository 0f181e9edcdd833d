"""Scan-order solvers side by side on correlation costs with structure: channels are noisy
mixtures of a few latent random walks, cost = 1 - |rho|. Prints method x n: path cost, gap to
LKH (without elkai: to the cheapest path found) and wall time.

Run: python benchmarks/scan_order_solvers.py [n ...]   (default 128 512). Every method runs once
on a small matrix first, so numba's compilation is not timed."""

from __future__ import annotations

import sys
import time

import numpy as np

from autohm.scan_order.solvers import SOLVERS, path_cost, solve

SAMPLES = 2000
LATENT = 6
NOISE = 0.5


def correlation_cost(n: int, seed: int = 0) -> np.ndarray:
    """1 - |rho| of n channels, each a random mixture of LATENT random walks plus white noise."""
    rng = np.random.default_rng(seed)
    walks = np.cumsum(rng.normal(size=(SAMPLES, LATENT)), axis=0)
    data = walks @ rng.normal(size=(LATENT, n)) + NOISE * walks.std() * rng.normal(
        size=(SAMPLES, n)
    )
    cost = 1.0 - np.abs(np.corrcoef(data.T))
    np.fill_diagonal(cost, 0.0)
    return cost


def available(n: int) -> list[str]:
    """The methods that run at this size (held_karp only up to its limit, lkh only with elkai)."""
    names = [m for m in SOLVERS if m != "held_karp" or n <= 16]
    try:
        import elkai  # noqa: F401
    except ImportError:
        names.remove("lkh")
    return names


def run(sizes: list[int]) -> None:
    """Time every method once per size and print the table."""
    warm = correlation_cost(12)
    for method in available(12):
        solve(warm, method, importance=np.ones(12))
    print(f"{'method':<18}{'n':>6}{'cost':>12}{'gap %':>9}{'time s':>9}")
    for n in sizes:
        cost = correlation_cost(n)
        importance = np.random.default_rng(1).random(n)
        rows = []
        for method in available(n):
            t0 = time.perf_counter()
            perm = solve(cost, method, seed=0, importance=importance)
            rows.append((method, path_cost(cost, perm), time.perf_counter() - t0))
        ref = dict((m, c) for m, c, _ in rows).get("lkh", min(c for _, c, _ in rows))
        for method, c, seconds in rows:
            print(f"{method:<18}{n:>6}{c:>12.4f}{100 * (c / ref - 1):>9.2f}{seconds:>9.3f}")


if __name__ == "__main__":
    run([int(a) for a in sys.argv[1:]] or [128, 512])
