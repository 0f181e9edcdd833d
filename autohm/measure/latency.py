"""Forward latency of a model, measured with a fixed protocol and reported with where it ran.

Protocol: model.eval() and torch.inference_mode(); `warmup` untimed runs (kernel compilation,
caches, allocator); then `repeats` timed runs, one forward each. CUDA: CUDA events around the
forward and a synchronize after it; CPU: time.perf_counter. Reported: the median and the
interquartile range (75th - 25th percentile, linear interpolation) in milliseconds, robust to
the odd slow run, with the device, library versions, threads and the scan backend actually used.
With a time budget the first warmup round is timed and the run counts shrink to fit it (at
least one warmup round and MIN_REPEATS timed ones): a large model's forward takes long enough
that a few runs already give a stable median, and the full protocol would cost minutes on a CPU.

With a `reference` model, the model and the reference run in turns, which of them first
alternating from round to round, and `relative` is the ratio of their 10th percentiles. A shared
machine's speed drifts by tens of percent over minutes; runs a millisecond apart share the drift
(benchmarks/latency_drift.py measures it), so trials measured at different times compare by
their ratios. Why alternate and why the 10th percentile: on an oversubscribed machine the
scheduler's time slices can lock onto a fixed order and stall one model's runs, which skews the
ratio of two identical models far from 1; alternating the order removes that bias, and the fast
runs of each model (its 10th percentile) are the ones least touched by other load
(docs/measurement.md, Latency).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from dataclasses import asdict, dataclass
from time import perf_counter
from typing import Any

import numpy as np
import torch
from torch import nn

from autohm.measure.environment import (
    device_name,
    numba_threads,
    package_version,
    pinned_scan_backend,
    scan_backends_in_use,
)

MIN_REPEATS = 5  # timed runs kept however small the budget


@dataclass
class Latency:
    """One latency measurement: robust statistics of the timed runs and their environment."""

    median_ms: float
    iqr_ms: float
    repeats: int
    warmup: int
    batch: int
    seq_len: int
    device: str  # "cpu", "cuda:0"
    device_name: str  # the CPU model or GPU name
    scan_backend: str  # the registered backend the mixers ran ("auto" resolved)
    torch_version: str
    triton_version: str | None
    num_threads: int  # torch's intra-op threads
    numba_threads: int  # threads of the numba kernels (backend "cpu")
    reference_median_ms: float | None = None  # the reference model's median, when one was timed
    reference_iqr_ms: float | None = None
    relative: float | None = None  # model / reference, 10th percentiles of their runs

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _time_cpu(forward: Callable[[], torch.Tensor], device: torch.device) -> float:
    start = perf_counter()
    forward()
    return (perf_counter() - start) * 1e3


def _time_cuda(forward: Callable[[], torch.Tensor], device: torch.device) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    forward()
    end.record()
    torch.cuda.synchronize(device)
    return start.elapsed_time(end)


def _fit(budget_s: float, round_s: float, warmup: int, repeats: int) -> tuple[int, int]:
    """(warmup, repeats) that fit `budget_s` at `round_s` a round: a sixth of the rounds for
    warming up, at least one of them and MIN_REPEATS timed ones, never more than asked."""
    rounds = int(budget_s / max(round_s, 1e-9))
    kept_warmup = min(warmup, max(1, rounds // 6))
    return kept_warmup, min(repeats, max(MIN_REPEATS, rounds - kept_warmup))


def measure_latency(
    model: nn.Module,
    input_ids: torch.Tensor,
    padding_mask: torch.Tensor | None = None,
    warmup: int = 5,
    repeats: int = 30,
    device: torch.device | str | None = None,
    scan_backend: str | None = None,
    reference: nn.Module | None = None,
    budget_s: float | None = None,
) -> Latency:
    """Latency of model(input_ids, padding_mask) by the module's protocol. `device` moves the
    model and inputs there (default: where the model is); `scan_backend` pins the mixers for
    the measurement (default: leave them, usually "auto"); `reference` is timed run for run
    in turns with the model (same inputs, device and backend) for `relative`; `budget_s`
    (seconds) lowers `warmup` and `repeats` to fit it. Modes are restored."""
    if repeats < 1 or warmup < (0 if budget_s is None else 1):
        raise ValueError(f"need repeats >= 1 and warmup >= 0 (1 with a budget), got {repeats} "
                         f"and {warmup}")  # fmt: skip
    device = torch.device(device) if device is not None else next(model.parameters()).device
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    models = [model] if reference is None else [model, reference]
    input_ids = input_ids.to(device)
    padding_mask = None if padding_mask is None else padding_mask.to(device)
    time_one = _time_cuda if device.type == "cuda" else _time_cpu
    forwards = [functools.partial(m, input_ids, padding_mask) for m in models]
    modes = [m.training for m in models]
    try:
        with contextlib.ExitStack() as stack:
            for m in models:
                stack.enter_context(pinned_scan_backend(m.to(device).eval(), scan_backend))
            stack.enter_context(torch.inference_mode())
            backend = scan_backends_in_use(model, device)
            done = 0
            while done < warmup:  # the first round may shrink `warmup` and `repeats`
                start = perf_counter()
                for forward in forwards:
                    forward()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                done += 1
                if done == 1 and budget_s is not None:
                    warmup, repeats = _fit(budget_s, perf_counter() - start, warmup, repeats)
            times = np.zeros((repeats, len(forwards)))
            for run in range(repeats):
                turns = range(len(forwards)) if run % 2 == 0 else reversed(range(len(forwards)))
                for index in turns:
                    times[run, index] = time_one(forwards[index], device)
    finally:
        for m, mode in zip(models, modes, strict=True):
            m.train(mode)
    q25, median, q75 = np.percentile(times, [25, 50, 75], axis=0)
    compared = reference is not None
    return Latency(
        median_ms=float(median[0]),
        iqr_ms=float(q75[0] - q25[0]),
        repeats=repeats,
        warmup=warmup,
        batch=input_ids.shape[0],
        seq_len=input_ids.shape[1],
        device=str(device),
        device_name=device_name(device),
        scan_backend=backend,
        torch_version=torch.__version__,
        triton_version=package_version("triton"),
        num_threads=torch.get_num_threads(),
        numba_threads=numba_threads(),
        reference_median_ms=float(median[1]) if compared else None,
        reference_iqr_ms=float(q75[1] - q25[1]) if compared else None,
        relative=float(np.divide(*np.percentile(times, 10, axis=0))) if compared else None,
    )
