"""The ablation runs around one configuration: the 2^3 factorial of the pillars on/off, the
PEFT reference (the better of LoRA-only at a matched parameter budget and IA3-only), and the
solver and granularity variants where they apply; every variant over several seeds."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import pandas as pd

from autohm.config import TrialConfig
from autohm.objectives import OBJECTIVES
from autohm.peft import apply_allocation, count_parameters
from autohm.phases import Progress, ignore, labelled
from autohm.trial import Workload, choose_allocation, run_trial

SOLVER_VARIANTS = ("identity", "nearest_neighbor", "best", "importance")  # where order matters
GRANULARITIES = ("element", "channel", "block")
MAX_MATCHED_RANK = 32


@dataclass(frozen=True)
class Variant:
    """A named configuration; order/masks/peft are the factorial levels (None outside it)."""

    name: str
    group: str
    config: TrialConfig
    order: bool | None = None
    masks: bool | None = None
    peft: bool | None = None


def cell(config: TrialConfig, order: bool, masks: bool, peft_mode: str) -> TrialConfig:
    """The factorial cell: order chosen or identity, masks learned or none, PEFT mode."""
    return config.with_changes(
        scan_order={} if order else {"method": "identity"},
        masking={"enabled": masks and config.masking.enabled},
        peft={"mode": peft_mode},
    )


def matched_lora_rank(config: TrialConfig, workload: Workload, target_params: int) -> int:
    """The LoRA-only rank whose trainable-parameter count is closest to `target_params`
    (counted on an untrained model: the count depends on shapes and masks only)."""
    lora = config.with_changes(masking={"enabled": False}, peft={"mode": "lora"})
    best_rank, best_gap = 1, None
    for rank in range(1, MAX_MATCHED_RANK + 1):
        model = workload.new_classifier()
        ranked = lora.with_changes(peft={"rank": rank})
        apply_allocation(model, choose_allocation(model, ranked), lora_alpha=ranked.peft.alpha)
        gap = abs(count_parameters(model).params - target_params)
        if best_gap is None or gap < best_gap:
            best_rank, best_gap = rank, gap
    return best_rank


def run_variants(
    variants: list[Variant],
    workload: Workload,
    seeds: list[int],
    progress: Progress = ignore,
) -> pd.DataFrame:
    """One row per (variant, seed) with the objectives and the efficiency E."""
    rows = []
    for index, variant in enumerate(variants):
        for seed in seeds:
            label = f"variant {index + 1}/{len(variants)} {variant.name}, seed {seed}"
            config = variant.config.with_changes(train={"seed": seed})
            outcome = run_trial(config, workload, progress=labelled(progress, label)).outcome
            rows.append(
                {
                    "variant": variant.name, "group": variant.group, "seed": seed,
                    "order": variant.order, "masks": variant.masks, "peft": variant.peft,
                    **dict(zip(OBJECTIVES, outcome.objectives(), strict=True)),
                    "efficiency": outcome.accuracy / outcome.flops / outcome.params,
                }
            )  # fmt: skip
    return pd.DataFrame(rows)


def ablate(
    config: TrialConfig,
    workload: Workload,
    seeds: list[int],
    progress: Progress = ignore,
) -> tuple[pd.DataFrame, dict]:
    """Every run of the ablation and what was decided on the way (matched rank, reference)."""
    notes: dict = {}
    hybrid = [
        Variant(_name(o, m, True), "factorial", cell(config, o, m, "hybrid"), o, m, True)
        for o, m in product((True, False), repeat=2)
    ]
    runs = run_variants(hybrid[:1], workload, seeds, progress)
    rank = matched_lora_rank(config, workload, int(runs["params"].mean()))
    notes["matched_lora_rank"] = rank
    references = [
        Variant(f"{_name(o, m, False)} [{mode}]", "peft-reference",
                cell(config, o, m, mode).with_changes(peft={"rank": rank}), o, m, False)
        for mode in ("lora", "ia3") for o, m in product((True, False), repeat=2)
    ]  # fmt: skip
    more = run_variants(hybrid[1:] + references, workload, seeds, progress)
    runs = pd.concat([runs, more], ignore_index=True)
    reference = runs["group"] == "peft-reference"

    def runs_of(mode: str) -> pd.Series:
        return reference & runs["variant"].str.endswith(f"[{mode}]")

    best = max(("lora", "ia3"), key=lambda mode: runs.loc[runs_of(mode), "accuracy"].mean())
    notes["peft_reference"] = best
    runs.loc[runs_of(best), "group"] = "factorial"
    extra = _solver_and_granularity_variants(config)
    if extra:
        runs = pd.concat([runs, run_variants(extra, workload, seeds, progress)], ignore_index=True)
    notes["order_can_matter"] = config.masking.enabled and config.masking.granularity == "block"
    return runs, notes


def _solver_and_granularity_variants(config: TrialConfig) -> list[Variant]:
    """Solvers where the order can matter (block masks); granularities where masks are on."""
    variants = []
    if config.masking.enabled and config.masking.granularity == "block":
        variants += [
            Variant(f"solver={s}", "solver", config.with_changes(scan_order={"method": s}))
            for s in SOLVER_VARIANTS
            if s != config.scan_order.method
        ]
    if config.masking.enabled:
        variants += [
            Variant(
                f"granularity={g}", "granularity", config.with_changes(masking={"granularity": g})
            )
            for g in GRANULARITIES
            if g != config.masking.granularity
        ]
    return variants


def _name(order: bool, masks: bool, peft: bool) -> str:
    parts = ("order" if order else "-", "masks" if masks else "-", "hybrid" if peft else "single")
    return " ".join(parts)
