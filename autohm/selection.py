"""Which trial export picks. Candidates are the completed trials that satisfy every constraint
(and reach --min-accuracy when given); the rules:

- knee (default): the Pareto-front trial closest (Euclidean) to the utopia point once each
  objective is min-max normalised over the front (accuracy turned into a loss), i.e. the best
  balance of the four objectives;
- max-accuracy: the highest accuracy (ties: fewer FLOPs, then parameters, then latency);
- min-flops, min-params, min-latency: the lowest of that objective (ties: higher accuracy);
- trial:N: trial N, whatever its rank (it must have run: complete or stopped early).
Remaining ties go to the lower trial number.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from autohm.errors import AutohmError
from autohm.objectives import OBJECTIVES, minimised, pareto_mask

RULES = ("knee", "max-accuracy", "min-flops", "min-params", "min-latency", "trial:N")
LEXICOGRAPHIC = {
    "max-accuracy": ["accuracy", "flops", "params", "latency"],
    "min-flops": ["flops", "accuracy", "params", "latency"],
    "min-params": ["params", "accuracy", "flops", "latency"],
    "min-latency": ["latency", "accuracy", "flops", "params"],
}


class SelectionError(AutohmError):
    """A pick rule that is unknown or that no trial satisfies."""


def pick(table: pd.DataFrame, rule: str = "knee", min_accuracy: float | None = None) -> pd.Series:
    """The row of `table` (results.trials_frame) that `rule` selects."""
    if rule.startswith("trial:"):
        return _numbered(table, rule)
    if rule != "knee" and rule not in LEXICOGRAPHIC:
        raise SelectionError(f"--pick {rule!r} is not one of {', '.join(RULES)}")
    candidates = table[(table["state"] == "COMPLETE") & table["feasible"]] if len(table) else table
    if min_accuracy is not None and len(candidates):
        candidates = candidates[candidates["accuracy"] >= min_accuracy]
    if candidates.empty:
        floor = f" with accuracy >= {min_accuracy}" if min_accuracy is not None else ""
        raise SelectionError(f"no completed trial that meets the constraints{floor}")
    if rule == "knee":
        return candidates.iloc[knee(candidates)]
    columns = LEXICOGRAPHIC[rule]
    ascending = [column != "accuracy" for column in columns]
    return candidates.sort_values([*columns, "number"], ascending=[*ascending, True]).iloc[0]


def knee(candidates: pd.DataFrame) -> int:
    """The position (in `candidates`) of the front member nearest the utopia point."""
    losses = minimised(candidates[list(OBJECTIVES)].to_numpy(dtype=float))
    front = np.flatnonzero(pareto_mask(losses))
    points = losses[front]
    low, span = points.min(axis=0), np.ptp(points, axis=0)
    scaled = (points - low) / np.where(span > 0, span, 1.0)
    distances = np.linalg.norm(scaled, axis=1)
    return int(front[np.flatnonzero(distances == distances.min())[0]])


def _numbered(table: pd.DataFrame, rule: str) -> pd.Series:
    try:
        number = int(rule.removeprefix("trial:"))
    except ValueError:
        raise SelectionError(f"--pick {rule!r}: expected trial:N with a trial number") from None
    rows = table[table["number"] == number] if len(table) else table
    if rows.empty:
        raise SelectionError(f"--pick {rule}: the study has no trial {number}")
    row = rows.iloc[0]
    if row["state"] not in ("COMPLETE", "PRUNED"):
        why = f" ({row['fail_reason']})" if isinstance(row.get("fail_reason"), str) else ""
        raise SelectionError(f"--pick {rule}: trial {number} is {row['state']}{why}")
    return row
