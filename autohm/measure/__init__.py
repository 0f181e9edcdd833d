"""Objective measurements of a candidate: forward FLOPs (counted and analytic) and latency."""

from autohm.measure.deployment import DEFAULT_BATCH, check_options, check_shape, default_batch
from autohm.measure.effective import dense_and_effective_flops, deployed_flops
from autohm.measure.flops import CONVENTION, FlopCount, analytic_flops, count_flops, scan_flops
from autohm.measure.latency import Latency, measure_latency

__all__ = [
    "CONVENTION",
    "DEFAULT_BATCH",
    "default_batch",
    "FlopCount",
    "Latency",
    "analytic_flops",
    "check_options",
    "check_shape",
    "count_flops",
    "dense_and_effective_flops",
    "deployed_flops",
    "measure_latency",
    "scan_flops",
]
