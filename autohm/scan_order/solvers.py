"""Scan-order solvers: the cheapest open Hamiltonian path through the channels (pillar 1).

Problem. Given a symmetric cost matrix C (n x n; for the scan order C = 1 - |rho| of the channel
correlations), find a permutation p of range(n) minimising path_cost = sum_k C[p[k], p[k+1]]: an
open path, with no edge back from the last node to the first. This is the travelling-salesman
problem with free endpoints (NP-hard). The local searches add a dummy node with zero cost to
every channel, which closes the path into a tour: every tour move is then a path move, and the
moves that touch the dummy are the open-path special cases (reversing a prefix or a suffix,
moving a segment to an end). Cutting the tour at the dummy gives the path back.

Input. C must be square, finite and symmetric up to rounding (max |C - C.T| <= 1e-6 max |C|); it
is averaged with its transpose and its diagonal is ignored. Negative entries are allowed.

Solvers (SOLVERS, name -> solver: a callable taking a PathProblem and returning the order;
add one to the mapping to make it a `scan_order.method` everywhere). Each returns a valid
permutation for every n >= 1; with n <= 2 every order costs the same.
- identity: arange(n), the model's own order (the baseline).
- nearest_neighbor: greedy, always on to the cheapest unvisited node, from every start node when
  n <= 256, else from a seeded sample of max(16, 2**25 // n**2) starts; the cheapest path wins.
  O(n^2) per start.
- two_opt: from nearest_neighbor, 2-opt (swap two edges for two others by reversing the part of
  the tour between them) until no move improves. Neighbour lists (each node's 32 cheapest
  partners) with the exact gain criterion and a queue of nodes to re-examine (don't-look bits);
  for n <= 32 the lists are complete and the result is a true 2-opt local optimum. Finding a
  move costs O(32); applying it O(n) (an array reversal, of the shorter side).
- or_opt: from nearest_neighbor, Or-opt until no move improves: move a run of 1 to 3
  consecutive nodes between two other neighbours, either way round (same lists and queue).
- annealing: simulated annealing from nearest_neighbor. A move is the 2-opt move that joins a
  random node to one of its 16 cheapest partners (a random direction). Schedule: start
  temperature T0 = the mean cost increase of those of 1000 random moves that increase the cost
  (an average uphill move is first accepted with probability 1/e), geometric cooling to
  T0 * 1e-3 over 5000 * n moves, Metropolis acceptance exp(-delta / T). The best path seen is
  kept and finished with 2-opt + Or-opt.
- held_karp: exact dynamic programming over subsets (min over start and end nodes),
  O(2^n n^2) time and O(2^n n) memory, so n <= 16 (about 0.1 s there).
- lkh: Helsgaun's LKH heuristic through the optional `elkai` package (pip install
  'autohm[tsp]') on the tour with the dummy node; costs are shifted to >= 0 and scaled to
  integers up to 1e6 (LKH works on integers). Usually optimal or within a fraction of a percent,
  but slow at mamba's widths (minutes per layer at n = 1536). LKH uses its own
  fixed seed, so `seed` does not change its result.
- importance: argsort of `importance`, descending (most important channel first; ties keep the
  channel order). Ignores the cost.
- best: nearest_neighbor, then 2-opt and Or-opt together until neither improves, then iterated
  local search: K times, swap two adjacent runs of 1 to 10 nodes at a random place (a
  double bridge), descend with 2-opt + Or-opt from the six nodes touched, and keep the result
  unless it is worse. K = 50 n up to n = 512, then 50 * 512 * (512 / n)^1.5, so that a wide
  layer costs about twice what n = 512 does rather than n^2 / 512^2 times as much (quality
  against LKH and against more kicks: docs/benchmarks.md).

Determinism: every method returns the same permutation for the same input and seed, unless a
`time_limit` cuts annealing or best short (they check the clock between 20 chunks of work).
The numba kernels compile on first use (several seconds) and are cached on disk (autohm.cache);
they release the GIL, so layers can be solved in parallel threads.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from autohm.cache import cached_njit
from autohm.errors import AutohmError

HELD_KARP_MAX_N = 16

_NEIGHBOURS = 32  # neighbour-list length of the local searches
_ANNEAL_NEIGHBOURS = 16  # annealing joins a node to one of its this many cheapest partners
_ANNEAL_MOVES_PER_NODE = 5000
_ANNEAL_COOLING = 1e-3  # final temperature / start temperature
_KICKS_PER_NODE = 50  # iterated local search ("best"), up to _KICKS_FULL_N nodes
_KICKS_FULL_N = 512
_KICK_MAX_SEGMENT = 10
_CHUNKS = 20  # annealing and best check time_limit between this many chunks of work
_LKH_SCALE = 1e6
_LKH_RUNS = 10
_SYMMETRY_RTOL = 1e-6


class SolverError(AutohmError, ValueError):
    """Bad input to a scan-order solver (cost matrix, method, importance, size)."""


class MissingSolverError(AutohmError, ImportError):
    """A solver whose optional dependency is not installed."""


def path_cost(cost: np.ndarray, perm: np.ndarray) -> float:
    """Summed cost of consecutive nodes of the open path `perm` (no edge back to the start)."""
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2 or cost.shape[0] != cost.shape[1]:
        raise SolverError(f"cost must be a square 2-D matrix, got shape {cost.shape}")
    perm = _validated_perm(perm, cost.shape[0])
    return float(cost[perm[:-1], perm[1:]].sum())


@dataclass(frozen=True)
class PathProblem:
    """One layer's order problem: the validated cost (symmetric, finite, n >= 1), the seed, a
    score per channel (for solvers that order by importance) and a soft time limit in seconds
    (for solvers that can stop early)."""

    cost: np.ndarray
    seed: int = 0
    importance: np.ndarray | None = None
    time_limit: float | None = None

    @property
    def n(self) -> int:
        return self.cost.shape[0]


class Solver(Protocol):
    """A scan-order solver: the order (an int64 permutation of range(problem.n))."""

    def __call__(self, problem: PathProblem) -> np.ndarray: ...


def solve(
    cost: np.ndarray,
    method: str,
    seed: int = 0,
    importance: np.ndarray | None = None,
    time_limit: float | None = None,
) -> np.ndarray:
    """Channel order (int64 permutation) minimising path_cost with the solver `method` (see
    SOLVERS). `importance` is read by "importance" only; `time_limit` (seconds, soft) by
    annealing and best only."""
    problem = PathProblem(_validated_cost(cost), seed, importance, time_limit)
    solver = SOLVERS.get(method)
    if solver is None:
        raise SolverError(f"unknown method {method!r}; available: {', '.join(SOLVERS)}")
    return solver(problem)


def refine(
    cost: np.ndarray,
    perm: np.ndarray,
    method: str = "best",
    seed: int = 0,
    time_limit: float | None = None,
) -> np.ndarray:
    """Improve a given order with a local search: "two_opt", "or_opt", "annealing" or "best".

    For warm starts (e.g. the previous layer's order); the result is never worse than `perm`.
    """
    cost = _validated_cost(cost)
    perm = _validated_perm(perm, cost.shape[0])
    if method not in _IMPROVERS:
        raise SolverError(f"refine: unknown method {method!r}; available: {', '.join(_IMPROVERS)}")
    if cost.shape[0] <= 2:
        return perm.copy()
    ext = _with_dummy(cost)
    tour = np.concatenate([[cost.shape[0]], perm]).astype(np.int64)
    eps = 1e-9 * float(np.abs(cost).max())
    return _open_path(_IMPROVERS[method](ext, _neighbour_lists(ext), tour, eps, seed, time_limit))


# ---- input checks -------------------------------------------------------------------------------


def _validated_cost(cost: np.ndarray) -> np.ndarray:
    c = np.asarray(cost, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise SolverError(f"cost must be a square 2-D matrix, got shape {c.shape}")
    if c.shape[0] == 0:
        raise SolverError("cost is empty (n == 0): there is nothing to order")
    if not np.isfinite(c).all():
        raise SolverError("cost has NaN or infinite entries")
    asym = float(np.abs(c - c.T).max())
    if asym > _SYMMETRY_RTOL * float(np.abs(c).max()):
        raise SolverError(f"cost must be symmetric, max |cost - cost.T| = {asym:.3g}")
    return np.ascontiguousarray((c + c.T) / 2)


def _validated_perm(perm: np.ndarray, n: int) -> np.ndarray:
    p = np.asarray(perm)
    if p.shape != (n,) or not np.array_equal(np.sort(p), np.arange(n)):
        raise SolverError(f"perm must be a permutation of range({n}), got shape {p.shape}")
    return p.astype(np.int64)


# ---- the solvers ---------------------------------------------------------------------------------


def _identity(problem: PathProblem) -> np.ndarray:
    return np.arange(problem.n, dtype=np.int64)


def _by_importance(problem: PathProblem) -> np.ndarray:
    n = problem.n
    if problem.importance is None:
        raise SolverError("method 'importance' needs importance= (one score per channel)")
    imp = np.asarray(problem.importance, dtype=np.float64)
    if imp.shape != (n,):
        raise SolverError(f"importance must have shape ({n},), got {imp.shape}")
    if not np.isfinite(imp).all():
        raise SolverError("importance has NaN or infinite entries")
    return np.argsort(-imp, kind="stable").astype(np.int64)


def _greedy(problem: PathProblem) -> np.ndarray:
    if problem.n <= 2:
        return _identity(problem)
    return _nearest_neighbour(problem.cost, _nn_starts(problem.n, problem.seed))


def _exact(problem: PathProblem) -> np.ndarray:
    if problem.n > HELD_KARP_MAX_N:
        raise SolverError(
            f"held_karp is exact and exponential: n={problem.n} > {HELD_KARP_MAX_N}; "
            "use 'best', 'lkh' or 'annealing'"
        )
    return _identity(problem) if problem.n <= 2 else _held_karp(problem.cost)


def _lkh_solver(problem: PathProblem) -> np.ndarray:
    return _identity(problem) if problem.n <= 2 else _lkh(problem.cost)


def _refined(method: str) -> Solver:
    """The solver that refines the greedy order with the local search `method`."""

    def solver(problem: PathProblem) -> np.ndarray:
        start = _greedy(problem)
        return refine(problem.cost, start, method, seed=problem.seed, time_limit=problem.time_limit)

    return solver


# ---- construction: nearest neighbour, Held-Karp, LKH --------------------------------------------


def _nn_starts(n: int, seed: int) -> np.ndarray:
    count = min(n, max(16, 2**25 // n**2))
    if count == n:
        return np.arange(n, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(n, size=count, replace=False))


@cached_njit(nogil=True)
def _nearest_neighbour(cost, starts):
    n = cost.shape[0]
    best = np.arange(n)
    best_cost = np.inf
    path = np.empty(n, dtype=np.int64)
    visited = np.empty(n, dtype=np.bool_)
    for s in starts:
        visited[:] = False
        path[0] = s
        visited[s] = True
        total = 0.0
        for k in range(1, n):
            cur = path[k - 1]
            nxt = -1
            nearest = np.inf
            for j in range(n):
                if not visited[j] and cost[cur, j] < nearest:
                    nearest = cost[cur, j]
                    nxt = j
            path[k] = nxt
            visited[nxt] = True
            total += nearest
        if total < best_cost:
            best_cost = total
            best[:] = path
    return best


@cached_njit(nogil=True)
def _held_karp(cost):
    n = cost.shape[0]
    full = (1 << n) - 1
    dp = np.full((full + 1, n), np.inf)
    parent = np.full((full + 1, n), -1, dtype=np.int8)
    for j in range(n):
        dp[1 << j, j] = 0.0
    for mask in range(1, full + 1):
        for j in range(n):
            here = dp[mask, j]
            if (mask >> j) & 1 == 0 or here == np.inf:
                continue
            for k in range(n):
                if (mask >> k) & 1 == 0 and here + cost[j, k] < dp[mask | (1 << k), k]:
                    dp[mask | (1 << k), k] = here + cost[j, k]
                    parent[mask | (1 << k), k] = j
    path = np.empty(n, dtype=np.int64)
    path[n - 1] = np.argmin(dp[full])
    mask = full
    for k in range(n - 1, 0, -1):
        path[k - 1] = parent[mask, path[k]]
        mask ^= 1 << path[k]
    return path


def _lkh(cost: np.ndarray) -> np.ndarray:
    try:
        import elkai
    except ImportError as err:
        raise MissingSolverError("method 'lkh' needs elkai: pip install 'autohm[tsp]'") from err
    n = cost.shape[0]
    off_diagonal = ~np.eye(n, dtype=bool)
    shifted = cost - cost[off_diagonal].min()
    top = float(shifted[off_diagonal].max())
    if top == 0.0:  # every order costs the same
        return np.arange(n, dtype=np.int64)
    ints = np.zeros((n + 1, n + 1), dtype=np.int64)  # node n: the dummy, 0 to everything
    ints[:n, :n] = np.rint(shifted * (_LKH_SCALE / top))
    np.fill_diagonal(ints, 0)
    return _open_path(np.asarray(elkai.DistanceMatrix(ints.tolist()).solve_tsp(_LKH_RUNS)[:-1]))


# ---- local search on the closed tour through the dummy node -------------------------------------
# The tour is a cyclic array with positions `pos`; every move is one or more 2-opt moves, each
# reversing the shorter of the two arcs it may reverse (the same cycle either way).


def _with_dummy(cost: np.ndarray) -> np.ndarray:
    n = cost.shape[0]
    ext = np.zeros((n + 1, n + 1))
    ext[:n, :n] = cost
    return ext


def _neighbour_lists(ext: np.ndarray) -> np.ndarray:
    """Each node's cheapest partners, cheapest first (row i excludes i)."""
    m = ext.shape[0]
    k = min(m - 1, _NEIGHBOURS)
    d = ext.copy()
    np.fill_diagonal(d, np.inf)
    if k < m - 1:
        cand = np.argpartition(d, k - 1, axis=1)[:, :k]
        order = np.argsort(np.take_along_axis(d, cand, axis=1), axis=1, kind="stable")
        return np.ascontiguousarray(np.take_along_axis(cand, order, axis=1))
    return np.ascontiguousarray(np.argsort(d, axis=1, kind="stable")[:, :k])


def _open_path(tour: np.ndarray) -> np.ndarray:
    """The path that the closed tour makes once the dummy (the largest node) is cut out."""
    dummy = int(np.flatnonzero(tour == tour.size - 1)[0])
    return np.roll(tour, -dummy)[1:].astype(np.int64)


@cached_njit(nogil=True)
def _positions(tour):
    pos = np.empty_like(tour)
    for k in range(tour.size):
        pos[tour[k]] = k
    return pos


@cached_njit(nogil=True)
def _tour_cost(ext, tour):
    total = ext[tour[-1], tour[0]]
    for k in range(tour.size - 1):
        total += ext[tour[k], tour[k + 1]]
    return total


@cached_njit(nogil=True)
def _push(node, queue, queued, qstate):
    """Append `node` to the circular work queue unless it is already in it (don't-look bits)."""
    if not queued[node]:
        queued[node] = True
        queue[(qstate[0] + qstate[1]) % queue.size] = node
        qstate[1] += 1


@cached_njit(nogil=True)
def _reverse_arc(tour, pos, i, j):
    """Reverse the arc from position i forward to position j, or the complement if shorter."""
    m = tour.size
    length = (j - i) % m + 1
    if 2 * length > m:
        i, j, length = (j + 1) % m, (i - 1) % m, m - length
    for _ in range(length // 2):
        a, b = tour[i], tour[j]
        tour[i], tour[j] = b, a
        pos[b], pos[a] = i, j
        i = i + 1 if i + 1 < m else 0
        j = j - 1 if j > 0 else m - 1


@cached_njit(nogil=True)
def _two_opt_move(tour, pos, a, b, c, d):
    """Replace edges (a, b), (c, d) by (a, c), (b, d); b, d follow a, c in the same direction."""
    if b == c or a == d:
        return
    if tour[(pos[a] + 1) % tour.size] == b:
        _reverse_arc(tour, pos, pos[b], pos[c])
    else:
        _reverse_arc(tour, pos, pos[a], pos[d])


@cached_njit(nogil=True)
def _try_two_opt(ext, neigh, tour, pos, a, eps, queue, queued, qstate):
    """First-improvement 2-opt from node a: (a, b), (c, d) -> (a, c), (b, d); returns the gain."""
    m = tour.size
    for step in (1, -1):  # b = successor of a, then b = predecessor
        b = tour[(pos[a] + step) % m]
        for k in range(neigh.shape[1]):
            c = neigh[a, k]
            gain = ext[a, b] - ext[a, c]
            if gain <= eps:
                break  # the lists are sorted: no later c can help from this side
            d = tour[(pos[c] + step) % m]
            gain += ext[c, d] - ext[b, d]
            if c == b or d == a or gain <= eps:
                continue
            _two_opt_move(tour, pos, a, b, c, d)
            for node in (a, b, c, d):
                _push(node, queue, queued, qstate)
            return gain
    return 0.0


@cached_njit(nogil=True)
def _move_segment(tour, pos, p, f, last, q, c, e, x):
    """Or-opt as 2-opt moves: segment f..last (between p and q) goes between c and e, x next to c.

    Frame: the direction in which f follows p. Make e follow c in it, and c not precede p.
    """
    forward = tour[(pos[p] + 1) % tour.size] == f
    if (tour[(pos[c] + 1) % tour.size] == e) != forward:
        c, e, x = e, c, f + last - x
    if e == p:  # the mirror frame: the segment runs last..f between q and p
        p, f, last, q, c, e, x = q, last, f, p, e, c, f + last - x
    _two_opt_move(tour, pos, p, f, c, e)  # p c .. q last .. f e
    _two_opt_move(tour, pos, p, c, q, last)  # p q .. c last .. f e
    if x == f:
        _two_opt_move(tour, pos, c, last, f, e)  # p q .. c f .. last e


@cached_njit(nogil=True)
def _try_or_opt(ext, neigh, tour, pos, a, eps, queue, queued, qstate):
    """Or-opt for the segments of 1 to 3 nodes that start at node a (either way); the gain."""
    m = tour.size
    for length in range(1, min(4, m - 2)):
        for step in range(1, -2 if length > 1 else 0, -2):  # 1, then -1 unless length == 1
            last = tour[(pos[a] + step * (length - 1)) % m]
            p, q = tour[(pos[a] - step) % m], tour[(pos[last] + step) % m]
            removed = ext[p, a] + ext[last, q] - ext[p, q]
            for end in range(2 if length > 1 else 1):  # x: the end to go next to c
                x, y = (a, last) if end == 0 else (last, a)
                for k in range(neigh.shape[1]):
                    c = neigh[x, k]
                    gain = removed - ext[c, x]
                    if gain <= eps:
                        break
                    if (step * (pos[c] - pos[a])) % m < length:
                        continue  # c is in the segment
                    for side in (1, -1):
                        e = tour[(pos[c] + side) % m]
                        total = gain + ext[c, e] - ext[y, e]
                        if (step * (pos[e] - pos[a])) % m < length or total <= eps:
                            continue
                        _move_segment(tour, pos, p, a, last, q, c, e, x)
                        for node in (p, q, a, last, c, e):
                            _push(node, queue, queued, qstate)
                        return total
    return 0.0


@cached_njit(nogil=True)
def _descend(ext, neigh, tour, pos, eps, queue, queued, qstate, two_opt, or_opt):
    """Improving moves from the queued nodes until the queue is empty; the total gain."""
    total = 0.0
    while qstate[1] > 0:
        a = queue[qstate[0]]
        qstate[0] = (qstate[0] + 1) % queue.size
        qstate[1] -= 1
        queued[a] = False
        gain = 0.0
        if two_opt:
            gain = _try_two_opt(ext, neigh, tour, pos, a, eps, queue, queued, qstate)
        if or_opt and gain == 0.0:
            gain = _try_or_opt(ext, neigh, tour, pos, a, eps, queue, queued, qstate)
        total += gain
    return total


@cached_njit(nogil=True)
def _local_search(ext, neigh, tour, eps, two_opt, or_opt):
    """Descend from `tour` (in place) until a pass with every node queued finds no move.

    One pass is not enough: reversing an arc can make a move between two untouched edges valid.
    """
    m = tour.size
    pos = _positions(tour)
    queued = np.empty(m, dtype=np.bool_)
    gain = 1.0
    while gain > 0.0:
        queued[:] = True
        qstate = np.array([0, m])
        gain = _descend(ext, neigh, tour, pos, eps, tour.copy(), queued, qstate, two_opt, or_opt)


@cached_njit(nogil=True)
def _iterated_local_search(ext, neigh, best, kicks, max_segment, eps, seed):
    """`kicks` rounds of: swap two random adjacent arcs (a double bridge), descend, keep the
    result unless it got worse. `best` must be a local optimum; it is updated in place."""
    np.random.seed(seed)
    m = best.size
    tour = best.copy()
    pos = _positions(tour)
    queue = np.empty(m, dtype=np.int64)
    queued = np.zeros(m, dtype=np.bool_)
    qstate = np.zeros(2, dtype=np.int64)
    max_segment = min(max_segment, (m - 1) // 2)
    for _ in range(kicks):
        la = 1 + np.random.randint(max_segment)
        lb = 1 + np.random.randint(max_segment)
        i = np.random.randint(m)
        before, a0, a1 = best[(i - 1) % m], best[i], best[(i + la - 1) % m]
        b0, b1, after = best[(i + la) % m], best[(i + la + lb - 1) % m], best[(i + la + lb) % m]
        delta = ext[before, b0] + ext[b1, a0] + ext[a1, after]
        delta -= ext[before, a0] + ext[a1, b0] + ext[b1, after]
        for k in range(lb):  # arc a0..a1 then b0..b1 becomes b0..b1 then a0..a1
            tour[(i + k) % m] = best[(i + la + k) % m]
        for k in range(la):
            tour[(i + lb + k) % m] = best[(i + k) % m]
        for k in range(i, i + la + lb):
            pos[tour[k % m]] = k % m
        for node in (before, a0, a1, b0, b1, after):
            _push(node, queue, queued, qstate)
        delta -= _descend(ext, neigh, tour, pos, eps, queue, queued, qstate, True, True)
        if delta <= 0.0:
            best[:] = tour
        else:
            tour[:] = best
            pos = _positions(tour)


@cached_njit(nogil=True)
def _anneal(ext, neigh, tour, best, temperature, cooling, moves, seed):
    """Metropolis 2-opt moves at a geometrically falling temperature; best tour kept in `best`."""
    np.random.seed(seed)
    m = tour.size
    pos = _positions(tour)
    cost = 0.0  # relative to the tour at the start of this call
    best_cost = _tour_cost(ext, best) - _tour_cost(ext, tour)
    for _ in range(moves):
        temperature *= cooling
        a = np.random.randint(m)
        c = neigh[a, np.random.randint(neigh.shape[1])]
        step = 1 if np.random.random() < 0.5 else -1
        b = tour[(pos[a] + step) % m]
        d = tour[(pos[c] + step) % m]
        if c == b or d == a:
            continue
        delta = ext[a, c] + ext[b, d] - ext[a, b] - ext[c, d]
        if delta > 0 and np.random.random() >= np.exp(-delta / temperature):
            continue
        _two_opt_move(tour, pos, a, b, c, d)
        cost += delta
        if cost < best_cost:
            best_cost = cost
            best[:] = tour
    return temperature


# ---- improvers: (ext, neigh, tour, eps, seed, time_limit) -> tour -------------------------------


def _chunk_seeds(seed: int) -> list[int]:
    return [int(s) for s in np.random.default_rng(seed).integers(2**31, size=_CHUNKS)]


def _out_of_time(t0: float, time_limit: float | None) -> bool:
    return time_limit is not None and time.perf_counter() - t0 > time_limit


def _improve_two_opt(ext, neigh, tour, eps, seed, time_limit):
    _local_search(ext, neigh, tour, eps, True, False)
    return tour


def _improve_or_opt(ext, neigh, tour, eps, seed, time_limit):
    _local_search(ext, neigh, tour, eps, False, True)
    return tour


def _improve_best(ext, neigh, tour, eps, seed, time_limit):
    t0 = time.perf_counter()
    _local_search(ext, neigh, tour, eps, True, True)
    kicks = -(-_ils_kicks(tour.size - 1) // _CHUNKS)
    for chunk_seed in _chunk_seeds(seed):
        if _out_of_time(t0, time_limit):
            break
        _iterated_local_search(ext, neigh, tour, kicks, _KICK_MAX_SEGMENT, eps, chunk_seed)
    return tour


def _ils_kicks(n: int) -> int:
    """The iterated local search's budget: 50 n kicks up to n = 512, then 50 * 512 * (512 / n)^1.5,
    so that the search of a wide layer costs about twice what it costs at n = 512 instead of
    n^2 / 512^2 times as much (a kick's descent is slower on a wider layer)."""
    if n <= _KICKS_FULL_N:
        return _KICKS_PER_NODE * n
    return int(_KICKS_PER_NODE * _KICKS_FULL_N * (_KICKS_FULL_N / n) ** 1.5)


def _start_temperature(ext, neigh, tour, eps, seed) -> float:
    """Mean cost increase of 1000 random annealing moves that increase the cost."""
    rng = np.random.default_rng(seed)
    m = tour.size
    pos = np.empty_like(tour)
    pos[tour] = np.arange(m)
    step = rng.choice([1, -1], size=1000)
    a = rng.integers(m, size=1000)
    c = neigh[a, rng.integers(neigh.shape[1], size=1000)]
    b, d = tour[(pos[a] + step) % m], tour[(pos[c] + step) % m]
    delta = ext[a, c] + ext[b, d] - ext[a, b] - ext[c, d]
    uphill = delta[delta > eps]
    return float(uphill.mean()) if uphill.size else 0.0


def _improve_annealing(ext, neigh, tour, eps, seed, time_limit):
    t0 = time.perf_counter()
    near = np.ascontiguousarray(neigh[:, :_ANNEAL_NEIGHBOURS])
    temperature = _start_temperature(ext, near, tour, eps, seed)
    best = tour.copy()
    if temperature > 0:
        moves = -(-_ANNEAL_MOVES_PER_NODE * (tour.size - 1) // _CHUNKS)
        cooling = _ANNEAL_COOLING ** (1.0 / (moves * _CHUNKS))
        for chunk_seed in _chunk_seeds(seed):
            if _out_of_time(t0, time_limit):
                break
            temperature = _anneal(ext, near, tour, best, temperature, cooling, moves, chunk_seed)
    _local_search(ext, neigh, best, eps, True, True)
    return best


_IMPROVERS: dict[str, Callable[..., np.ndarray]] = {
    "two_opt": _improve_two_opt,
    "or_opt": _improve_or_opt,
    "annealing": _improve_annealing,
    "best": _improve_best,
}

SOLVERS: dict[str, Solver] = {
    "identity": _identity,
    "nearest_neighbor": _greedy,
    "two_opt": _refined("two_opt"),
    "or_opt": _refined("or_opt"),
    "annealing": _refined("annealing"),
    "held_karp": _exact,
    "lkh": _lkh_solver,
    "importance": _by_importance,
    "best": _refined("best"),
}
