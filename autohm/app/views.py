"""What the app reads and shows of a study, without Streamlit: the study names of a storage, a
snapshot of one study (its frame from autohm.results, each trial's key choices and
configuration, the study's attributes), the baselines file and the ablation report; labels,
filters, 2-D fronts and histories of the frame; the parts of one trial's metrics (allocation,
mask sparsity, scan-order costs, timings, the latency record). The pages and figures of the
app draw these; `autohm app` reads the storage and the baselines file through them before it
starts Streamlit; tests call them alone."""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd

from autohm.errors import AutohmError
from autohm.objectives import DIRECTIONS, OBJECTIVES, front_mask
from autohm.outcome import TrialOutcome
from autohm.results import trials_frame
from autohm.storage import existing_study, locate, open_storage

BASELINE_LABELS = {
    "full": "full fine-tuning", "head": "linear probe", "lora": "LoRA-only", "ia3": "IA3-only",
}  # fmt: skip
KEY_CHOICES = ("solver", "masks", "tau", "thresholds", "rank", "mode")
FORMATS = {"accuracy": "{:.4f}", "flops": "{:,.0f}", "params": "{:,.0f}", "latency": "{:.3g}"}
MAX_LEVELS = 12  # a column with more distinct values is no choice to filter or colour by


@dataclass
class Snapshot:
    """One read of a study: its trials as a frame (trials_frame with the key choices as
    `choice.<name>` columns), each trial's configuration as stored, each trial's outcome and
    the study's user attributes (plain data, so that it can be cached)."""

    name: str
    table: pd.DataFrame
    configs: dict[int, dict[str, Any]]
    attrs: dict[str, Any]
    outcomes: dict[int, TrialOutcome | None]


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
    outcomes = {t.number: TrialOutcome.of(t) for t in trials}
    table = trials_frame(trials, outcomes)
    table = table.join(key_choices(table, configs).add_prefix("choice."))
    return Snapshot(study.study_name, table, configs, dict(study.user_attrs), outcomes)


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


def filter_columns(table: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(choices, ranges): the state, key choices and categorical configuration columns that
    vary (each set of labels once); the numeric configuration columns."""
    categorical, numeric = config_columns(table, MAX_LEVELS)
    choices = [f"choice.{name}" for name in KEY_CHOICES]
    kept, seen = [], []
    for column in ["state", *choices, *categorical]:
        values = labels(table, column)
        if 1 < values.nunique() <= MAX_LEVELS and not any(values.equals(v) for v in seen):
            kept.append(column)  # a configuration column that repeats a choice is left out
            seen.append(values)
    return kept, numeric


def labels(table: pd.DataFrame, column: str) -> pd.Series:
    """A column as strings (lists joined with commas, missing values as "-"), for colours and
    filters."""
    values = table[column]
    if values.dtype == object:
        return values.map(_label)
    return values.astype(str).where(values.notna(), "-")  # vectorised: no lists here


def hover_text(table: pd.DataFrame) -> pd.Series:
    """Per trial: number, state, the four objectives and the key configuration choices."""
    choice = {name: table[f"choice.{name}"].astype(str) for name in KEY_CHOICES}
    front = np.where(table["pareto"], " · on the front", "")
    feasible = np.where(table["feasible"], "", " · infeasible")
    baseline = table["baseline"].map(lambda b: f" · baseline {b}" if isinstance(b, str) else "")
    objectives = {name: _formatted(table[name], FORMATS[name]) for name in OBJECTIVES}
    lines = [
        "<b>trial " + table["number"].astype(str) + "</b> · " + table["state"].astype(str)
        + front + feasible + baseline,
        "accuracy " + objectives["accuracy"] + " · FLOPs " + objectives["flops"] + " · params "
        + objectives["params"] + " · latency " + objectives["latency"] + "x dense",
        "solver " + choice["solver"] + " · masks " + choice["masks"],
        "tau " + choice["tau"] + " · thresholds " + choice["thresholds"],
        "PEFT " + choice["mode"] + " · rank " + choice["rank"],
    ]  # fmt: skip
    return functools.reduce(lambda text, line: text + "<br>" + line, lines)


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


def allocation(outcome: TrialOutcome | None) -> pd.DataFrame:
    """One trial's PEFT allocation: layer, module, method (lora, ia3, frozen), rank, importance."""
    entries = outcome.allocation if outcome else {}
    records = [
        {"layer": _layer(key), "module": key.rsplit(".", 1)[-1], **entry.model_dump()}
        for key, entry in entries.items()
    ]  # fmt: skip
    return pd.DataFrame(records, columns=["layer", "module", "method", "rank", "importance"])


def sparsity(outcome: TrialOutcome | None) -> pd.DataFrame:
    """One trial's learned mask sparsity (fraction masked): layer, site, sparsity."""
    per_layer = outcome.sparsity if outcome else {}
    records = [
        {"layer": _layer(layer), "site": site, "sparsity": value}
        for layer, sites in per_layer.items() if layer != "all"
        for site, value in sites.items()
    ]  # fmt: skip
    return pd.DataFrame(records, columns=["layer", "site", "sparsity"])


def scan_costs(outcome: TrialOutcome | None) -> pd.DataFrame:
    """One trial's scan-order path cost per layer before and after the solver."""
    layers = outcome.scan_order.layers if outcome else []
    records = [{"layer": i, **entry.model_dump()} for i, entry in enumerate(layers)]
    return pd.DataFrame(records, columns=["layer", "before", "after"])


def timings(outcome: TrialOutcome | None) -> pd.DataFrame:
    """Seconds spent in each phase of one trial (scan order, masks, fine-tuning, evaluation,
    measurement)."""
    seconds = outcome.timings.model_dump() if outcome else {}
    records = [
        {"phase": key.removesuffix("_s").replace("_", " "), "seconds": value}
        for key, value in seconds.items()
        if _number(value)
    ]  # fmt: skip
    return pd.DataFrame(records, columns=["phase", "seconds"])


def latency_record(outcome: TrialOutcome | None) -> dict[str, Any]:
    """How one trial's latency was measured: device, versions, threads, repeats, backend."""
    record = outcome.device if outcome else {}
    return {key: value for key, value in record.items() if not _missing(value)}


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


def _formatted(values: pd.Series, pattern: str) -> pd.Series:
    return values.map(lambda value: "-" if pd.isna(value) else pattern.format(value))


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
