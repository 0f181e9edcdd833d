"""autohm's Streamlit app: a study's Pareto front, its progress, every trial, one trial's
allocation and measurements, and the ablation report; downloads of a trial's configuration and
of the trial table.

    autohm app [--storage URL] [--study NAME] [--baselines FILE] [--port P]
    streamlit run app.py          # reads AUTOHM_STORAGE, AUTOHM_STUDY, AUTOHM_BASELINES

Every read goes through autohm.results and is reused for TTL_S seconds; this file lays it out.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st
import yaml

from autohm import results
from autohm.errors import AutohmError
from autohm.figures import (
    Style,
    allocation_figure,
    axis_title,
    bars_figure,
    column_title,
    cube_figure,
    effects_figure,
    history_figure,
    hypervolume_figure,
    matrix_figure,
    pareto_figure,
    sparsity_figure,
)
from autohm.objectives import OBJECTIVES
from autohm.selection import SelectionError, pick
from autohm.storage import existing_study
from autohm.trial import stop_point

TTL_S = 10  # seconds a read of the storage is reused; the Refresh button reads at once
FORMATS = {"accuracy": "{:.4f}", "flops": "{:,.0f}", "params": "{:,.0f}", "latency": "{:.3g}"}
VIEWS = ("Pareto front", "Progress", "Trials", "Trial", "Ablation")
KEPT = "w."  # prefix of the widget keys whose values outlive a tab that is not drawn
TRIAL_KEY, VIEW_KEY = f"{KEPT}trial", "view"
SHOWN = ("dominated", "infeasible", "references")
TABLE_COLUMNS = ["number", "state", "pareto", "feasible", *OBJECTIVES,
                 *(f"choice.{name}" for name in results.KEY_CHOICES), "baseline", "duration_s",
                 "datetime_start", "fail_reason"]  # fmt: skip
RAW_COLUMNS = (
    "hover",
    "fidelity",
    "artifacts",
    "metric.allocation",
    "metric.sparsity",
    "metric.task",
    "metric.scan_order.layers",
)  # per layer: shown in the Trial tab
MAX_LEVELS = 12  # a column with more distinct values is no choice to filter or colour by
DIMMED_LIMIT = 2500  # dominated or infeasible trials drawn at most (a fixed sample beyond)


@dataclass(frozen=True)
class Source:
    """Where the study lives: storage, study name and an optional baselines file."""

    storage: str
    study: str
    baselines: str


# ---- reads (cached) --------------------------------------------------------------------------


@st.cache_data(ttl=TTL_S, show_spinner=False)
def load_names(storage: str) -> list[str]:
    """The studies in `storage`."""
    return results.study_names(storage)


@st.cache_resource(show_spinner=False)
def cached_study(storage: str, study: str) -> Any:
    """The study, kept open: Optuna then reads only new and unfinished trials again."""
    return existing_study(storage, study)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def study_version(storage: str, study: str) -> tuple:
    """The study's fingerprint, read at most every TTL_S seconds (results.version)."""
    return results.version(cached_study(storage, study))


@st.cache_resource(max_entries=4, show_spinner="Reading the study")
def study_snapshot(storage: str, study: str, version: tuple) -> results.Snapshot:
    """The study at `version`, with each trial's hover text (shared; never modified)."""
    snapshot = results.read(cached_study(storage, study))
    if len(snapshot.table):
        snapshot.table["hover"] = hover_text(snapshot.table)
    return snapshot


def load_snapshot(storage: str, study: str) -> results.Snapshot:
    """The study as of the last read (at most TTL_S seconds old; Refresh reads at once)."""
    return study_snapshot(storage, study, study_version(storage, study))


@st.cache_data(ttl=TTL_S, show_spinner=False)
def load_baselines(path: str) -> pd.DataFrame:
    """The rows of a baselines file."""
    return results.read_baselines(path)


def config_yaml(storage: str, study: str, number: int) -> bytes:
    """The file `autohm export --trial NUMBER` writes: the download button's bytes."""
    from autohm.export import export_trial  # loads the training stack: only on demand

    with tempfile.TemporaryDirectory() as directory:
        target = Path(directory) / "trial.yaml"
        path, _ = export_trial(existing_study(storage, study), f"trial:{number}", target)
        return path.read_bytes()


def table_csv(table: pd.DataFrame) -> bytes:
    """Rows of the trial table as CSV, in the columns of `autohm export --format csv`."""
    app_only = [c for c in table.columns if c == "hover" or c.startswith("choice.")]
    return table.drop(columns=app_only).to_csv(index=False).encode()


# ---- text ------------------------------------------------------------------------------------


def hover_text(table: pd.DataFrame) -> pd.Series:
    """Per trial: number, state, the four objectives and the key configuration choices."""
    choice = {name: table[f"choice.{name}"].astype(str) for name in results.KEY_CHOICES}
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


def _formatted(values: pd.Series, pattern: str) -> pd.Series:
    return values.map(lambda value: "-" if pd.isna(value) else pattern.format(value))


def trial_labels(table: pd.DataFrame) -> dict[int, str]:
    """How the trial picker names each trial: number, state, front, accuracy, baseline."""
    accuracy = table["accuracy"].map(lambda a: "" if pd.isna(a) else f" · accuracy {a:.4f}")
    baseline = table["baseline"].map(lambda b: f" · baseline {b}" if isinstance(b, str) else "")
    front = np.where(table["pareto"], " · front", "")
    state = table["state"].str.lower()
    text = "trial " + table["number"].astype(str) + " · " + state + front + accuracy + baseline
    return dict(zip(table["number"].astype(int), text, strict=True))


# ---- widget state ----------------------------------------------------------------------------


def keep_widget_state() -> None:
    """Streamlit forgets the value of a widget that a run does not draw (one in a closed tab);
    writing the values back keeps them."""
    for key in [k for k in st.session_state if isinstance(k, str) and k.startswith(KEPT)]:
        st.session_state[key] = st.session_state[key]


def select(
    label: str,
    options: Sequence[Any],
    key: str,
    default: Any = None,
    where: Any = st,
    **kwargs: Any,
) -> Any:
    """A selectbox whose value survives reruns and falls back to `default` (else the first
    option) when it is not an option any more."""
    if st.session_state.get(key) not in options:
        st.session_state[key] = default if default in options else options[0]
    return where.selectbox(label, options, key=key, **kwargs)


def checkbox(label: str, key: str, where: Any = st) -> bool:
    """A checkbox that starts ticked and keeps its value."""
    st.session_state.setdefault(key, True)
    return where.checkbox(label, key=key)


def choose_trial(number: int) -> None:
    """Show trial `number` in the Trial tab."""
    st.session_state[TRIAL_KEY] = number
    st.session_state[VIEW_KEY] = "Trial"


def chart_clicked(key: str) -> None:
    """A click on a trial's point opens it."""
    points = st.session_state[key].selection.points
    numbers = [point.get("customdata") for point in points if point.get("customdata") is not None]
    if numbers:
        choose_trial(int(np.ravel(numbers[0])[0]))


def row_clicked(key: str, numbers: list[int]) -> None:
    """A click on a row of the table opens its trial."""
    rows = st.session_state[key].selection.rows
    if rows:
        choose_trial(numbers[rows[0]])


# ---- sidebar ---------------------------------------------------------------------------------


def sidebar_source() -> Source | None:
    """Storage, study and baselines file from the sidebar (defaults from the environment); None
    with a message when there is no study to show."""
    bar = st.sidebar
    bar.header("Study")
    st.session_state.setdefault("storage", os.environ.get("AUTOHM_STORAGE", "autohm.db"))
    storage = bar.text_input(
        "Storage", key="storage", help="Storage URL, SQLite file or a directory with autohm.db"
    ).strip()
    try:
        names = load_names(storage)
    except AutohmError as error:
        st.error(f"Cannot open the storage: {error}")
        return None
    if not names:
        st.info(f"The storage {storage} holds no study yet: start one with `autohm search`.")
        return None
    study = select("Study", names, "study", os.environ.get("AUTOHM_STUDY"), where=bar)
    st.session_state.setdefault("baselines", os.environ.get("AUTOHM_BASELINES", ""))
    baselines = bar.text_input(
        "Baselines file",
        key="baselines",
        placeholder="baselines.json",
        help="baselines.json from `autohm baselines --out DIR`: drawn as reference points",
    )
    if bar.button("Refresh", help=f"Read the storage now (reads are reused for {TTL_S} s)"):
        for cached in (load_names, study_version, load_baselines, cached_study):
            cached.clear()
    return Source(storage, study, baselines.strip())


def sidebar_filters(table: pd.DataFrame, study: str) -> pd.DataFrame:
    """The trials that pass the sidebar's filters (objective ranges, configuration choices and
    ranges, front only); the filters apply to every view."""
    bar = st.sidebar
    bar.header("Filters")
    pareto_only = bar.toggle("Pareto front only", key=f"{study}:pareto_only")
    ranges = {name: range_filter(bar, table, name, study) for name in OBJECTIVES}
    categorical, numeric = filter_columns(table)
    allowed = {}
    with bar.expander("Configuration"):
        for column in categorical:
            levels = sorted(results.labels(table, column).unique())
            picked = st.multiselect(
                column_title(column), levels, key=f"{study}:{column}", placeholder="all"
            )
            if picked:
                allowed[column] = picked
        ranges |= {column: range_filter(st, table, column, study) for column in numeric}
    ranges = {column: chosen for column, chosen in ranges.items() if chosen is not None}
    return results.filtered(table, ranges, allowed, pareto_only)


def range_filter(where: Any, table: pd.DataFrame, column: str, study: str) -> tuple | None:
    """A range slider over a numeric column; the range when narrowed, else None."""
    values = table[column].dropna().astype(float)
    low, high = (float(values.min()), float(values.max())) if len(values) else (0.0, 0.0)
    if not high > low:
        return None
    chosen = where.slider(
        column_title(column), low, high, (low, high), key=f"{study}:{column}",
        format=_slider_format(column, high),
    )  # fmt: skip
    return None if chosen == (low, high) else chosen


def filter_columns(table: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(choices, ranges): the state, key choices and categorical configuration columns that
    vary (each set of labels once); the numeric configuration columns."""
    categorical, numeric = results.config_columns(table, MAX_LEVELS)
    choices = [f"choice.{name}" for name in results.KEY_CHOICES]
    kept, seen = [], []
    for column in ["state", *choices, *categorical]:
        values = results.labels(table, column)
        if 1 < values.nunique() <= MAX_LEVELS and not any(values.equals(v) for v in seen):
            kept.append(column)  # a configuration column that repeats a choice is left out
            seen.append(values)
    return kept, numeric


def _slider_format(name: str, high: float) -> str:
    return "%.3f" if name == "accuracy" else "%.2e" if high >= 1e5 else "%.3g"


def _levels(table: pd.DataFrame, column: str) -> int:
    return results.labels(table, column).nunique()


# ---- pages -----------------------------------------------------------------------------------


def header(snapshot: results.Snapshot, source: Source) -> None:
    """Title, what the study searched and its counts."""
    st.title(f"autohm · {snapshot.name}")
    identity = snapshot.attrs.get("autohm") or {}
    facts = [f"storage `{source.storage}`"]
    facts += [f"{key} `{identity[key]}`" for key in ("task", "model") if identity.get(key)]
    if identity.get("space"):
        facts.append(f"space `{Path(str(identity['space'])).stem}`")
    st.caption(" · ".join(facts))
    table = snapshot.table
    if table.empty:
        return
    states = table["state"].value_counts()
    done = table[table["state"] == "COMPLETE"]
    history = results.hypervolume_history(table)
    counts = {
        "trials": len(table),
        "complete": states.get("COMPLETE", 0),
        "stopped early": states.get("PRUNED", 0),
        "failed": states.get("FAIL", 0),
        "running": states.get("RUNNING", 0) + states.get("WAITING", 0),
        "on the front": table["pareto"].sum(),
        "best accuracy": f"{done['accuracy'].max():.4f}" if len(done) else "-",
        "hypervolume": f"{history['hypervolume'].iloc[-1]:.4f}" if len(history) else "-",
    }
    for cell, (label, value) in zip(st.columns(len(counts)), counts.items(), strict=True):
        cell.metric(label, value if isinstance(value, str) else int(value))


def nothing_to_plot(snapshot: results.Snapshot) -> bool:
    """A clear message when the study has no completed trial (True: nothing else to show)."""
    table = snapshot.table
    if table.empty:
        st.info(
            f"Study {snapshot.name} has no trials yet. Trials appear here as `autohm search` "
            "runs them (press Refresh)."
        )
        return True
    if (table["state"] == "COMPLETE").any():
        return False
    counts = ", ".join(f"{n} {s.lower()}" for s, n in table["state"].value_counts().items())
    st.warning(
        f"No trial of study {snapshot.name} has completed yet ({counts}). Failed trials "
        "and their reasons:"
    )
    shown = [
        c for c in ["number", "state", "fail_reason", "duration_s", "datetime_start"] if c in table
    ]
    st.dataframe(table[shown], hide_index=True, width="stretch")
    return True


def thinned(points: pd.DataFrame) -> pd.DataFrame:
    """The completed trials to draw: every front member and at most DIMMED_LIMIT others (a
    fixed random sample), so that plots of large studies stay quick in the browser."""
    points = points[points["state"] == "COMPLETE"]
    others = ~points["pareto"].to_numpy(dtype=bool)
    if others.sum() <= DIMMED_LIMIT:
        return points
    sample = points[others].sample(DIMMED_LIMIT, random_state=0).index
    return points[~others | points.index.isin(sample)]


def pareto_page(
    table: pd.DataFrame,
    view: pd.DataFrame,
    references: pd.DataFrame,
    variants: pd.DataFrame | None,
) -> None:
    """Two 2-D fronts with choosable axes, the 3-D view and the scatter matrix."""
    style = plot_style(table, view)
    points = thinned(view)
    if points.empty:
        st.info("No completed trial passes the filters.")
        return
    columns = st.columns(1 if style.facet else 2)
    for index, defaults in enumerate((("flops", "accuracy"), ("params", "accuracy"))):
        with columns[index % len(columns)]:
            x, y = axis_pair(index, defaults)
            if x == y:
                st.info("Choose two different objectives.")
                continue
            key = f"chart{index}"
            st.plotly_chart(
                pareto_figure(points, x, y, style, references, variants), key=key,
                on_select=functools.partial(chart_clicked, key), selection_mode="points",
                width="stretch",
            )  # fmt: skip
    st.caption(
        "Filled markers: the Pareto front over all four objectives; dotted line: the front of "
        f"the two objectives shown. Click a point to open its trial.{sample_note(view, points)}"
    )
    left, right = st.columns(2)
    with left:
        st.subheader("Accuracy, FLOPs and params")
        st.plotly_chart(cube_figure(points), width="stretch")
        st.caption("Large markers: the Pareto front; small: dominated trials; colour: latency.")
    with right:
        st.subheader("All four objectives")
        st.plotly_chart(matrix_figure(points), width="stretch")


def sample_note(view: pd.DataFrame, points: pd.DataFrame) -> str:
    """What the plots leave out of a large study (see thinned)."""
    others = int((view["state"] == "COMPLETE").sum() - view["pareto"].sum())
    drawn = len(points) - int(points["pareto"].sum())
    if drawn == others:
        return ""
    return f" Drawn: every front member and a fixed sample of {drawn:,} of the {others:,} others."


def axis_pair(index: int, defaults: tuple[str, str]) -> tuple[str, str]:
    """The x and y objectives of Pareto plot `index`."""
    pick_x, pick_y = st.columns(2)
    keys, wheres = (f"{KEPT}x{index}", f"{KEPT}y{index}"), (pick_x, pick_y)
    return tuple(
        select(label, OBJECTIVES, key, default, where=where, format_func=axis_title)
        for label, key, default, where in zip(("x axis", "y axis"), keys, defaults, wheres,
                                              strict=True)
    )  # fmt: skip


def plot_style(table: pd.DataFrame, view: pd.DataFrame) -> Style:
    """Colour, facet and the groups shown, from the controls above the plots (the options come
    from the whole study, so that filtering keeps them)."""
    categorical, numeric = filter_columns(table)
    facets = ["none", *[c for c in categorical if _levels(table, c) <= 6]]
    left, middle, right = st.columns([2, 2, 3])
    colour = select(
        "Colour by",
        ["front", *categorical, *numeric],
        f"{KEPT}colour",
        where=left,
        format_func=lambda c: "Pareto status" if c == "front" else column_title(c),
    )
    facet = select("Facet by", facets, f"{KEPT}facet", where=middle, format_func=column_title)
    right.markdown("**Show**")
    boxes = right.columns(len(SHOWN))
    shown = [
        checkbox(name, f"{KEPT}{name}", where=box) for box, name in zip(boxes, SHOWN, strict=True)
    ]
    scale = None
    if colour in numeric and view[colour].notna().any():
        scale = (float(view[colour].min()), float(view[colour].max()))
    chosen, facet = (None if c in ("front", "none") else c for c in (colour, facet))
    return Style(chosen, scale, facet, *shown)  # fmt: skip


def progress_page(table: pd.DataFrame) -> None:
    """The hypervolume over trials and every objective over time."""
    by = st.radio(
        "x axis",
        ["number", "datetime_start"],
        key=f"{KEPT}progress_by",
        horizontal=True,
        format_func={"number": "trial", "datetime_start": "start time"}.get,
    )
    history = results.hypervolume_history(table)
    st.subheader("Hypervolume")
    if history.empty:
        st.info("No hypervolume recorded yet (autohm search records it after each trial).")
    else:
        st.plotly_chart(hypervolume_figure(history, by), width="stretch")
        st.caption(
            "Fraction of the unit box the front dominates, in the units of docs/search.md: "
            "1 − accuracy, FLOPs / (1.1 × dense), params / (1.1 × all), latency / 2 "
            "(latency is already a multiple of the dense model's)."
        )
    st.subheader("Objectives over time")
    st.plotly_chart(history_figure(table, by), width="stretch")


def trials_page(view: pd.DataFrame, total: int, study: str) -> None:
    """The filtered trials as a sortable table; a click opens a trial; CSV download."""
    top, right = st.columns([4, 1])
    top.caption(
        f"{len(view)} of {total} trials pass the filters. Click a column to sort, a "
        "row to open its trial."
    )
    everything = right.toggle("all columns", key=f"{KEPT}all_columns")
    shown = display_table(view, everything)
    numbers = [int(n) for n in view["number"]]
    st.dataframe(
        shown,
        hide_index=True,
        width="stretch",
        height=min(640, 38 + 35 * max(len(shown), 3)),
        column_config=column_config(shown.columns),
        key="table",
        on_select=functools.partial(row_clicked, "table", numbers),
        selection_mode="single-row",
    )
    st.download_button(
        "Download the table (CSV)",
        functools.partial(table_csv, view),  # written on click
        f"{study}-trials.csv",
        "text/csv",
        key="download_csv",
    )


def display_table(view: pd.DataFrame, everything: bool) -> pd.DataFrame:
    """The table's columns: the main ones, or all but the raw per-layer metrics; lists and
    mappings as text."""
    columns = [c for c in TABLE_COLUMNS if c in view]
    if everything:
        columns += [c for c in view.columns if c not in columns and c not in RAW_COLUMNS]
    shown = view[columns].copy()
    for column in shown.columns:
        if shown[column].dtype == object:
            shown[column] = results.labels(shown, column).replace("-", None)
    return shown


def column_config(columns: Sequence[str]) -> dict[str, Any]:
    """Readable headers and number formats."""
    formats = {
        "accuracy": "%.4f",
        "flops": "compact",
        "params": "compact",
        "latency": "%.3f",
        "duration_s": "%.1f",
    }
    config: dict[str, Any] = {
        column: st.column_config.Column(column_title(column)) for column in columns
    }
    for column, number_format in formats.items():
        if column in columns:
            config[column] = st.column_config.NumberColumn(
                column_title(column), format=number_format
            )
    config["number"] = st.column_config.NumberColumn("trial", format="%d")
    config["datetime_start"] = st.column_config.DatetimeColumn(
        "started", format="YYYY-MM-DD HH:mm:ss"
    )
    return config


def trial_page(snapshot: results.Snapshot, source: Source) -> None:
    """One trial: objectives, configuration, allocation, masks, scan order, timings, latency
    record, and its configuration as the YAML `autohm export` writes."""
    table = snapshot.table
    labels = trial_labels(table)
    numbers = list(labels)
    default = None if st.session_state.get(TRIAL_KEY) in labels else default_trial(table)
    number = select("Trial", numbers, TRIAL_KEY, default, format_func=labels.get)
    row = table[table["number"] == number].iloc[0]
    trial_status(row)
    cells = st.columns(4)
    for cell, name in zip(cells, OBJECTIVES, strict=True):
        value = row[name]
        cell.metric(axis_title(name), "-" if pd.isna(value) else FORMATS[name].format(value))
    exportable = row["state"] in ("COMPLETE", "PRUNED") and number in snapshot.configs
    st.download_button(
        "Download the configuration (YAML)",
        functools.partial(config_yaml, source.storage, source.study, number),
        f"{snapshot.name}-trial{number}.yaml",
        "application/x-yaml",
        key="download_yaml",
        disabled=not exportable,
        type="primary",
        help="The file `autohm export --trial N` writes; train it with `autohm train --config`",
    )
    left, right = st.columns([2, 3])
    with left:
        st.subheader("Configuration")
        config = snapshot.configs.get(number)
        st.code(yaml.safe_dump(config, sort_keys=False) if config else "(none recorded)", "yaml")
    with right:
        trial_allocation(row)
    trial_measurements(row)


def default_trial(table: pd.DataFrame) -> int:
    """The trial export would pick (the knee: a front member), else the latest."""
    try:
        return int(pick(table[table["pareto"]], "knee")["number"])
    except SelectionError:
        return int(table["number"].max())


def trial_status(row: pd.Series) -> None:
    """Why a trial did not complete, or that it is a baseline."""
    if row["state"] == "FAIL":
        st.error(f"Failed: {row.get('fail_reason') or 'no reason recorded'}")
    elif row["state"] == "PRUNED":
        step, accuracy = row.get("pruned_at_step"), row.get("accuracy_at_stop")
        where = stop_point(int(step)) if pd.notna(step) else "at an unrecorded step"
        st.warning(f"Stopped early {where} with accuracy {_plain(accuracy)}.")
    elif row["state"] != "COMPLETE":
        st.info(f"This trial is {row['state'].lower()}.")
    if isinstance(row.get("baseline"), str):
        st.caption(f"Baseline: {results.BASELINE_LABELS.get(row['baseline'], row['baseline'])}.")


def trial_allocation(row: pd.Series) -> None:
    """The allocation heat map and the mask sparsity heat map."""
    grid = results.allocation(row)
    st.subheader("Allocation per layer and module")
    if grid.empty:
        st.caption("No allocation recorded.")
    else:
        st.plotly_chart(allocation_figure(grid), width="stretch")
        counts = grid["method"].value_counts()
        st.caption(" · ".join(f"{counts.get(m, 0)} {m}" for m in ("lora", "ia3", "frozen")))
    masks = results.sparsity(row)
    st.subheader("Mask sparsity per site and layer")
    if masks.empty:
        st.caption("Masks were off for this trial.")
    else:
        st.plotly_chart(sparsity_figure(masks), width="stretch")


def trial_measurements(row: pd.Series) -> None:
    """Scan-order path cost, time per phase and the latency measurement's record."""
    costs, phases = results.scan_costs(row), results.timings(row)
    left, middle, right = st.columns(3)
    with left:
        st.subheader("Scan-order path cost")
        if costs.empty:
            st.caption(f"No path solved (order: {row.get('cfg.scan_order.method', '-')}).")
        else:
            values = {"before": "before", "after": "after"}
            st.plotly_chart(
                bars_figure(
                    costs.assign(layer="layer " + costs["layer"].astype(str)),
                    "layer",
                    values,
                    "path cost",
                ),
                width="stretch",
            )
            st.caption(
                f"{row.get('cfg.scan_order.method')}: total "
                f"{row.get('metric.scan_order.path_cost_before', float('nan')):.4g} → "
                f"{row.get('metric.scan_order.path_cost_after', float('nan')):.4g}; "
                f"precompute {row.get('metric.scan_order.precompute_s', float('nan')):.3g} s"
            )
    with middle:
        st.subheader("Time per phase")
        if phases.empty:
            st.caption("No timings recorded.")
        else:
            st.plotly_chart(
                bars_figure(phases, "phase", {"seconds": "seconds"}, "seconds"), width="stretch"
            )
            st.caption(
                f"Whole trial: {row['duration_s']:.1f} s" if pd.notna(row["duration_s"]) else ""
            )
    with right:
        st.subheader("Latency measurement")
        record = results.latency_record(row)
        if record:
            shown = pd.DataFrame(
                {"field": list(record), "value": [_plain(v) for v in record.values()]}
            )
            st.dataframe(shown, hide_index=True, width="stretch", height=38 + 35 * len(shown))
        else:
            st.caption("No latency recorded.")


def _plain(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return f"{value:.0f}" if float(value).is_integer() else f"{value:.4g}"
    return str(value)


def ablation_page(report: results.Ablation) -> None:
    """The ablation's variants (mean ± std), factorial effects with intervals, and notes."""
    st.caption("From `autohm ablate --study`; the variants are also drawn on the Pareto plots.")
    st.subheader("Variants")
    st.dataframe(ablation_table(report.summary), hide_index=True, width="stretch")
    st.subheader("Factorial effects of the pillars")
    if len(report.effects):
        metrics = list(dict.fromkeys(report.effects["metric"]))
        metric = select("Metric", metrics, f"{KEPT}ablation_metric", "accuracy")
        shown = report.effects[report.effects["metric"] == metric]
        st.plotly_chart(effects_figure(shown), width="stretch")
    st.subheader("Notes")
    st.markdown("\n".join(f"- {line}" for line in report.notes) or "(none)")


def ablation_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Variants with each metric as mean ± std."""
    shown = summary[[c for c in ("variant", "group") if c in summary]].copy()
    for column in [c for c in summary.columns if c.endswith("_mean")]:
        metric = column.removesuffix("_mean")
        std = summary.get(f"{metric}_std", pd.Series(0.0, index=summary.index)).fillna(0.0)
        shown[metric] = [f"{m:.4g} ± {s:.2g}" for m, s in zip(summary[column], std, strict=True)]
    if "seeds" in summary:
        shown["seeds"] = summary["seeds"]
    return shown


def reference_points(snapshot: results.Snapshot, path: str) -> pd.DataFrame:
    """The study's baseline trials and the baselines file's rows (a warning when the file
    cannot be read)."""
    baselines = None
    if path:
        try:
            baselines = load_baselines(path)
        except AutohmError as error:
            st.sidebar.warning(str(error))
    return results.references(snapshot.table, baselines)


def main() -> None:
    """The page: sidebar, header, then one tab at a time."""
    st.set_page_config(page_title="autohm", page_icon="📈", layout="wide")
    keep_widget_state()
    source = sidebar_source()
    if source is None:
        return
    try:
        snapshot = load_snapshot(source.storage, source.study)
    except AutohmError as error:
        st.error(str(error))
        return
    header(snapshot, source)
    if nothing_to_plot(snapshot):
        return
    table = snapshot.table
    view = sidebar_filters(table, snapshot.name)
    report = results.ablation(snapshot.attrs)
    variants = report.summary if report else None
    names = [v for v in VIEWS if v != "Ablation" or report is not None]
    tabs = dict(
        zip(
            names, st.tabs(names, key=VIEW_KEY, on_change="rerun", bind="query-params"), strict=True
        )
    )
    with tabs["Pareto front"]:
        if tabs["Pareto front"].open:
            pareto_page(table, view, reference_points(snapshot, source.baselines), variants)
    with tabs["Progress"]:
        if tabs["Progress"].open:
            progress_page(view)
    with tabs["Trials"]:
        if tabs["Trials"].open:
            trials_page(view, len(table), snapshot.name)
    with tabs["Trial"]:
        if tabs["Trial"].open:
            trial_page(snapshot, source)
    if report is not None:
        with tabs["Ablation"]:
            if tabs["Ablation"].open:
                ablation_page(report)


if __name__ == "__main__":
    main()
