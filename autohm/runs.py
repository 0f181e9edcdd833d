"""Full-fidelity runs behind `autohm train` and `autohm baselines`: one configuration trained,
measured on validation and test, and written out with its adapter, masks and PEFT export."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from autohm.config import TrialConfig
from autohm.deploy import describe
from autohm.files import write_atomically, write_text
from autohm.peft import export_peft
from autohm.phases import Progress, ignore, labelled
from autohm.trial import TrialResult, Workload, run_trial

BASELINES = ("full", "head", "lora", "ia3")
SUMMARY_KEYS = (
    "accuracy", "test_accuracy", "flops", "flops_sparse", "flops_dense", "params",
    "params_masked", "params_total", "latency", "latency_ms", "latency_iqr_ms", "latency_dense_ms",
)  # fmt: skip
DEPLOY_DIR = "deploy"


def train_and_save(
    config: TrialConfig, workload: Workload, out: str | Path, progress: Progress = ignore
) -> TrialResult:
    """Run `config` (validation and test accuracy) and write metrics.json, config.yaml,
    order.json, adapter.safetensors, masks.safetensors, the PEFT export under out/peft/ and
    the compact model under out/deploy/ (MambaClassifier.from_pretrained loads it)."""
    result = run_trial(config, workload, test=True, progress=progress)
    progress("writing", detail=str(out))
    out = Path(out)
    result.save(out)
    export_peft(result.model, result.allocation, out / "peft", result.orders)
    result.deployed.save_pretrained(out / DEPLOY_DIR)
    summary = describe(result.deployed.config)
    if result.deployed.config.is_compact:
        summary += (
            "\nThe layers have widths of their own, which transformers' Mamba cannot hold: load "
            "this directory with autohm (MambaClassifier.from_pretrained), or give transformers "
            "the full-width merged model in ../peft/merged/."
        )
    write_text(out / DEPLOY_DIR / "COMPACTION.txt", summary + "\n")
    return result


def baseline_config(mode: str, like: TrialConfig | None = None) -> TrialConfig:
    """The reference point `mode` (full fine-tuning, linear probe, LoRA-only, IA3-only): no scan
    order, no masks, the training settings of `like` (the defaults when None)."""
    return (like or TrialConfig()).with_changes(
        scan_order={"method": "identity"}, masking={"enabled": False}, peft={"mode": mode}
    )


def run_baselines(
    workload: Workload,
    out: str | Path,
    like: TrialConfig | None = None,
    progress: Progress = ignore,
) -> pd.DataFrame:
    """Measure every baseline; writes out/baselines.csv and out/baselines.json (one row each)."""
    rows = []
    for mode in BASELINES:
        step = labelled(progress, f"baseline {mode}")
        outcome = run_trial(baseline_config(mode, like), workload, test=True, progress=step).outcome
        rows.append({"baseline": mode, **{k: outcome.value(k) for k in SUMMARY_KEYS}})
    table = pd.DataFrame(rows)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_atomically(out / "baselines.csv", lambda path: table.to_csv(path, index=False))
    write_text(out / "baselines.json", json.dumps(rows, indent=2))
    return table
