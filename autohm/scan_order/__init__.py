"""Pillar 1, the variable-aware scan order: calibration statistics of the channels' states, the
cost 1 - |rho| between channels, open-path solvers over it, and the exact channel permutation.

Permuting channels is an exact equivalence: the order alone never changes a model's outputs.
It matters where channels are grouped into blocks (block-granular masks, kernels that skip
blocks of dead channels).
"""

from autohm.scan_order.permute import (
    as_permutation,
    inverse_permutation,
    permute_channels,
    permute_state,
)
from autohm.scan_order.solvers import (
    HELD_KARP_MAX_N,
    SOLVERS,
    MissingSolverError,
    SolverError,
    path_cost,
    refine,
    solve,
)
from autohm.scan_order.statistics import (
    SOURCES,
    StreamingCovariance,
    collect_statistics,
    correlation_cost,
)

__all__ = [
    "HELD_KARP_MAX_N",
    "SOLVERS",
    "MissingSolverError",
    "SolverError",
    "refine",
    "SOURCES",
    "StreamingCovariance",
    "as_permutation",
    "collect_statistics",
    "correlation_cost",
    "inverse_permutation",
    "path_cost",
    "permute_channels",
    "permute_state",
    "solve",
]
