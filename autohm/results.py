"""A study as a pandas DataFrame, one row per trial: number, state, the four objectives,
feasibility, Pareto flag, recorded hypervolume, why it failed or stopped, the configuration
flattened as `cfg.<section>.<key>` and the metrics as `metric.<key>`. Export and the app read
studies through this."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from autohm.search.objectives import OBJECTIVES, minimised, pareto_mask

RAW_METRICS = ("allocation", "sparsity", "task")  # kept whole: one entry per layer and module
ATTRIBUTES = (
    "hypervolume", "baseline", "warm_start", "fail_reason", "pruned_at_step", "accuracy_at_stop",
    "interrupted", "surplus", "worker", "fidelity", "artifacts",
)  # fmt: skip


def frame(study: optuna.Study) -> pd.DataFrame:
    """Every trial of `study` as a row (see the module docstring for the columns)."""
    return trials_frame(study.get_trials(deepcopy=False))


def trials_frame(trials: Sequence[FrozenTrial]) -> pd.DataFrame:
    """Rows for `trials`, with the Pareto flag computed over the completed feasible ones."""
    rows = [_row(trial) for trial in trials]
    table = pd.DataFrame(rows, columns=_columns(rows))
    if table.empty:
        return table
    candidates = (table["state"] == "COMPLETE") & table["feasible"]
    front = np.zeros(len(table), dtype=bool)
    if candidates.any():
        values = table.loc[candidates, list(OBJECTIVES)].to_numpy(dtype=float)
        front[np.flatnonzero(candidates.to_numpy())] = pareto_mask(minimised(values))
    table["pareto"] = front
    return table.sort_values("number", ignore_index=True)


def feasible(trial: FrozenTrial) -> bool:
    """Every constraint satisfied (a trial without constraints is feasible)."""
    return all(value <= 0 for value in trial.constraints.values())


def anchor_metrics(trials: Sequence[FrozenTrial]) -> dict[str, Any] | None:
    """The metrics of the lowest-numbered completed trial, which fix the hypervolume units
    (its objective values when it recorded no metrics); None before any trial completed."""
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    if not completed:
        return None
    first = min(completed, key=lambda t: t.number)
    return first.user_attrs.get("metrics") or dict(zip(OBJECTIVES, first.values, strict=True))


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


def _row(trial: FrozenTrial) -> dict[str, Any]:
    complete = trial.state == TrialState.COMPLETE and trial.values is not None
    values = trial.values if complete else [np.nan] * len(OBJECTIVES)
    duration = trial.duration.total_seconds() if trial.duration is not None else np.nan
    attrs = trial.user_attrs
    row: dict[str, Any] = {
        "number": trial.number,
        "state": trial.state.name,
        **dict(zip(OBJECTIVES, values, strict=True)),
        "feasible": feasible(trial),
        "datetime_start": trial.datetime_start,
        "duration_s": duration,
        **{name: attrs.get(name) for name in ATTRIBUTES},
        **{f"constraint.{key}": value for key, value in trial.constraints.items()},
    }
    row |= flatten(attrs.get("config") or {}, "cfg")
    row |= flatten(attrs.get("metrics") or {}, "metric", keep=RAW_METRICS)
    return row


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    """Every column in order of first appearance."""
    return list(dict.fromkeys(key for row in rows for key in row))
