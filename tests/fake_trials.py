"""A stand-in for autohm.trial.run_trial: instant, deterministic metrics from the configuration,
so that the search machinery (budget, resume, interrupts, failures, constraints, early stops,
heartbeat) is tested without training."""

import json
import time
from dataclasses import dataclass
from pathlib import Path

from autohm.config import TrialConfig
from autohm.outcome import TrialOutcome
from autohm.trial import TrialFailed, TrialPruned


@dataclass
class FakeResult:
    config: TrialConfig
    outcome: TrialOutcome

    def save(self, directory, lean=False):
        directory = Path(directory)
        (directory / "metrics.json").write_text(json.dumps(self.outcome.stored()))
        self.config.save(directory / "config.yaml")
        return sorted(directory.iterdir())


def fake_metrics(config: TrialConfig) -> dict:
    """Objectives that trade off: more LoRA (lower quantile, higher rank) is more accurate and
    larger; more sparsity is cheaper and less accurate."""
    lora = 1 - config.peft.lora_quantile
    rank = config.peft.rank if isinstance(config.peft.rank, int) else 4
    sparsity = config.masking.penalty.sparsity
    return {
        "accuracy": round(0.5 + 0.3 * lora + 0.02 * rank - 0.2 * sparsity, 6),
        "flops": 1e6 * (1 - 0.5 * sparsity),
        "flops_dense": 1e6,
        "params": 100 + 1000 * lora * rank,
        "params_total": 20000,
        "latency": 0.5 + 0.1 * rank,
        "latency_ms": 10.0 + rank,
        "test_accuracy": 0.5,
    }


class FakeWorkload:
    """Stands in for autohm.trial.Workload: FakeRunner never reads it; the search records its
    deployment batch in the study."""

    latency_batch = 32


class FakeRunner:
    """Call number k (0-based, per runner) may fail, be interrupted or hang for ever."""

    def __init__(self, fail_on=(), interrupt_on=(), hang_on=(), report_step=10, marker=None):
        self.fail_on, self.interrupt_on, self.hang_on = (
            set(fail_on),
            set(interrupt_on),
            set(hang_on),
        )
        self.report_step = report_step
        self.marker = marker  # a file created when a call starts to hang
        self.calls = 0

    def __call__(self, config, workload, report=None, latency=True, test=False, progress=None):
        call, self.calls = self.calls, self.calls + 1
        if call in self.interrupt_on:
            raise KeyboardInterrupt
        if call in self.hang_on and self.marker:
            Path(self.marker).touch()
        while call in self.hang_on:
            time.sleep(0.05)
        if call in self.fail_on:
            raise TrialFailed("non-finite loss (nan) at fine-tuning step 3")
        metrics = fake_metrics(config)

        def costs():
            return {name: metrics[name] for name in ("flops", "params")}

        if report is not None and report(self.report_step, metrics["accuracy"] - 0.1, costs):
            raise TrialPruned(self.report_step, metrics["accuracy"] - 0.1)
        return FakeResult(config, TrialOutcome(**metrics))
