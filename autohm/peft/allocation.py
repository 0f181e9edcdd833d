"""Allocation policies: which module gets LoRA (rank r), IA3 or nothing, from its importance.

POLICIES maps each `peft.mode` to its policy (a callable taking the importances and the PEFT
settings): "hybrid" by importance quantiles (below); "lora" and "ia3" the one method everywhere;
"full" and "head" no adapter anywhere (full fine-tuning then trains every weight itself, a
linear probe only the head).

The hybrid allocation:
Two thresholds are quantiles of the importance distribution (scale-free): t(q) = the q-quantile
of the modules' importances (linear interpolation), and t(1) = +inf so that q = 1 selects none.
A module at or above t(lora_quantile) gets LoRA; one at or above t(ia3_quantile) but below it
gets IA3; the rest stay frozen. Ties are never split: equal importances get the same method
(all-equal importances: everything LoRA for lora_quantile < 1, else everything IA3 for
ia3_quantile < 1, else everything frozen).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from autohm.peft.errors import PeftError
from autohm.peft.targets import PEFT_MODULES

MODULE_METHODS = ("lora", "ia3", "frozen")


@dataclass(frozen=True)
class Allocation:
    """How one module is tuned: method ("lora" | "ia3" | "frozen"), LoRA rank, its importance."""

    method: str
    rank: int | None = None
    importance: float = math.nan

    def __post_init__(self) -> None:
        if self.method not in MODULE_METHODS:
            raise PeftError(f"unknown PEFT method {self.method!r}; choose from {MODULE_METHODS}")
        if self.method == "lora":
            _check_rank(self.rank, "rank")
        elif self.rank is not None:
            raise PeftError(
                f"a rank ({self.rank!r}) is only meaningful for LoRA, not {self.method}"
            )


def _check_rank(rank, where: str) -> None:
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise PeftError(f"LoRA {where} must be a positive integer, got {rank!r}")


def _threshold(values: np.ndarray, quantile: float) -> float:
    """The q-quantile of the importances; +inf for q = 1 (selects no module)."""
    return math.inf if quantile >= 1 or values.size == 0 else float(np.quantile(values, quantile))


def _rank_of(rank: int | dict[str, int], key: str) -> int:
    """A module's rank: the global rank, or the entry for its key or its module name."""
    if isinstance(rank, int):
        return rank
    module = key.rsplit(".", 1)[-1]
    for name in (key, module):
        if name in rank:
            return rank[name]
    raise PeftError(f"no LoRA rank for {key!r}: the rank dictionary has {sorted(rank)}")


def _check_ranks(rank: int | dict[str, int], keys) -> None:
    if not isinstance(rank, dict):
        _check_rank(rank, "rank")
        return
    for name, value in rank.items():
        if name not in PEFT_MODULES and name not in keys:
            raise PeftError(
                f"rank dictionary key {name!r} is neither a module ({', '.join(PEFT_MODULES)}) "
                "nor a module key like 'layers.0.in_proj'"
            )
        _check_rank(value, f"rank for {name!r}")


def allocate(
    importance: dict[str, float],
    lora_quantile: float,
    ia3_quantile: float,
    rank: int | dict[str, int],
) -> dict[str, Allocation]:
    """The allocation of every module of `importance` by the two quantile thresholds."""
    if not (0.0 <= ia3_quantile <= lora_quantile <= 1.0):
        raise PeftError(
            "the quantiles must satisfy 0 <= ia3_quantile <= lora_quantile <= 1, got "
            f"ia3_quantile={ia3_quantile!r}, lora_quantile={lora_quantile!r}"
        )
    bad = [key for key, value in importance.items() if not math.isfinite(value)]
    if bad:
        raise PeftError(f"importance of {bad[0]!r} is {importance[bad[0]]!r}, not a finite number")
    _check_ranks(rank, importance)
    values = np.asarray(list(importance.values()), dtype=np.float64)
    lora_at, ia3_at = _threshold(values, lora_quantile), _threshold(values, ia3_quantile)
    allocation = {}
    for key, value in importance.items():
        if value >= lora_at:
            allocation[key] = Allocation("lora", _rank_of(rank, key), float(value))
        elif value >= ia3_at:
            allocation[key] = Allocation("ia3", None, float(value))
        else:
            allocation[key] = Allocation("frozen", None, float(value))
    return allocation


class AllocationSettings(Protocol):
    """What a policy reads of a trial's PEFT settings (autohm.config.PeftConfig has it)."""

    lora_quantile: float
    ia3_quantile: float
    rank: int | Mapping[str, int]


class AllocationPolicy(Protocol):
    """The allocation of every module of `importance` (module key -> importance) under the PEFT
    settings of a trial."""

    def __call__(
        self, importance: Mapping[str, float], settings: AllocationSettings
    ) -> dict[str, Allocation]: ...


def _hybrid(importance: Mapping[str, float], settings: AllocationSettings) -> dict[str, Allocation]:
    return allocate(dict(importance), settings.lora_quantile, settings.ia3_quantile, settings.rank)


def _everywhere(method: str) -> AllocationPolicy:
    """The policy that gives every module `method` (LoRA at the configured rank)."""

    def policy(
        importance: Mapping[str, float], settings: AllocationSettings
    ) -> dict[str, Allocation]:
        if method == "lora":
            _check_ranks(settings.rank, importance)
        return {
            key: Allocation(
                method, _rank_of(settings.rank, key) if method == "lora" else None, float(value)
            )
            for key, value in importance.items()
        }

    return policy


POLICIES: dict[str, AllocationPolicy] = {
    "hybrid": _hybrid,
    "lora": _everywhere("lora"),
    "ia3": _everywhere("ia3"),
    "full": _everywhere("frozen"),
    "head": _everywhere("frozen"),
}
