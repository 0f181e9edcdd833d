"""Scan-order solvers: valid permutations for every method and size, Held-Karp equals brute force,
local searches never lose to their start and find known optima, determinism, clear errors."""

import itertools
import sys

import numpy as np
import pytest

from autohm.scan_order import solvers
from autohm.scan_order.solvers import SOLVERS, path_cost, refine, solve

LOCAL_SEARCHES = ("two_opt", "or_opt", "annealing", "best")


def random_cost(n: int, seed: int = 0) -> np.ndarray:
    c = np.random.default_rng(seed).random((n, n))
    c = (c + c.T) / 2
    np.fill_diagonal(c, 0.0)
    return c


def correlation_cost(n: int, seed: int = 0) -> np.ndarray:
    """1 - |rho| of channels: noisy mixtures of 4 latent random walks (so good orders exist)."""
    rng = np.random.default_rng(seed)
    walks = np.cumsum(rng.normal(size=(500, 4)), axis=0)
    data = walks @ rng.normal(size=(4, n)) + 0.5 * walks.std() * rng.normal(size=(500, n))
    return 1.0 - np.abs(np.corrcoef(data.T))


def line_cost(n: int, seed: int = 0) -> tuple[np.ndarray, float]:
    """Points on a line in shuffled order, cost |x_i - x_j|: the optimum costs max(x) - min(x)."""
    x = np.random.default_rng(seed).permutation(np.linspace(0.0, 1.0, n) ** 2)
    return np.abs(x[:, None] - x[None, :]), 1.0


def brute_force(cost: np.ndarray) -> float:
    perms = np.array(list(itertools.permutations(range(cost.shape[0]))))
    return float(cost[perms[:, :-1], perms[:, 1:]].sum(axis=1).min())


def needs_elkai(method: str) -> None:
    if method == "lkh":
        pytest.importorskip("elkai", reason="method 'lkh' needs the optional elkai package")


@pytest.mark.parametrize(
    ("method", "n"),
    [(m, n) for m in SOLVERS for n in (1, 2, 3, 10, 40) if m != "held_karp" or n <= 16],
)
def test_every_method_returns_a_permutation(method, n):
    needs_elkai(method)
    perm = solve(random_cost(n), method, importance=np.arange(n, dtype=float))
    assert perm.dtype == np.int64
    assert np.array_equal(np.sort(perm), np.arange(n))


@pytest.mark.parametrize("n", [3, 5, 7, 8])
def test_held_karp_equals_brute_force(n):
    for seed in range(3):
        cost = random_cost(n, seed)
        assert path_cost(cost, solve(cost, "held_karp")) == pytest.approx(brute_force(cost))


def test_held_karp_handles_negative_costs_and_n_16():
    cost = random_cost(8, seed=5) - 0.5
    assert path_cost(cost, solve(cost, "held_karp")) == pytest.approx(brute_force(cost))
    cost = correlation_cost(16)
    exact = path_cost(cost, solve(cost, "held_karp"))
    assert path_cost(cost, solve(cost, "best")) == pytest.approx(exact)


@pytest.mark.parametrize(
    "cost", [random_cost(60, 1), correlation_cost(200, 2)], ids=["random", "corr"]
)
def test_local_searches_never_lose_to_nearest_neighbour(cost):
    start = path_cost(cost, solve(cost, "nearest_neighbor"))
    found = {m: path_cost(cost, solve(cost, m)) for m in LOCAL_SEARCHES}
    assert all(c <= start + 1e-9 for c in found.values()), (start, found)
    assert found["best"] <= min(found["two_opt"], found["or_opt"]) + 1e-9


def test_refine_never_loses_to_its_start():
    cost = random_cost(50, 3)
    start = np.random.default_rng(0).permutation(50)
    for method in LOCAL_SEARCHES:
        assert path_cost(cost, refine(cost, start, method)) <= path_cost(cost, start) + 1e-9


def test_two_opt_leaves_no_improving_reversal():
    """Every segment reversal (prefixes and suffixes included, the open-path moves) is checked."""
    cost = random_cost(30, 4)  # n <= 32: complete neighbour lists, an exact 2-opt optimum
    for start in (solve(cost, "nearest_neighbor"), np.random.default_rng(1).permutation(30)):
        p = refine(cost, start, "two_opt")
        here = path_cost(cost, p)
        for i, j in itertools.combinations(range(31), 2):
            moved = np.concatenate([p[:i], p[i:j][::-1], p[j:]])
            assert path_cost(cost, moved) >= here - 1e-12


@pytest.mark.parametrize("method", LOCAL_SEARCHES)
def test_local_searches_find_the_line_optimum(method):
    cost, best = line_cost(40)
    assert path_cost(cost, solve(cost, method)) == pytest.approx(best)


@pytest.mark.parametrize("method", ["two_opt", "annealing", "best"])
def test_refine_sorts_a_shuffled_line(method):
    cost, best = line_cost(60, seed=2)
    for seed in range(3):
        start = np.random.default_rng(seed).permutation(60)
        assert path_cost(cost, refine(cost, start, method, seed=seed)) == pytest.approx(best)


@pytest.mark.parametrize("method", ["nearest_neighbor", "annealing", "best"])
def test_same_seed_same_permutation(method):
    cost = correlation_cost(600 if method == "nearest_neighbor" else 150, 3)
    assert np.array_equal(solve(cost, method, seed=7), solve(cost, method, seed=7))


def test_best_is_close_to_lkh_on_correlation_costs():
    pytest.importorskip("elkai", reason="method 'lkh' needs the optional elkai package")
    cost = correlation_cost(128, 5)
    lkh = path_cost(cost, solve(cost, "lkh"))
    assert path_cost(cost, solve(cost, "best")) <= 1.02 * lkh
    small = random_cost(9, 6)
    assert path_cost(small, solve(small, "lkh")) == pytest.approx(brute_force(small))


def test_lkh_without_elkai_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "elkai", None)  # `import elkai` now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'autohm\[tsp\]'"):
        solve(random_cost(5), "lkh")


def test_time_limit_still_returns_a_local_optimum():
    cost = correlation_cost(100, 4)
    start = path_cost(cost, solve(cost, "nearest_neighbor"))
    for method in ("annealing", "best"):
        perm = solve(cost, method, time_limit=0.0)
        assert np.array_equal(np.sort(perm), np.arange(100))
        assert path_cost(cost, perm) <= start + 1e-9


def test_importance_puts_the_most_important_first():
    imp = np.array([0.1, 3.0, 2.0, 3.0, -1.0])
    assert solve(random_cost(5), "importance", importance=imp).tolist() == [1, 3, 2, 0, 4]


def test_path_cost_is_open():
    cost = np.array([[0.0, 1.0, 5.0], [1.0, 0.0, 2.0], [5.0, 2.0, 0.0]])
    assert path_cost(cost, np.array([0, 1, 2])) == 3.0
    assert path_cost(cost, np.array([2, 0, 1])) == 6.0


@pytest.mark.parametrize(
    "cost, method, kwargs, message",
    [
        (np.ones((3, 4)), "best", {}, "square 2-D"),
        (np.ones(3), "best", {}, "square 2-D"),
        (np.zeros((0, 0)), "best", {}, "n == 0"),
        (np.array([[0.0, np.nan], [np.nan, 0.0]]), "best", {}, "NaN"),
        (np.array([[0.0, 1.0], [2.0, 0.0]]), "best", {}, "symmetric"),
        (np.zeros((3, 3)), "greedy", {}, "unknown method 'greedy'; available: identity, "),
        (np.zeros((17, 17)), "held_karp", {}, "exact and exponential: n=17 > 16"),
        (np.zeros((3, 3)), "importance", {}, "needs importance="),
        (np.zeros((3, 3)), "importance", {"importance": np.ones(4)}, r"shape \(3,\)"),
    ],
)
def test_clear_errors(cost, method, kwargs, message):
    with pytest.raises(ValueError, match=message):
        solve(cost, method, **kwargs)


def test_refine_rejects_a_non_permutation():
    with pytest.raises(ValueError, match=r"permutation of range\(3\)"):
        refine(np.zeros((3, 3)), np.array([0, 0, 1]))


def test_best_takes_50_kicks_per_node_up_to_512_and_fewer_beyond():
    assert solvers._ils_kicks(100) == 5000 and solvers._ils_kicks(512) == 50 * 512
    assert solvers._ils_kicks(1536) == 4926  # 50 * 512 * (1 / 3) ** 1.5: 3.2 per node
    assert solvers._ils_kicks(513) < 50 * 513 and solvers._ils_kicks(4096) < 4926
