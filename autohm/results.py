"""A study as a pandas DataFrame, one row per trial: number, state, the four objectives,
feasibility, Pareto flag, recorded hypervolume, why it failed or stopped, the configuration
flattened as `cfg.<section>.<key>` and the metrics as `metric.<key>`. Export and the app read
studies through this; the app's reads (study names, snapshots, baselines files, the ablation
report, fronts, histories and the parts of one trial's metrics) are the functions below
`frame`."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from autohm.errors import AutohmError
from autohm.objectives import (
    DIRECTIONS,
    OBJECTIVES,
    feasible,
    front_mask,
    minimised,
    read_objectives,
)
from autohm.storage import existing_study, locate, open_storage

RAW_METRICS = ("allocation", "sparsity", "task")  # kept whole: one entry per layer and module
ATTRIBUTES = (
    "hypervolume", "baseline", "warm_start", "fail_reason", "pruned_at_step", "accuracy_at_stop",
    "interrupted", "surplus", "orphaned", "lost", "worker", "fidelity", "artifacts",
)  # fmt: skip


def frame(study: optuna.Study) -> pd.DataFrame:
    """Every trial of `study` as a row (see the module docstring for the columns)."""
    return trials_frame(study.get_trials(deepcopy=False))


def trials_frame(trials: Sequence[FrozenTrial]) -> pd.DataFrame:
    """Rows for `trials`, with the Pareto flag computed over the completed feasible ones.
    Surplus trials (created by a worker after others had filled the budget, never run) are
    left out: they say nothing about the search."""
    rows = [_row(trial) for trial in trials if not trial.user_attrs.get("surplus")]
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
    attrs = trial.user_attrs
    metrics = attrs.get("metrics") or {}
    values = read_objectives(trial.values, metrics) if complete else [np.nan] * len(OBJECTIVES)
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
    row |= flatten(metrics, "metric", keep=RAW_METRICS)
    return row


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    """Every column in order of first appearance."""
    return list(dict.fromkeys(key for row in rows for key in row))


# ---- reads of the app ------------------------------------------------------------------------

BASELINE_LABELS = {
    "full": "full fine-tuning", "head": "linear probe", "lora": "LoRA-only", "ia3": "IA3-only",
}  # fmt: skip
KEY_CHOICES = ("solver", "masks", "tau", "thresholds", "rank", "mode")


@dataclass
class Snapshot:
    """One read of a study: its trials as a frame (trials_frame with the key choices as
    `choice.<name>` columns), each trial's configuration as stored and the study's user
    attributes (plain data, so that it can be cached)."""

    name: str
    table: pd.DataFrame
    configs: dict[int, dict[str, Any]]
    attrs: dict[str, Any]


@dataclass
class Ablation:
    """The `autohm ablate` report stored in a study: variants, effects and notes."""

    summary: pd.DataFrame
    effects: pd.DataFrame
    notes: list[str]


def study_names(storage: str | None) -> list[str]:
    """Every autohm study in `storage` (a URL, a SQLite file or a directory holding
    autohm.db); studies with other objectives are left out."""
    opened = open_storage(locate(storage, Path(".")), must_exist=True)
    return sorted(
        study.study_name
        for study in optuna.study.get_all_study_summaries(opened, include_best_trial=False)
        if [d.name.lower() for d in study.directions] == list(DIRECTIONS)
    )


def snapshot(storage: str | None, name: str | None) -> Snapshot:
    """The study's trials, configurations and attributes as they are now."""
    return read(existing_study(storage, name))


def version(study: optuna.Study) -> tuple:
    """A cheap fingerprint of what `read` would return: it changes when a trial is added,
    changes state or finishes, or a study attribute is set. Reading it again through the same
    `study` is fast: Optuna keeps finished trials in memory."""
    trials = study.get_trials(deepcopy=False)
    states = tuple(sorted(Counter(t.state.name for t in trials).items()))
    finished = max((t.datetime_complete for t in trials if t.datetime_complete), default=None)
    return len(trials), states, finished, json.dumps(study.user_attrs, sort_keys=True, default=str)


def read(study: optuna.Study) -> Snapshot:
    """The study's trials, configurations and attributes as they are now."""
    trials = study.get_trials(deepcopy=False)
    configs = {t.number: t.user_attrs["config"] for t in trials if "config" in t.user_attrs}
    table = trials_frame(trials)
    table = table.join(key_choices(table, configs).add_prefix("choice."))
    return Snapshot(study.study_name, table, configs, dict(study.user_attrs))


def read_baselines(path: str | Path) -> pd.DataFrame:
    """The rows of `autohm baselines` (baselines.json or baselines.csv, or the directory
    holding them) with a readable `label` per baseline."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / ("baselines.csv" if (path / "baselines.csv").is_file() else "baselines.json")
    try:
        if path.suffix == ".csv":
            rows = pd.read_csv(path)
        else:
            rows = pd.DataFrame(json.loads(path.read_text()))
    except (OSError, ValueError) as error:
        raise AutohmError(f"baselines file {path}: {error}") from None
    if "latency" not in rows.columns and "latency_relative" in rows.columns:
        rows = rows.assign(latency=rows["latency_relative"])  # written before compaction
    missing = [c for c in ("baseline", *OBJECTIVES) if c not in rows.columns]
    if missing:
        raise AutohmError(
            f"baselines file {path}: no {', '.join(missing)} (autohm baselines writes one)"
        )
    return rows.assign(label=_baseline_labels(rows["baseline"]))


def references(table: pd.DataFrame, baselines: pd.DataFrame | None = None) -> pd.DataFrame:
    """Reference points for the plots: the study's completed baseline trials and the rows of a
    baselines file (read_baselines); columns label, source and the objectives."""
    columns = ["label", "source", *OBJECTIVES]
    parts = [pd.DataFrame(columns=columns)]
    if len(table) and "baseline" in table:
        done = table[table["baseline"].notna() & (table["state"] == "COMPLETE")]
        sources = [f"study trial {number}" for number in done["number"]]
        parts.append(done.assign(label=_baseline_labels(done["baseline"]), source=sources))
    if baselines is not None and len(baselines):
        parts.append(baselines.assign(source="baselines file"))
    return pd.concat([part[columns] for part in parts if len(part)] or parts, ignore_index=True)


def ablation(attrs: Mapping[str, Any]) -> Ablation | None:
    """The study's ablation report (the `ablation` attribute `autohm ablate --study` stores)."""
    document = attrs.get("ablation")
    if not isinstance(document, Mapping) or not document.get("summary"):
        return None
    return Ablation(
        pd.DataFrame(document["summary"]),
        pd.DataFrame(
            document.get("effects") or [], columns=["metric", "effect", "estimate", "low", "high"]
        ),
        [str(line) for line in document.get("notes") or []],
    )


def key_choices(table: pd.DataFrame, configs: Mapping[int, Mapping[str, Any]]) -> pd.DataFrame:
    """The configuration choices that shape each trial of `table`, as readable strings: scan
    solver, mask sites and granularity, temperature (tau) schedule, allocation thresholds, LoRA
    rank and PEFT mode (`configs`: trial number -> configuration)."""
    rows = [_choices(configs.get(number, {})) for number in table.get("number", [])]
    return pd.DataFrame(rows, index=table.index, columns=list(KEY_CHOICES))


def config_columns(table: pd.DataFrame, max_levels: int = 12) -> tuple[list[str], list[str]]:
    """The configuration columns that vary between trials: (categorical, numeric). Numbers
    with fractions, or with more than `max_levels` values, are numeric (ranges, colour
    scales); the rest is categorical (choices)."""
    categorical, numeric = [], []
    for column in [c for c in table.columns if c.startswith("cfg.")]:
        values = table[column]
        levels = labels(table, column)[values.notna()].nunique()
        if levels < 2:
            continue
        number = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        fractional = number and bool((values.dropna() % 1 != 0).any())
        (numeric if number and (fractional or levels > max_levels) else categorical).append(column)
    return categorical, numeric


def labels(table: pd.DataFrame, column: str) -> pd.Series:
    """A column as strings (lists joined with commas, missing values as "-"), for colours and
    filters."""
    values = table[column]
    if values.dtype == object:
        return values.map(_label)
    return values.astype(str).where(values.notna(), "-")  # vectorised: no lists here


def filtered(
    table: pd.DataFrame,
    ranges: Mapping[str, tuple[float, float]] | None = None,
    allowed: Mapping[str, Sequence[str]] | None = None,
    pareto_only: bool = False,
) -> pd.DataFrame:
    """The rows within every range (column -> (low, high); a missing value is outside), whose
    labels are allowed (column -> labels) and, with `pareto_only`, on the front."""
    keep = np.ones(len(table), dtype=bool)
    for column, (low, high) in (ranges or {}).items():
        keep &= table[column].between(low, high).to_numpy()
    for column, values in (allowed or {}).items():
        keep &= labels(table, column).isin(list(values)).to_numpy()
    if pareto_only and len(table):
        keep &= table["pareto"].to_numpy(dtype=bool)
    return table[keep]


def front_2d(table: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """The completed feasible trials that no other one beats on both objectives `x` and `y`,
    sorted along `x` (the step line of a 2-D Pareto plot)."""
    if table.empty:
        return table
    done = table[(table["state"] == "COMPLETE") & table["feasible"]].dropna(subset=[x, y])
    sign = {
        name: -1.0 if d == "maximize" else 1.0
        for name, d in zip(OBJECTIVES, DIRECTIONS, strict=True)
    }
    points = done[[x, y]].to_numpy(dtype=float) * [sign[x], sign[y]]
    return done[front_mask(points)].sort_values([x, y])


def hypervolume_history(table: pd.DataFrame) -> pd.DataFrame:
    """The hypervolume recorded after each completed trial (normalised units, see
    autohm.objectives): number, datetime_start, hypervolume."""
    columns = ["number", "datetime_start", "hypervolume"]
    if table.empty or "hypervolume" not in table:
        return pd.DataFrame(columns=columns)
    return table.loc[table["hypervolume"].notna(), columns].reset_index(drop=True)


def running_best(table: pd.DataFrame) -> pd.DataFrame:
    """The best value of every objective so far among completed feasible trials, by number."""
    if table.empty:
        return pd.DataFrame(columns=["number", *OBJECTIVES])
    done = table[(table["state"] == "COMPLETE") & table["feasible"]].sort_values("number")
    best = pd.DataFrame({"number": done["number"]})
    for name, direction in zip(OBJECTIVES, DIRECTIONS, strict=True):
        best[name] = done[name].cummax() if direction == "maximize" else done[name].cummin()
    return best.reset_index(drop=True)


def allocation(row: Mapping[str, Any]) -> pd.DataFrame:
    """One trial's PEFT allocation: layer, module, method (lora, ia3, frozen), rank, importance."""
    entries = _mapping(row.get("metric.allocation"))
    records = [
        {"layer": _layer(key), "module": key.rsplit(".", 1)[-1], **_mapping(entry)}
        for key, entry in entries.items()
    ]  # fmt: skip
    return pd.DataFrame(records, columns=["layer", "module", "method", "rank", "importance"])


def sparsity(row: Mapping[str, Any]) -> pd.DataFrame:
    """One trial's learned mask sparsity (fraction masked): layer, site, sparsity."""
    per_layer = _mapping(row.get("metric.sparsity"))
    records = [
        {"layer": _layer(layer), "site": site, "sparsity": value}
        for layer, sites in per_layer.items() if layer != "all"
        for site, value in _mapping(sites).items()
    ]  # fmt: skip
    return pd.DataFrame(records, columns=["layer", "site", "sparsity"])


def scan_costs(row: Mapping[str, Any]) -> pd.DataFrame:
    """One trial's scan-order path cost per layer before and after the solver."""
    layers = row.get("metric.scan_order.layers")
    layers = layers if isinstance(layers, list) else []
    records = [{"layer": i, **_mapping(entry)} for i, entry in enumerate(layers)]
    return pd.DataFrame(records, columns=["layer", "before", "after"])


def timings(row: Mapping[str, Any]) -> pd.DataFrame:
    """Seconds spent in each phase of one trial (scan order, masks, fine-tuning, evaluation,
    measurement)."""
    prefix = "metric.timings."
    records = [
        {"phase": key.removeprefix(prefix).removesuffix("_s").replace("_", " "), "seconds": value}
        for key, value in row.items()
        if key.startswith(prefix) and _number(value)
    ]  # fmt: skip
    return pd.DataFrame(records, columns=["phase", "seconds"])


def latency_record(row: Mapping[str, Any]) -> dict[str, Any]:
    """How one trial's latency was measured: device, versions, threads, repeats, backend."""
    prefix = "metric.device."
    return {
        key.removeprefix(prefix): value
        for key, value in row.items()
        if key.startswith(prefix) and not _missing(value)
    }


def _choices(config: Mapping[str, Any]) -> dict[str, str]:
    """The readable key choices of one nested configuration (see key_choices)."""
    order, masking, peft = (_mapping(config.get(k)) for k in ("scan_order", "masking", "peft"))
    masked = bool(masking.get("enabled", False))
    mode = str(peft.get("mode", "-"))
    return {
        "solver": str(order.get("method", "-")),
        "masks": _masks(masking) if masked else "off",
        "tau": _schedule(_mapping(masking.get("schedule"))) if masked else "-",
        "thresholds": _thresholds(peft) if mode == "hybrid" else "-",
        "rank": _label(peft.get("rank")) if mode in ("hybrid", "lora") else "-",
        "mode": mode,
    }


def _masks(masking: Mapping[str, Any]) -> str:
    granularity = masking.get("granularity", "-")
    if granularity == "block":
        granularity = f"block {masking.get('block_size', '?')}"
    return f"{_label(masking.get('sites'))} ({granularity})"


def _schedule(schedule: Mapping[str, Any]) -> str:
    start, end = _short(schedule.get("start")), _short(schedule.get("end"))
    return f"{schedule.get('kind', '-')} {start}→{end}"


def _thresholds(peft: Mapping[str, Any]) -> str:
    return f"LoRA q{_short(peft.get('lora_quantile'))}, IA3 q{_short(peft.get('ia3_quantile'))}"


def _baseline_labels(names: pd.Series) -> pd.Series:
    return names.map(BASELINE_LABELS).fillna(names)


def _layer(key: str) -> int | str:
    """The layer index in a key like `layers.3.in_proj` or `layers.3` (else the key)."""
    parts = key.split(".")
    return int(parts[1]) if len(parts) > 1 and parts[0] == "layers" and parts[1].isdigit() else key


def _label(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value))
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    return "-" if _missing(value) else str(value)


def _short(value: Any) -> str:
    return f"{value:.3g}" if _number(value) else "-"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _number(value: Any) -> bool:
    real = isinstance(value, int | float | np.number) and not isinstance(value, bool)
    return real and bool(np.isfinite(value))


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))
