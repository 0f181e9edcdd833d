"""The app's reads of the storage, cached by Streamlit: every rerun (each click) redraws the
page, so the study names, the study's fingerprint and the baselines file are read again at most
every TTL_S seconds, the study itself is kept open, and a snapshot is read anew only when the
fingerprint changes. The sidebar's Refresh button clears them."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from autohm.app import views
from autohm.storage import existing_study

TTL_S = 10  # seconds a read of the storage is reused; the Refresh button reads at once


@st.cache_data(ttl=TTL_S, show_spinner=False)
def load_names(storage: str) -> list[str]:
    """The studies in `storage`."""
    return views.study_names(storage)


@st.cache_resource(show_spinner=False)
def cached_study(storage: str, study: str) -> Any:
    """The study, kept open: Optuna then reads only new and unfinished trials again."""
    return existing_study(storage, study)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def study_version(storage: str, study: str) -> tuple:
    """The study's fingerprint, read at most every TTL_S seconds (views.version)."""
    return views.version(cached_study(storage, study))


@st.cache_resource(max_entries=4, show_spinner="Reading the study")
def study_snapshot(storage: str, study: str, version: tuple) -> views.Snapshot:
    """The study at `version`, with each trial's hover text (shared; never modified)."""
    snapshot = views.read(cached_study(storage, study))
    if len(snapshot.table):
        snapshot.table["hover"] = views.hover_text(snapshot.table)
    return snapshot


def load_snapshot(storage: str, study: str) -> views.Snapshot:
    """The study as of the last read (at most TTL_S seconds old; Refresh reads at once)."""
    return study_snapshot(storage, study, study_version(storage, study))


@st.cache_data(ttl=TTL_S, show_spinner=False)
def load_baselines(path: str) -> pd.DataFrame:
    """The rows of a baselines file."""
    return views.read_baselines(path)


def clear() -> None:
    """Forget every cached read (the Refresh button): the next run reads the storage."""
    for cached in (load_names, study_version, load_baselines, cached_study):
        cached.clear()
