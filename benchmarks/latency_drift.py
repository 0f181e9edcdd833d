"""Why trial latencies are timed beside a reference: measure the built-in base classifier again
and again while a background load switches on and off (a shared machine's drift, compressed),
and compare the spread of the raw medians with that of the ratios to an identical reference.
The ideal ratio is 1; the coefficient of variation (std / mean) and the extremes say how much
drift leaks in. `--loads 3` with OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 oversubscribes two cores
the way three single-threaded search workers do.

Run: python benchmarks/latency_drift.py [--measurements 16] [--period 4] [--loads 1]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import numpy as np

from autohm.measure import measure_latency
from autohm.trial import Workload

LOAD = "import torch\na = torch.randn(3000, 3000)\nwhile True: a @ a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measurements", type=int, default=16)
    parser.add_argument("--period", type=int, default=4, help="measurements per load phase")
    parser.add_argument("--loads", type=int, default=1, help="busy processes in a load phase")
    args = parser.parse_args()
    if min(args.measurements, args.period, args.loads) < 1:
        parser.error("--measurements, --period and --loads must be at least 1")
    workload = Workload.load()
    model, reference = workload.new_classifier(), workload.latency_reference
    ids, mask = workload.latency_inputs(), None  # the default deployment shape
    medians, ratios, load = [], [], []
    try:
        for index in range(args.measurements):
            if index % args.period == 0:
                if not load:
                    load = [_busy() for _ in range(args.loads)]
                else:
                    _stop(load)
                time.sleep(1.0)
            timing = measure_latency(model, ids, mask, reference=reference)
            medians.append(timing.median_ms)
            ratios.append(timing.relative)
            print(f"{index:3d} load {'on ' if load else 'off'} median {timing.median_ms:.3f} ms"
                  f"  ratio {timing.relative:.3f}", flush=True)  # fmt: skip
    finally:
        _stop(load)
    for name, values in (("median ms", medians), ("ratio", ratios)):
        values = np.array(values)
        print(f"{name:10s} mean {values.mean():.3f}  coefficient of variation "
              f"{values.std() / values.mean():.3f}  min {values.min():.3f}  "
              f"max {values.max():.3f}")  # fmt: skip


def _busy() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", LOAD])


def _stop(load: list[subprocess.Popen]) -> None:
    """Kill the load processes and wait for them, so the next measurement starts quiet."""
    while load:
        process = load.pop()
        process.kill()
        process.wait()


if __name__ == "__main__":
    main()
