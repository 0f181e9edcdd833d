"""The Progress tab: the hypervolume recorded after each trial and every objective over trials
or start time, of the trials that pass the filters."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from autohm.app import views
from autohm.app.figures import history_figure, hypervolume_figure
from autohm.app.widgets import KEPT


def draw(table: pd.DataFrame) -> None:
    """The hypervolume over trials and every objective over time."""
    by = st.radio(
        "x axis",
        ["number", "datetime_start"],
        key=f"{KEPT}progress_by",
        horizontal=True,
        format_func={"number": "trial", "datetime_start": "start time"}.get,
    )
    history = views.hypervolume_history(table)
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
