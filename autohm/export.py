"""`autohm export`: the picked trial's configuration as a YAML file that `autohm train --config
FILE` reads (the `config:` key), with its metrics under `metrics:` and where it came from under
`source:`, and a comment header that says the same for a human."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import yaml
from optuna.trial import FrozenTrial

from autohm.config import TrialConfig
from autohm.files import check_output_file, write_atomically, write_text
from autohm.objectives import OBJECTIVES
from autohm.outcome import TrialOutcome
from autohm.results import trials_frame
from autohm.selection import SelectionError, pick
from autohm.yaml_text import load_yaml


def export_trial(
    study: optuna.Study,
    rule: str = "knee",
    path: Path | None = None,
    min_accuracy: float | None = None,
    limits: dict[str, float] | None = None,
    protected: Iterable[Path] = (),
) -> tuple[Path, FrozenTrial]:
    """Write the trial `rule` picks; returns the file and the trial. `protected`: the study's
    own files, which the output may not replace."""
    config, trial = picked_config(study, rule, min_accuracy, limits)
    path = check_output_file(
        path or Path(f"{study.study_name}-trial{trial.number}.yaml"), protected
    )
    source = f"study {study.study_name} trial {trial.number}"
    outcome = TrialOutcome.of(trial)
    metrics = {k: v for k, v in (outcome.stored() if outcome else {}).items() if _scalar(v)}
    document = {
        "config": config.model_dump(mode="json"),
        "run": run_settings(study, trial),
        "metrics": metrics,
        "source": {
            "study": study.study_name,
            "trial": trial.number,
            "state": trial.state.name,
            "pick": rule,
        },  # fmt: skip
    }
    write_text(path, _header(source, rule, metrics) + yaml.safe_dump(document, sort_keys=False))
    return path, trial


def run_settings(study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
    """What `autohm train` needs besides the configuration to reproduce the trial: the task
    spec, the base model (None: the built-in one), the head's pooling and the latency shape.
    A base model given as a path must still exist."""
    recorded = study.user_attrs.get("autohm", {})
    model = recorded.get("model")
    if model is not None and _looks_like_path(model) and not Path(model).expanduser().exists():
        raise SelectionError(
            f"study {study.study_name!r} was made with --model {model}, which no longer "
            "exists: restore it, or export with another study"
        )
    batch, seq_len = recorded.get("latency_shape") or (None, None)
    return {
        "task": recorded.get("task", "digits"),
        "model": model,
        "pooling": outcome.pooling if (outcome := TrialOutcome.of(trial)) else "last",
        "latency_batch": batch,
        "latency_seq_len": seq_len,
    }


def _looks_like_path(model: str) -> bool:
    """A local checkpoint rather than a Hub id (org/name)."""
    return model.startswith((".", "/", "~")) or model.count("/") != 1 or Path(model).exists()


def read_run_settings(path: str | Path) -> dict[str, Any]:
    """The `run:` part of an exported file ({} for a plain configuration file)."""
    path = Path(path)
    if not path.is_file():
        return {}
    data = load_yaml(path.read_text(), str(path))
    run = data.get("run") if isinstance(data, dict) else None
    if run is None:
        return {}
    if not isinstance(run, dict) or set(run) - set(RUN_KEYS):
        raise SelectionError(f"{path}: run: expected a mapping with keys {', '.join(RUN_KEYS)}")
    if run.get("pooling", "last") not in ("last", "mean"):
        raise SelectionError(f"{path}: run.pooling: {run['pooling']!r} is not last or mean")
    return run


RUN_KEYS = ("task", "model", "pooling", "latency_batch", "latency_seq_len")


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


def export_table(
    study: optuna.Study, format: str, path: Path | None = None, protected: Iterable[Path] = ()
) -> Path:
    """Every trial of `study` (results.frame) as CSV, Parquet (nested cells such as allocations,
    sparsity and lists as JSON text) or JSON (records; nested values as JSON)."""
    if format not in TABLE_FORMATS:
        raise SelectionError(f"--format {format!r} is not one of yaml, {', '.join(TABLE_FORMATS)}")
    path = check_output_file(path or Path(f"{study.study_name}.{format}"), protected)
    if format == "parquet" and importlib.util.find_spec("pyarrow") is None:
        raise SelectionError("--format parquet needs pyarrow: pip install pyarrow")
    table = trials_frame(study.get_trials(deepcopy=False))
    if format == "json":
        text = table.to_json(orient="records", date_format="iso", indent=1)
        return write_text(path, text + "\n")
    table = flat_cells(table)
    if format == "csv":
        return write_atomically(path, lambda temporary: table.to_csv(temporary, index=False))
    return write_atomically(path, lambda temporary: table.to_parquet(temporary, index=False))


TABLE_FORMATS = ("csv", "parquet", "json")


def flat_cells(table: pd.DataFrame) -> pd.DataFrame:
    """`table` with every mapping or list cell as its JSON text (CSV and Parquet hold scalars)."""
    nested = [c for c in table.columns if table[c].map(lambda v: isinstance(v, dict | list)).any()]
    as_json = {c: table[c].map(lambda v: json.dumps(v) if isinstance(v, dict | list) else v)
               for c in nested}  # fmt: skip
    return table.assign(**as_json)
