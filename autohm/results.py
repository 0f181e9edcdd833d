"""A study as a pandas DataFrame, one row per trial: number, state, the four objectives,
feasibility, Pareto flag, recorded hypervolume, why it failed or stopped, the configuration
flattened as `cfg.<section>.<key>` and the trial's outcome as `metric.<key>`
(autohm.outcome). Export, the search's
progress lines and the app read studies through this one frame, so that a column means the same
everywhere."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from autohm.objectives import OBJECTIVES, feasible, front_mask, minimised
from autohm.outcome import TrialOutcome, flatten

ATTRIBUTES = (
    "hypervolume", "baseline", "warm_start", "fail_reason", "pruned_at_step", "accuracy_at_stop",
    "interrupted", "surplus", "orphaned", "lost", "worker", "fidelity", "artifacts",
)  # fmt: skip


def frame(study: optuna.Study) -> pd.DataFrame:
    """Every trial of `study` as a row (see the module docstring for the columns)."""
    return trials_frame(study.get_trials(deepcopy=False))


def trials_frame(
    trials: Sequence[FrozenTrial], outcomes: Mapping[int, TrialOutcome | None] | None = None
) -> pd.DataFrame:
    """Rows for `trials`, with the Pareto flag computed over the completed feasible ones.
    Surplus trials (created by a worker after others had filled the budget, never run) are
    left out: they say nothing about the search. `outcomes` (trial number ->
    `TrialOutcome.of(trial)`): the records when the caller has read them already."""
    if outcomes is None:
        outcomes = {trial.number: TrialOutcome.of(trial) for trial in trials}
    rows = [_row(t, outcomes[t.number]) for t in trials if not t.user_attrs.get("surplus")]
    table = pd.DataFrame(rows, columns=_columns(rows))
    if table.empty:
        return table
    candidates = (table["state"] == "COMPLETE") & table["feasible"]
    front = np.zeros(len(table), dtype=bool)
    if candidates.any():
        values = table.loc[candidates, list(OBJECTIVES)].to_numpy(dtype=float)
        front[np.flatnonzero(candidates.to_numpy())] = front_mask(minimised(values))
    table["pareto"] = front
    return table.sort_values("number", ignore_index=True)


def training_steps(trial: FrozenTrial) -> tuple[int, int]:
    """(steps run, steps of a full run) of a completed or stopped trial: mask learning plus
    fine-tuning, a stopped one up to its stop; (0, 0) for any other trial."""
    finished = trial.state in (TrialState.COMPLETE, TrialState.PRUNED)
    if not finished or "config" not in trial.user_attrs:
        return 0, 0
    config = trial.user_attrs["config"]
    masks = config["masking"]["steps"] if config["masking"]["enabled"] else 0
    fine_tuning = config["train"]["steps"]
    return masks + trial.user_attrs.get("pruned_at_step", fine_tuning), masks + fine_tuning


def _row(trial: FrozenTrial, outcome: TrialOutcome | None) -> dict[str, Any]:
    complete = trial.state == TrialState.COMPLETE and trial.values is not None
    attrs = trial.user_attrs
    values = outcome.objectives() if complete and outcome else [np.nan] * len(OBJECTIVES)
    duration = trial.duration.total_seconds() if trial.duration is not None else np.nan
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
    row |= outcome.columns() if outcome else {}
    return row


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    """Every column in order of first appearance."""
    return list(dict.fromkeys(key for row in rows for key in row))
