"""The Pareto front tab: two 2-D fronts with choosable axes (the 4-objective front filled, the
2-D front as a step line, baselines and ablation variants on the same axes), the 3-D view and
the scatter matrix; colour and facet by any configuration choice. A click on a point opens its
trial. Large studies draw every front member and a fixed sample of the rest."""

from __future__ import annotations

import functools

import pandas as pd
import streamlit as st

from autohm.app import views
from autohm.app.figures import (
    Style,
    axis_title,
    column_title,
    cube_figure,
    matrix_figure,
    pareto_figure,
)
from autohm.app.widgets import KEPT, chart_clicked, checkbox, select
from autohm.objectives import OBJECTIVES

SHOWN = ("dominated", "infeasible", "references")
DIMMED_LIMIT = 2500  # dominated or infeasible trials drawn at most (a fixed sample beyond)


def thinned(points: pd.DataFrame) -> pd.DataFrame:
    """The completed trials to draw: every front member and at most DIMMED_LIMIT others (a
    fixed random sample), so that plots of large studies stay quick in the browser."""
    points = points[points["state"] == "COMPLETE"]
    others = ~points["pareto"].to_numpy(dtype=bool)
    if others.sum() <= DIMMED_LIMIT:
        return points
    sample = points[others].sample(DIMMED_LIMIT, random_state=0).index
    return points[~others | points.index.isin(sample)]


def draw(
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
    categorical, numeric = views.filter_columns(table)
    facets = ["none", *[c for c in categorical if views.labels(table, c).nunique() <= 6]]
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
