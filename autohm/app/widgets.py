"""The app's widget state: Streamlit forgets a widget's value when a rerun does not draw it (a
closed tab) or when its options change; these keep the values, and a click on a chart's point
or a table's row opens that trial in the Trial tab. Every page shares them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import streamlit as st

KEPT = "w."  # prefix of the widget keys whose values outlive a tab that is not drawn
TRIAL_KEY = f"{KEPT}trial"  # the trial the Trial tab shows
TAB_KEY = "view"  # the open tab, also in the URL (?view=Trial)


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
    st.session_state[TAB_KEY] = "Trial"


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
