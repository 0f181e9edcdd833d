"""The app's sidebar: where the study lives (storage, study, baselines file, with defaults from
AUTOHM_STORAGE, AUTOHM_STUDY and AUTOHM_BASELINES, the environment `autohm app` sets) and the
filters that every tab applies (objective ranges, configuration choices and ranges, front
only)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pandas as pd
import streamlit as st

from autohm.app import cache, views
from autohm.app.figures import column_title
from autohm.app.widgets import select
from autohm.errors import AutohmError
from autohm.objectives import OBJECTIVES


@dataclass(frozen=True)
class Source:
    """Where the study lives: storage, study name and an optional baselines file."""

    storage: str
    study: str
    baselines: str


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
        names = cache.load_names(storage)
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
    if bar.button("Refresh", help=f"Read the storage now (reads are reused for {cache.TTL_S} s)"):
        cache.clear()
    return Source(storage, study, baselines.strip())


def sidebar_filters(table: pd.DataFrame, study: str) -> pd.DataFrame:
    """The trials that pass the sidebar's filters (objective ranges, configuration choices and
    ranges, front only); the filters apply to every view."""
    bar = st.sidebar
    bar.header("Filters")
    pareto_only = bar.toggle("Pareto front only", key=f"{study}:pareto_only")
    ranges = {name: range_filter(bar, table, name, study) for name in OBJECTIVES}
    categorical, numeric = views.filter_columns(table)
    allowed = {}
    with bar.expander("Configuration"):
        for column in categorical:
            levels = sorted(views.labels(table, column).unique())
            picked = st.multiselect(
                column_title(column), levels, key=f"{study}:{column}", placeholder="all"
            )
            if picked:
                allowed[column] = picked
        ranges |= {column: range_filter(st, table, column, study) for column in numeric}
    ranges = {column: chosen for column, chosen in ranges.items() if chosen is not None}
    return views.filtered(table, ranges, allowed, pareto_only)


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


def _slider_format(name: str, high: float) -> str:
    return "%.3f" if name == "accuracy" else "%.2e" if high >= 1e5 else "%.3g"
