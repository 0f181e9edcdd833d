"""The app's figures (plotly): fronts in 2-D, 3-D and as a matrix, hypervolume and progress
over time, per-layer allocation and sparsity, ablation bars and effects. Pure functions of the
study's frame and the app's views of it (autohm.app.views), without Streamlit, so they can be
built and tested alone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from autohm.app import views
from autohm.objectives import DIRECTIONS, OBJECTIVES

LABELS = {"accuracy": "accuracy", "flops": "FLOPs", "params": "trainable params",
          "latency": "latency (x dense)"}  # fmt: skip
MAXIMISED = {name for name, d in zip(OBJECTIVES, DIRECTIONS, strict=True) if d == "maximize"}
FRONT, DOMINATED, INFEASIBLE = "#1f6feb", "#a0a8b5", "#d1495b"
REFERENCE, VARIANT, STEP = "#111827", "#8e44ad", "#0b3d91"
HEATMAP_METHODS = ("frozen", "ia3", "lora")  # heat-map codes 0, 1, 2: grey, amber, blue
METHOD_SCALE = [[0.0, "#e5e7eb"], [1 / 3, "#e5e7eb"], [1 / 3, "#f59e0b"], [2 / 3, "#f59e0b"],
                [2 / 3, FRONT], [1.0, FRONT]]  # fmt: skip
PLOT_HEIGHT = 440


@dataclass(frozen=True)
class Style:
    """How the Pareto plots draw the trials."""

    colour: str | None = None
    scale: tuple[float, float] | None = None  # a numeric colour column's range: a colour scale
    facet: str | None = None
    dominated: bool = True
    infeasible: bool = True
    references: bool = True


def axis_title(name: str) -> str:
    """An objective's name with the direction that is better."""
    return f"{LABELS[name]} {'↑' if name in MAXIMISED else '↓'}"


def column_title(column: str) -> str:
    """A readable name for a column of the frame."""
    if column in LABELS:
        return axis_title(column)
    return column.removeprefix("choice.").removeprefix("cfg.").replace("_", " ")


def log_axis(values: pd.Series) -> bool:
    """A log scale helps when positive values span more than a decade."""
    finite = values[np.isfinite(values.astype(float))]
    return bool(len(finite) and finite.min() > 0 and finite.max() / finite.min() > 10)


def axis(name: str, values: pd.Series, title: str | None = None) -> dict[str, Any]:
    """Axis settings for an objective: its title, a log scale where it helps (labels at 1, 2
    and 5 of each decade), counts with SI prefixes (2k, 1.5M)."""
    settings: dict[str, Any] = dict(title=axis_title(name) if title is None else title)
    if name != "accuracy" and log_axis(values):
        settings |= dict(type="log", dtick="D2", tickformat="~s")
    if name in ("flops", "params"):
        settings["tickformat"] = "~s"
    return settings


def colour_groups(points: pd.DataFrame, style: Style) -> list[tuple[str, pd.DataFrame, Any]]:
    """(legend name, rows, marker colour) per colour: one group in the front colour, one per
    level of a categorical column, or one whose colours are a numeric column's values."""
    colour = style.colour
    if colour is None:
        return [("", points, FRONT)]
    if style.scale:
        return [("", points, points[colour].astype(float))]
    names = views.labels(points, colour)
    palette = qualitative.D3 + qualitative.Set2
    levels = sorted(names.unique())
    return [
        (level, points[names == level], palette[i % len(palette)]) for i, level in enumerate(levels)
    ]


def marker_trace(rows: pd.DataFrame, x: str, y: str, colour: Any, **kwargs: Any) -> go.Scattergl:
    """Trials as WebGL markers (fast for thousands) with hover text; customdata: the number."""
    marker = dict(color=colour, size=kwargs.pop("size", 9), opacity=kwargs.pop("opacity", 1.0))
    marker |= kwargs.pop("marker", {})
    return go.Scattergl(
        x=rows[x],
        y=rows[y],
        mode="markers",
        marker=marker,
        customdata=rows["number"],
        hovertext=rows["hover"],
        hoverinfo="text",
        **kwargs,
    )


def trial_traces(points: pd.DataFrame, x: str, y: str, style: Style, legend: bool) -> list:
    """The trials of one panel: dominated and infeasible trials dimmed, the front on top."""
    feasible = points[points["feasible"]]
    size = 10 if feasible["pareto"].sum() <= 300 else 7  # smaller markers for large fronts
    dimmed, bright = [], []
    for name, rows, colour in colour_groups(feasible, style):
        front = rows["pareto"].to_numpy(dtype=bool)
        bright.append(marker_trace(
            rows[front], x, y, _part(colour, front), name=name or "Pareto front (4 objectives)",
            legendgroup=name or "front", showlegend=legend, legendrank=1, size=size,
            marker=_colour_scale(style, bar=True) | dict(line=dict(width=1, color="white")),
        ))  # fmt: skip
        if style.dominated:
            faded = DOMINATED if style.colour is None else _part(colour, ~front)
            dimmed.append(marker_trace(
                rows[~front], x, y, faded, name=name or "dominated",
                legendgroup=name or "dominated", showlegend=legend and not name, legendrank=2,
                opacity=0.35, size=size - 3, marker=_colour_scale(style),
            ))  # fmt: skip
    if style.infeasible:
        rows = points[~points["feasible"]]
        dimmed.append(marker_trace(
            rows, x, y, INFEASIBLE, name="infeasible (constraint)", legendgroup="infeasible",
            showlegend=legend and len(rows) > 0, legendrank=3, opacity=0.5, size=size - 2,
            marker=dict(symbol="x"),
        ))  # fmt: skip
    return dimmed + bright


def _part(colour: Any, rows: np.ndarray) -> Any:
    return colour[rows] if isinstance(colour, pd.Series) else colour


def _colour_scale(style: Style, bar: bool = False) -> dict[str, Any]:
    """Marker settings of a numeric colour column: one scale over every panel and trace."""
    if not style.scale:
        return {}
    low, high = style.scale
    scale = dict(colorscale="Viridis", cmin=low, cmax=high)
    if bar:
        scale["colorbar"] = dict(title=column_title(style.colour), thickness=12)
    return scale


def step_trace(points: pd.DataFrame, x: str, y: str, legend: bool) -> go.Scattergl:
    """The 2-D front of the two objectives shown, as a step line (WebGL, so that it lies
    above the markers)."""
    front = views.front_2d(points, x, y)
    return go.Scattergl(
        x=front[x], y=front[y], mode="lines", line=dict(color=STEP, width=2, dash="dot"),
        line_shape="vh" if x in MAXIMISED else "hv", name="front of these two objectives",
        legendgroup="step", showlegend=legend, legendrank=4, hoverinfo="skip",
    )  # fmt: skip


def reference_traces(
    references: pd.DataFrame, variants: pd.DataFrame | None, x: str, y: str, legend: bool
) -> list:
    """Baselines (stars) and ablation variants (diamonds with their std) on the same axes."""
    traces = []
    if len(references):
        points = stacked_labels(references, x, y)
        traces.append(
            go.Scattergl(
                x=points[x],
                y=points[y],
                mode="markers+text",
                text=points["label"],
                textposition=label_sides(points[x]),
                textfont=dict(size=11, color=REFERENCE),
                marker=dict(symbol="star", size=14, color=REFERENCE),
                name="baselines",
                legendrank=5,
                legendgroup="baselines",
                showlegend=legend,
                hovertext=points["entry"],
                hoverinfo="text+x+y",
            )
        )
    if variants is not None and len(variants) and f"{x}_mean" in variants:
        traces.append(
            go.Scattergl(
                x=variants[f"{x}_mean"],
                y=variants[f"{y}_mean"],
                mode="markers",
                error_x=dict(array=variants[f"{x}_std"].fillna(0), thickness=1),
                error_y=dict(array=variants[f"{y}_std"].fillna(0), thickness=1),
                marker=dict(symbol="diamond", size=10, color=VARIANT),
                name="ablation variants",
                legendrank=6,
                legendgroup="variants",
                showlegend=legend,
                hovertext=variants["variant"],
                hoverinfo="text+x+y",
            )
        )
    return traces


def label_sides(values: pd.Series) -> list[str]:
    """Labels on the inner side of their points, so that none runs off the plot."""
    values = np.log10(values) if log_axis(values) else values
    middle = (values.min() + values.max()) / 2
    return ["top left" if value > middle else "top right" for value in values]


def stacked_labels(references: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """One point per position: labels of references that coincide joined, not overprinted."""
    rows = references.dropna(subset=[x, y])
    rows = rows.assign(entry=rows["label"] + " (" + rows["source"] + ")")
    return rows.groupby([x, y], as_index=False, sort=False).agg(
        label=("label", lambda labels: ", ".join(dict.fromkeys(labels))),
        entry=("entry", "<br>".join),
    )


def pareto_figure(
    points: pd.DataFrame,
    x: str,
    y: str,
    style: Style,
    references: pd.DataFrame,
    variants: pd.DataFrame | None,
) -> go.Figure:
    """Objective `y` against `x`: trials, the step line of their 2-D front, the references;
    one panel per level of `style.facet`."""
    points = points[points["state"] == "COMPLETE"].dropna(subset=[x, y])
    facets = [("", points)]
    if style.facet:
        names = views.labels(points, style.facet)
        facets = [(level, points[names == level]) for level in sorted(names.unique())] or facets
    figure = make_subplots(
        rows=1,
        cols=len(facets),
        shared_yaxes=True,
        subplot_titles=[level for level, _ in facets] if style.facet else None,
        horizontal_spacing=0.03,
    )
    for column, (_, rows) in enumerate(facets, start=1):
        legend = column == 1
        traces = [*trial_traces(rows, x, y, style, legend), step_trace(rows, x, y, legend)]
        if style.references:
            traces += reference_traces(references, variants, x, y, legend)
        for trace in traces:
            figure.add_trace(trace, row=1, col=column)
    shown = pd.concat([points[[x, y]], references[[x, y]]]) if style.references else points
    figure.update_xaxes(**axis(x, shown[x]))
    figure.update_yaxes(**axis(y, shown[y]))
    figure.update_yaxes(title=None, col=2)  # facets share the first panel's y axis
    return _layout(figure, PLOT_HEIGHT + (40 if style.facet else 0))


def cube_figure(points: pd.DataFrame) -> go.Figure:
    """Accuracy, FLOPs and params in 3-D, coloured by latency; the front larger and opaque."""
    points = points[(points["state"] == "COMPLETE") & points["feasible"]]
    figure = go.Figure()
    for on_front, size, opacity in ((False, 3, 0.35), (True, 6, 1.0)):
        rows = points[points["pareto"] == on_front]
        figure.add_trace(
            go.Scatter3d(
                x=rows["flops"],
                y=rows["params"],
                z=rows["accuracy"],
                mode="markers",
                marker=dict(
                    size=size,
                    opacity=opacity,
                    color=rows["latency"],
                    colorscale="Viridis",
                    cmin=points["latency"].min(),
                    cmax=points["latency"].max(),
                    colorbar=dict(title=LABELS["latency"], thickness=12) if on_front else None,
                    showscale=on_front,
                ),
                name="Pareto front" if on_front else "dominated",
                customdata=rows["number"],
                hovertext=rows["hover"],
                hoverinfo="text",
            )
        )
    scene = {
        f"{side}axis": axis(name, points[name], LABELS[name])
        for side, name in zip("xyz", ("flops", "params", "accuracy"), strict=True)
    }
    scene["camera"] = dict(eye=dict(x=-2.1, y=-2.1, z=1.2))
    scene["aspectratio"] = dict(x=1, y=1, z=0.8)
    figure.update_layout(scene=scene, showlegend=False)
    return _layout(figure, 560)


def matrix_figure(points: pd.DataFrame) -> go.Figure:
    """Every pair of the four objectives; the front in colour."""
    points = points[points["state"] == "COMPLETE"]
    colours = np.where(points["pareto"], FRONT, np.where(points["feasible"], DOMINATED, INFEASIBLE))
    figure = go.Figure(
        go.Splom(
            dimensions=[dict(label=LABELS[name], values=points[name]) for name in OBJECTIVES],
            marker=dict(color=colours, size=5, opacity=0.75, line=dict(width=0)),
            customdata=points["number"],
            hovertext=points["hover"],
            hoverinfo="text",
            diagonal_visible=False,
            showupperhalf=False,
        )
    )
    for index, name in enumerate(OBJECTIVES, start=1):
        settings = axis(name, points[name], title=LABELS[name])
        figure.update_layout({f"xaxis{index}": settings, f"yaxis{index}": settings})
    return _layout(figure, 620)


def hypervolume_figure(history: pd.DataFrame, by: str) -> go.Figure:
    """The hypervolume recorded after each completed trial."""
    figure = go.Figure(
        go.Scatter(
            x=history[by],
            y=history["hypervolume"],
            mode="lines+markers",
            line_shape="hv",
            line=dict(color=FRONT),
            marker=dict(size=5),
            customdata=history["number"],
            hovertemplate="trial %{customdata}<br>hypervolume %{y:.4f}<extra></extra>",
        )
    )
    figure.update_xaxes(title="trial" if by == "number" else "start time")
    figure.update_yaxes(title="hypervolume (normalised, ↑)", rangemode="tozero")
    return _layout(figure, 320)


def history_figure(table: pd.DataFrame, by: str) -> go.Figure:
    """Each objective per trial with its best value so far; early-stopped trials at their
    partial accuracy."""
    figure = make_subplots(
        rows=2,
        cols=2,
        subplot_titles=[axis_title(n) for n in OBJECTIVES],
        horizontal_spacing=0.08,
        vertical_spacing=0.14,
    )
    done = table[table["state"] == "COMPLETE"]
    best = views.running_best(table).merge(table[["number", "datetime_start"]], on="number")
    stopped = table[table["state"] == "PRUNED"].dropna(subset=["accuracy_at_stop"])
    for index, name in enumerate(OBJECTIVES):
        row, col = divmod(index, 2)
        colours = np.where(done["pareto"], FRONT, DOMINATED)
        figure.add_trace(
            go.Scattergl(
                x=done[by],
                y=done[name],
                mode="markers",
                marker=dict(color=colours, size=6),
                customdata=done["number"],
                hovertemplate=f"trial %{{customdata}}: %{{y:.4g}}<extra>{LABELS[name]}</extra>",
                name="trials",
                legendgroup="trials",
                showlegend=index == 0,
            ),
            row=row + 1,
            col=col + 1,
        )
        figure.add_trace(
            go.Scatter(
                x=best[by],
                y=best[name],
                mode="lines",
                line=dict(color=STEP, width=1.5),
                line_shape="hv",
                name="best so far",
                legendgroup="best",
                showlegend=index == 0,
                hoverinfo="skip",
            ),
            row=row + 1,
            col=col + 1,
        )
        if name == "accuracy" and len(stopped):
            figure.add_trace(
                go.Scatter(
                    x=stopped[by],
                    y=stopped["accuracy_at_stop"],
                    mode="markers",
                    marker=dict(symbol="circle-open", color=DOMINATED, size=7),
                    name="stopped early (partial accuracy)",
                    customdata=stopped["number"],
                    hovertemplate="trial %{customdata}: stopped early at %{y:.4f}<extra></extra>",
                ),
                row=1,
                col=1,
            )
        figure.update_yaxes(**axis(name, done[name], title=""), row=row + 1, col=col + 1)
    return _layout(figure, 580, top=60)  # the mode bar above the subplot titles


def allocation_figure(grid: pd.DataFrame) -> go.Figure:
    """Layers x modules: LoRA (with its rank), IA3 or frozen, importance on hover."""
    codes = grid.assign(code=grid["method"].map({m: i for i, m in enumerate(HEATMAP_METHODS)}))
    z = codes.pivot(index="layer", columns="module", values="code")
    text = grid.assign(
        text=[
            f"LoRA r{int(rank)}"
            if method == "lora" and pd.notna(rank)
            else {"lora": "LoRA", "ia3": "IA3"}.get(method, "frozen")
            for method, rank in zip(grid["method"], grid["rank"], strict=True)
        ]
    ).pivot(index="layer", columns="module", values="text")
    importance = grid.pivot(index="layer", columns="module", values="importance")
    modules = list(dict.fromkeys(grid["module"]))
    figure = go.Figure(
        go.Heatmap(
            z=z[modules],
            x=modules,
            y=[f"layer {i}" for i in z.index],
            text=text[modules],
            texttemplate="%{text}",
            customdata=importance[modules],
            colorscale=METHOD_SCALE,
            zmin=-0.5,
            zmax=2.5,
            showscale=False,
            xgap=2,
            ygap=2,
            hovertemplate="%{y} %{x}: %{text}<br>importance %{customdata:.3f}<extra></extra>",
        )
    )
    figure.update_yaxes(autorange="reversed")
    return _layout(figure, 80 + 36 * len(z))


def sparsity_figure(grid: pd.DataFrame) -> go.Figure:
    """Layers x mask sites: the fraction of entries masked out."""
    z = grid.pivot(index="layer", columns="site", values="sparsity")
    sites = list(dict.fromkeys(grid["site"]))
    figure = go.Figure(
        go.Heatmap(
            z=z[sites],
            x=sites,
            y=[f"layer {i}" for i in z.index],
            zmin=0,
            zmax=1,
            colorscale="Blues",
            texttemplate="%{z:.0%}",
            xgap=2,
            ygap=2,
            colorbar=dict(title="masked", thickness=12, tickformat=".0%"),
            hovertemplate="%{y} %{x}: %{z:.1%} masked<extra></extra>",
        )
    )
    figure.update_yaxes(autorange="reversed")
    return _layout(figure, 80 + 36 * len(z))


def bars_figure(
    frame: pd.DataFrame, category: str, values: dict[str, str], title: str, height: int = 260
) -> go.Figure:
    """Grouped horizontal bars, one per row and value column (column -> legend name); the
    last column in the front colour, an earlier one grey."""
    colours = [DOMINATED] * (len(values) - 1) + [FRONT]
    figure = go.Figure(
        [
            go.Bar(
                y=frame[category].astype(str),
                x=frame[column],
                name=name,
                orientation="h",
                marker_color=colour,
            )  # fmt: skip
            for (column, name), colour in zip(values.items(), colours, strict=True)
        ]
    )
    figure.update_xaxes(title=title)
    figure.update_yaxes(autorange="reversed")
    _layout(figure, height)
    figure.update_layout(
        barmode="group", showlegend=len(values) > 1, legend=dict(y=-0.3)
    )  # below the axis title
    return figure


def effects_figure(effects: pd.DataFrame) -> go.Figure:
    """Factorial effects with their bootstrap intervals; zero marked."""
    figure = go.Figure(
        go.Scatter(
            x=effects["estimate"],
            y=effects["effect"],
            mode="markers",
            marker=dict(size=10, color=VARIANT),
            error_x=dict(
                type="data",
                symmetric=False,
                array=effects["high"] - effects["estimate"],
                arrayminus=effects["estimate"] - effects["low"],
                thickness=1.5,
            ),
            hovertemplate="%{y}: %{x:.4g}<extra></extra>",
        )
    )
    figure.add_vline(x=0, line=dict(color=DOMINATED, dash="dash"))
    figure.update_yaxes(autorange="reversed")
    figure.update_xaxes(title="effect (on minus off), 95% bootstrap interval")
    return _layout(figure, 120 + 34 * len(effects))


def _layout(figure: go.Figure, height: int, top: int = 36) -> go.Figure:
    figure.update_layout(
        height=height,
        margin=dict(l=10, r=10, t=top, b=10),
        template="plotly_white",
        legend=dict(orientation="h", yanchor="top", y=-0.18, x=0),
        hoverlabel=dict(align="left"),
    )
    return figure
