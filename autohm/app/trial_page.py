"""The Trial tab: one trial's objectives, why it failed or stopped, its configuration, PEFT
allocation, mask sparsity, scan-order path cost, time per phase and latency record, and the
download of its configuration as the YAML `autohm export --trial N` writes."""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
import yaml

from autohm.app import views
from autohm.app.figures import allocation_figure, axis_title, bars_figure, sparsity_figure
from autohm.app.sidebar import Source
from autohm.app.widgets import TRIAL_KEY, select
from autohm.objectives import OBJECTIVES
from autohm.outcome import TrialOutcome
from autohm.selection import SelectionError, pick
from autohm.storage import existing_study
from autohm.trial import stop_point


def draw(snapshot: views.Snapshot, source: Source) -> None:
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
        cell.metric(axis_title(name), "-" if pd.isna(value) else views.FORMATS[name].format(value))
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
    outcome = snapshot.outcomes.get(number)
    with right:
        trial_allocation(outcome)
    trial_measurements(row, outcome)


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
        st.caption(f"Baseline: {views.BASELINE_LABELS.get(row['baseline'], row['baseline'])}.")


def trial_allocation(outcome: TrialOutcome | None) -> None:
    """The allocation heat map and the mask sparsity heat map."""
    grid = views.allocation(outcome)
    if _heat_map("Allocation per layer and module", grid, allocation_figure,
                 "No allocation recorded."):  # fmt: skip
        counts = grid["method"].value_counts()
        st.caption(" · ".join(f"{counts.get(m, 0)} {m}" for m in ("lora", "ia3", "frozen")))
    _heat_map("Mask sparsity per site and layer", views.sparsity(outcome), sparsity_figure,
              "Masks were off for this trial.")  # fmt: skip


def _heat_map(
    title: str, grid: pd.DataFrame, figure: Callable[[pd.DataFrame], go.Figure], empty: str
) -> bool:
    """A titled heat map of `grid`, or the `empty` caption; whether it was drawn."""
    st.subheader(title)
    if grid.empty:
        st.caption(empty)
        return False
    st.plotly_chart(figure(grid), width="stretch")
    return True


def trial_measurements(row: pd.Series, outcome: TrialOutcome | None) -> None:
    """Scan-order path cost, time per phase and the latency measurement's record."""
    costs, phases = views.scan_costs(outcome), views.timings(outcome)
    left, middle, right = st.columns(3)
    with left:
        st.subheader("Scan-order path cost")
        if costs.empty:
            st.caption(f"No path solved (order: {row.get('cfg.scan_order.method', '-')}).")
        else:
            order = outcome.scan_order  # a solved path: its totals are recorded
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
                f"{order.path_cost_before:.4g} → {order.path_cost_after:.4g}; "
                f"precompute {order.precompute_s:.3g} s"
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
        record = views.latency_record(outcome)
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


def trial_labels(table: pd.DataFrame) -> dict[int, str]:
    """How the trial picker names each trial: number, state, front, accuracy, baseline."""
    accuracy = table["accuracy"].map(lambda a: "" if pd.isna(a) else f" · accuracy {a:.4f}")
    baseline = table["baseline"].map(lambda b: f" · baseline {b}" if isinstance(b, str) else "")
    front = np.where(table["pareto"], " · front", "")
    state = table["state"].str.lower()
    text = "trial " + table["number"].astype(str) + " · " + state + front + accuracy + baseline
    return dict(zip(table["number"].astype(int), text, strict=True))


def config_yaml(storage: str, study: str, number: int) -> bytes:
    """The file `autohm export --trial NUMBER` writes: the download button's bytes."""
    from autohm.export import export_trial  # loads the training stack: only on demand

    with tempfile.TemporaryDirectory() as directory:
        target = Path(directory) / "trial.yaml"
        path, _ = export_trial(existing_study(storage, study), f"trial:{number}", target)
        return path.read_bytes()
