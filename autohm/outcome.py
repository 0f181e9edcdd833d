"""The typed record of what one trial produced: its objectives, the costs that explain them, the
allocation, sparsity and scan order it chose, where its time went and how latency was measured.

run_trial produces a TrialOutcome; a search stores it once, as the trial's `metrics` user
attribute (`stored()`: the same JSON document metrics.json holds); everything that reads a
trial back (the search's early stop and hypervolume, results, export, runs, the ablation, the
app) goes through `TrialOutcome.read`, and `columns()` is the one mapping of a record onto the
`metric.*` columns of a study's frame.

Studies made before latency was a ratio to the dense model stored `latency_ms` and
`latency_relative` instead of `latency`: `read` takes the ratio from them, and keeps every
stored key it does not know as an extra field, so nothing recorded is lost.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from optuna.trial import FrozenTrial, TrialState
from pydantic import BaseModel, ConfigDict, ValidationError

from autohm.errors import AutohmError
from autohm.objectives import OBJECTIVES

RAW_FIELDS = ("allocation", "sparsity", "task")  # one column each: per module, layer, option


class Record(BaseModel):
    """A part of a trial's outcome: typed, read back leniently (unknown keys are kept)."""

    model_config = ConfigDict(extra="allow")


class LayerPath(Record):
    """One layer's scan order: path cost before and after the solver, the seconds its
    statistics added to the calibration forward and the seconds its solve took."""

    before: float
    after: float
    statistics_s: float | None = None
    solve_s: float | None = None


class ScanOrderRecord(Record):
    """Pillar 1 as run: solver, statistics source, summed path costs, per layer and timings."""

    method: str = "identity"
    source: str | None = None
    path_cost_before: float | None = None
    path_cost_after: float | None = None
    layers: list[LayerPath] = []
    statistics_s: float | None = None
    solver_s: float | None = None
    precompute_s: float | None = None


class ModuleRecord(Record):
    """Pillar 3's choice for one module: method, LoRA rank, importance, adapter elements."""

    method: str
    rank: int | None = None
    importance: float = math.nan
    params: int = 0


class Timings(Record):
    """Seconds per phase of the trial."""

    scan_order_s: float | None = None
    masks_s: float | None = None
    fine_tune_s: float | None = None
    evaluation_s: float | None = None
    measure_s: float | None = None


class TrialOutcome(Record):
    """Everything one trial measured. The objectives are `accuracy`, `flops`, `params` and
    `latency` (the compact model's latency as a multiple of the dense base's; None when not
    measured); the rest explains them."""

    accuracy: float
    flops: int | float
    params: int | float
    latency: float | None = None
    test_accuracy: float | None = None
    pooling: str = "last"
    params_masked: int | None = None
    params_total: int | None = None
    flops_sparse: int | float | None = None
    flops_dense: int | float | None = None
    flops_convention: str | None = None
    channels: list[int] = []  # per layer, of the compact model
    states: list[int] = []
    sparsity: dict[str, dict[str, float]] = {}  # "layers.i" and "all" -> site -> fraction
    latency_ms: float | None = None
    latency_iqr_ms: float | None = None
    latency_dense_ms: float | None = None
    latency_batch: int | None = None
    latency_seq_len: int | None = None
    device: dict[str, Any] = {}  # how latency was measured (autohm.measure.Latency)
    allocation: dict[str, ModuleRecord] = {}
    scan_order: ScanOrderRecord = ScanOrderRecord()
    timings: Timings = Timings()
    task: dict[str, Any] = {}
    model: str | None = None  # the base model's source

    @classmethod
    def read(cls, stored: Mapping[str, Any], source: str = "metrics") -> TrialOutcome:
        """A stored record (a trial's `metrics` attribute or metrics.json), old forms included;
        a record that is not one raises AutohmError naming `source` and the field."""
        if not isinstance(stored, Mapping):
            raise AutohmError(f"{source}: expected a mapping, got {type(stored).__name__}")
        stored = dict(stored)
        if "latency" not in stored and "latency_ms" in stored:  # latency was in milliseconds
            stored["latency"] = stored.get("latency_relative", math.nan)
        try:
            return cls.model_validate(stored)
        except ValidationError as error:
            problem = error.errors()[0]
            field = ".".join(map(str, problem["loc"]))
            raise AutohmError(f"{source}: {field}: {problem['msg']}") from None

    @classmethod
    def of(cls, trial: FrozenTrial) -> TrialOutcome | None:
        """The record a search stored on `trial`; a completed trial that stored none (added by
        hand) is read from its objective values; None for any other trial."""
        stored = trial.user_attrs.get("metrics")
        if stored:
            return cls.read(stored, f"trial {trial.number}'s metrics")
        if trial.state == TrialState.COMPLETE and trial.values is not None:
            return cls(**dict(zip(OBJECTIVES, trial.values, strict=True)))
        return None

    def objectives(self) -> tuple[float, ...]:
        """The objective vector (OBJECTIVES order); NaN latency when it was not measured."""
        return tuple(math.nan if v is None else float(v) for v in map(self.value, OBJECTIVES))

    def value(self, name: str) -> Any:
        """An objective or any other top-level field by name (limits and tables name them)."""
        return getattr(self, name, None)

    def stored(self) -> dict[str, Any]:
        """The record as plain JSON values, fields that were not measured left out."""
        return self.model_dump(mode="json", exclude_none=True)

    def columns(self) -> dict[str, Any]:
        """The record as `metric.<key>` columns: nested parts as dotted names, per-module,
        per-layer and per-option parts (RAW_FIELDS) and lists whole."""
        return flatten(self.stored(), "metric", keep=RAW_FIELDS)


def anchor(trials: Sequence[FrozenTrial]) -> TrialOutcome | None:
    """The outcome of the lowest-numbered completed trial, which fixes a study's hypervolume
    units (autohm.objectives); None before any trial completed."""
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    return TrialOutcome.of(min(completed, key=lambda t: t.number)) if completed else None


def flatten(mapping: Mapping, prefix: str, keep: Sequence[str] = ()) -> dict[str, Any]:
    """Nested mappings as dotted columns; top-level keys in `keep` and lists stay whole."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}.{key}"
        if isinstance(value, Mapping) and key not in keep:
            flat |= flatten(value, name)
        else:
            flat[name] = value
    return flat
