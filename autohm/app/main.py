"""The app's page: the sidebar (where the study lives, the filters), the study's header and
counts, then the open tab (Pareto front, Progress, Trials, Trial, Ablation) drawn by its own
module; a closed tab is not drawn. streamlit_app.py runs main(); `autohm app` runs that."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from autohm.app import (
    ablation_page,
    cache,
    pareto_page,
    progress_page,
    trial_page,
    trials_page,
    views,
)
from autohm.app.sidebar import Source, sidebar_filters, sidebar_source
from autohm.app.widgets import TAB_KEY, keep_widget_state
from autohm.errors import AutohmError

TABS = ("Pareto front", "Progress", "Trials", "Trial", "Ablation")


def header(snapshot: views.Snapshot, source: Source) -> None:
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
    history = views.hypervolume_history(table)
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


def nothing_to_plot(snapshot: views.Snapshot) -> bool:
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


def reference_points(snapshot: views.Snapshot, path: str) -> pd.DataFrame:
    """The study's baseline trials and the baselines file's rows (a warning when the file
    cannot be read)."""
    baselines = None
    if path:
        try:
            baselines = cache.load_baselines(path)
        except AutohmError as error:
            st.sidebar.warning(str(error))
    return views.references(snapshot.table, baselines)


def main() -> None:
    """The page: sidebar, header, then one tab at a time."""
    st.set_page_config(page_title="autohm", page_icon="📈", layout="wide")
    keep_widget_state()
    source = sidebar_source()
    if source is None:
        return
    try:
        snapshot = cache.load_snapshot(source.storage, source.study)
    except AutohmError as error:
        st.error(str(error))
        return
    header(snapshot, source)
    if nothing_to_plot(snapshot):
        return
    draw_tabs(snapshot, source, sidebar_filters(snapshot.table, snapshot.name))


def draw_tabs(snapshot: views.Snapshot, source: Source, view: pd.DataFrame) -> None:
    """The tabs (Ablation only when the study holds a report); only the open one is drawn.
    `view`: the trials that pass the sidebar's filters."""
    table = snapshot.table
    report = views.ablation(snapshot.attrs)
    variants = report.summary if report else None
    names = [v for v in TABS if v != "Ablation" or report is not None]
    tabs = dict(
        zip(names, st.tabs(names, key=TAB_KEY, on_change="rerun", bind="query-params"), strict=True)
    )
    with tabs["Pareto front"]:
        if tabs["Pareto front"].open:
            pareto_page.draw(table, view, reference_points(snapshot, source.baselines), variants)
    with tabs["Progress"]:
        if tabs["Progress"].open:
            progress_page.draw(view)
    with tabs["Trials"]:
        if tabs["Trials"].open:
            trials_page.draw(view, len(table), snapshot.name)
    with tabs["Trial"]:
        if tabs["Trial"].open:
            trial_page.draw(snapshot, source)
    if report is not None:
        with tabs["Ablation"]:
            if tabs["Ablation"].open:
                ablation_page.draw(report)
