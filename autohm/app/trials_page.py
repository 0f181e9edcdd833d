"""The Trials tab: the trials that pass the filters as a sortable table (the main columns, or
all but the raw per-layer metrics); a click on a row opens its trial; the rows as CSV, in the
columns of `autohm export --format csv`."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import pandas as pd
import streamlit as st

from autohm.app import views
from autohm.app.figures import column_title
from autohm.app.widgets import KEPT, row_clicked
from autohm.objectives import OBJECTIVES

TABLE_COLUMNS = ["number", "state", "pareto", "feasible", *OBJECTIVES,
                 *(f"choice.{name}" for name in views.KEY_CHOICES), "baseline", "duration_s",
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


def draw(view: pd.DataFrame, total: int, study: str) -> None:
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
            shown[column] = views.labels(shown, column).replace("-", None)
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


def table_csv(table: pd.DataFrame) -> bytes:
    """Rows of the trial table as CSV, in the columns of `autohm export --format csv`."""
    app_only = [c for c in table.columns if c == "hover" or c.startswith("choice.")]
    return table.drop(columns=app_only).to_csv(index=False).encode()
