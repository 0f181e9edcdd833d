"""`autohm export`: the picked trial's configuration as a YAML file that `autohm train --config
FILE` reads (the `config:` key), with its metrics under `metrics:` and where it came from under
`source:`, and a comment header that says the same for a human."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial

from autohm.config import TrialConfig
from autohm.results import trials_frame
from autohm.search.objectives import OBJECTIVES
from autohm.search.selection import SelectionError, pick


def export_trial(
    study: optuna.Study,
    rule: str = "knee",
    path: Path | None = None,
    min_accuracy: float | None = None,
    limits: dict[str, float] | None = None,
) -> tuple[Path, FrozenTrial]:
    """Write the trial `rule` picks; returns the file and the trial."""
    config, trial = picked_config(study, rule, min_accuracy, limits)
    source = f"study {study.study_name} trial {trial.number}"
    metrics = {k: v for k, v in trial.user_attrs.get("metrics", {}).items() if _scalar(v)}
    document = {
        "config": config.model_dump(mode="json"),
        "metrics": metrics,
        "source": {
            "study": study.study_name,
            "trial": trial.number,
            "state": trial.state.name,
            "pick": rule,
        },  # fmt: skip
    }
    path = path or Path(f"{study.study_name}-trial{trial.number}.yaml")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_header(source, rule, metrics) + yaml.safe_dump(document, sort_keys=False))
    return path, trial


def picked_config(
    study: optuna.Study,
    rule: str = "knee",
    min_accuracy: float | None = None,
    limits: dict[str, float] | None = None,
) -> tuple[TrialConfig, FrozenTrial]:
    """The configuration of the trial `rule` picks (see selection.pick) among the trials within
    `limits` (objective or metric -> maximum, e.g. {"params": 5000, "latency_ms": 20}), and the
    trial."""
    trials = study.get_trials(deepcopy=False)
    table = trials_frame(trials)
    for name, maximum in (limits or {}).items():
        column = name if name in OBJECTIVES else f"metric.{name}"
        if len(table) and column not in table:
            raise SelectionError(f"no trial of {study.study_name!r} recorded {name}")
        if len(table):
            table = table.assign(feasible=table["feasible"] & (table[column] <= maximum))
    row = pick(table, rule, min_accuracy)
    trial = next(t for t in trials if t.number == row["number"])
    source = f"study {study.study_name} trial {trial.number}"
    return TrialConfig.from_dict(trial.user_attrs.get("config", {}), source=source), trial


def _header(source: str, rule: str, metrics: dict[str, Any]) -> str:
    shown = ", ".join(f"{name} {metrics[name]:.6g}" for name in OBJECTIVES if name in metrics)
    lines = [
        f"# autohm export: {source}, picked by {rule}",
        f"# {shown}" if shown else "# (no metrics recorded)",
        "# train it: autohm train --config THIS_FILE",
    ]
    return "\n".join(lines) + "\n"


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) or value is None


def export_table(study: optuna.Study, format: str, path: Path | None = None) -> Path:
    """Every trial of `study` (results.frame) as CSV or Parquet."""
    if format not in ("csv", "parquet"):
        raise SelectionError(f"--format {format!r} is not one of yaml, csv, parquet")
    path = path or Path(f"{study.study_name}.{format}")
    path.parent.mkdir(parents=True, exist_ok=True)
    table = trials_frame(study.get_trials(deepcopy=False))
    if format == "csv":
        table.to_csv(path, index=False)
        return path
    try:
        table.to_parquet(path, index=False)
    except ImportError:
        raise SelectionError("--format parquet needs pyarrow: pip install pyarrow") from None
    return path
