"""The Ablation tab, shown when the study holds the report of `autohm ablate --study`: the
variants (mean ± std of every metric), the factorial effects of the pillars with their
intervals, and the notes."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from autohm.app import views
from autohm.app.figures import effects_figure
from autohm.app.widgets import KEPT, select


def draw(report: views.Ablation) -> None:
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
