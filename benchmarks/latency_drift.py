"""Why trial latencies are timed beside a reference: measure the built-in base classifier again
and again while a background load switches on and off (a shared machine's drift, compressed),
and compare the spread of the raw medians with that of the ratios to an identical reference.
The ideal ratio is 1; the coefficient of variation (std / mean) says how much drift leaks in.

Run: python benchmarks/latency_drift.py [--measurements 16] [--period 4]
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
    args = parser.parse_args()
    if args.measurements < 1 or args.period < 1:
        parser.error("--measurements and --period must be at least 1")
    workload = Workload.load()
    model, reference = workload.new_classifier(), workload.latency_reference
    ids, mask, _ = workload.task.validation[:1]
    medians, ratios, load = [], [], None
    try:
        for index in range(args.measurements):
            if index % args.period == 0:
                if load is None:
                    load = subprocess.Popen([sys.executable, "-c", LOAD])
                else:
                    load.kill()
                    load = None
                time.sleep(1.0)
            timing = measure_latency(model, ids, mask, reference=reference)
            medians.append(timing.median_ms)
            ratios.append(timing.relative)
            print(f"{index:3d} load {'on ' if load else 'off'} median {timing.median_ms:.3f} ms"
                  f"  ratio {timing.relative:.3f}", flush=True)  # fmt: skip
    finally:
        if load is not None:
            load.kill()
    for name, values in (("median ms", medians), ("ratio", ratios)):
        values = np.array(values)
        print(f"{name:10s} mean {values.mean():.3f}  coefficient of variation "
              f"{values.std() / values.mean():.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
