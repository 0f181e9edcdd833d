"""The scan-order phase of a trial on a real-size model, against the solver budget it replaced.

Runs autohm.trial.apply_scan_order (calibration statistics, every layer solved with `best`)
on a base checkpoint, prints the phase's time, the statistics' time beside one plain forward of
the same batches, the solve time and the summed path cost; then solves the same cost matrices
serially with the former budget of `best` (50 n iterated-local-search kicks at every n) and
prints its time and how far the phase's path cost is from it.

    python benchmarks/scan_order_phase.py --model CHECKPOINT [--batch 8] [--batches 2]

With no --model, a random mamba-130m-shaped model (d_model 768, 24 layers) is built.
"""

from __future__ import annotations

import argparse
import time

import torch

import autohm.scan_order.solvers as solvers
import autohm.trial as trial_module
from autohm.bench.train import base_model
from autohm.config import TrialConfig
from autohm.tasks import load_task
from autohm.trial import Workload, apply_scan_order


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a checkpoint (default: random 130m)")
    parser.add_argument("--batch", type=int, default=8, help="sequences per calibration batch")
    parser.add_argument("--batches", type=int, default=2, help="calibration batches")
    args = parser.parse_args()
    base, source = base_model(args.model, "130m")
    task = load_task("digits")
    workload = Workload(task, base, source)
    config = TrialConfig.from_dict({
        "train": {"batch_size": args.batch},
        "scan_order": {"calibration_batches": args.batches, "method": "best"},
    })  # fmt: skip
    costs = []
    correlation_cost = trial_module.correlation_cost
    trial_module.correlation_cost = lambda acc: costs.append(correlation_cost(acc)) or costs[-1]
    model = workload.new_classifier().eval()
    ids, mask, _ = task.train.tensors
    with torch.no_grad():
        start = time.perf_counter()
        for first in range(0, args.batch * args.batches, args.batch):
            model(ids[first : first + args.batch], mask[first : first + args.batch])
        forward_s = time.perf_counter() - start
    start = time.perf_counter()
    record, _ = apply_scan_order(model, task, config)
    phase_s = time.perf_counter() - start
    print(f"{source}: {len(costs)} layers of {costs[0].shape[0]} channels")
    print(f"phase {phase_s:.1f} s: statistics {record['statistics_s']:.1f} s "
          f"({record['statistics_s'] / forward_s:.2f}x a plain forward of the same batches, "
          f"{forward_s:.1f} s), solve {record['solver_s']:.1f} s, "
          f"path cost {record['path_cost_after']:.3f}")  # fmt: skip
    solvers._ils_kicks = lambda n: solvers._KICKS_PER_NODE * n
    start = time.perf_counter()
    former = sum(solvers.path_cost(c, solvers.solve(c, "best", seed=0)) for c in costs)
    gap = record["path_cost_after"] / former - 1
    print(f"former budget (50 n kicks), serial: {time.perf_counter() - start:.1f} s, "
          f"path cost {former:.3f}; the phase's is {gap:+.2%}")  # fmt: skip


if __name__ == "__main__":
    main()
