"""The ablation's outputs: the runs (CSV), mean ± std per variant (CSV and Markdown), the
factorial effects with bootstrap intervals, honest notes, bar plots and, with a study, the
variants on the study's accuracy-FLOPs plane (PNG, matplotlib); ablation.json for the app."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from autohm.ablation.factorial import factorial_effects  # noqa: E402
from autohm.files import write_atomically, write_text  # noqa: E402

METRICS = ("accuracy", "flops", "params", "latency", "efficiency")


def summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds of every metric, one row per variant (in run order)."""
    grouped = runs.groupby(["variant", "group"], sort=False)[list(METRICS)]
    table = grouped.agg(["mean", "std"])
    table.columns = [f"{metric}_{stat}" for metric, stat in table.columns]
    return table.reset_index().assign(seeds=grouped.size().to_numpy())


def effects(runs: pd.DataFrame, bootstrap: int = 2000) -> pd.DataFrame:
    """Factorial effects of the three pillars on every metric (factorial rows only)."""
    factorial = runs[runs["group"] == "factorial"]
    tables = [
        factorial_effects(factorial, metric, bootstrap=bootstrap).assign(metric=metric)
        for metric in METRICS
    ]
    return pd.concat(tables, ignore_index=True)[["metric", "effect", "estimate", "low", "high"]]


def notes_text(notes: dict, effect_table: pd.DataFrame) -> list[str]:
    """Plain statements of what the numbers can and cannot show."""
    order = effect_table[
        (effect_table["metric"] == "accuracy") & (effect_table["effect"] == "order")
    ]
    row = order.iloc[0]
    measured = f"{row['estimate']:+.4f} [{row['low']:+.4f}, {row['high']:+.4f}]"
    lines = [
        f"PEFT reference ('single'): {notes['peft_reference']}-only; LoRA-only at rank "
        f"{notes['matched_lora_rank']} to match the hybrid's trainable parameters.",
        "Effects are Yates contrasts (mean at 'on' minus mean at 'off'; interactions likewise) "
        "with 95% percentile-bootstrap intervals over seeds.",
    ]
    if notes["order_can_matter"]:
        lines.append(f"The scan order groups channels into mask blocks here; its measured main "
                     f"effect on accuracy is {measured}.")  # fmt: skip
    else:
        lines.append(
            "The scan order cannot matter here: without block masks a channel permutation is an "
            "exact equivalence, so order on/off differ only by training noise (different "
            f"random draws per channel). Measured main effect on accuracy: {measured}."
        )
    return lines


def markdown(table: pd.DataFrame, effect_table: pd.DataFrame, lines: list[str]) -> str:
    """The report as Markdown: variants (mean ± std), effects, notes."""
    shown = pd.DataFrame({"variant": table["variant"], "group": table["group"]})
    for metric in METRICS:
        mean, std = table[f"{metric}_mean"], table[f"{metric}_std"].fillna(0.0)
        shown[metric] = [f"{m:.4g} ± {s:.2g}" for m, s in zip(mean, std, strict=True)]
    shown["seeds"] = table["seeds"]
    effect_view = effect_table.assign(
        interval=[
            f"[{lo:.4g}, {hi:.4g}]"
            for lo, hi in zip(effect_table["low"], effect_table["high"], strict=True)
        ]
    )[["metric", "effect", "estimate", "interval"]]
    parts = [
        "# autohm ablation",
        "",
        shown.to_markdown(index=False),
        "",
        "## Factorial effects of the pillars",
        "",
        effect_view.to_markdown(index=False, floatfmt=".4g"),
        "",
        "## Notes",
        "",
        *[f"- {line}" for line in lines],
    ]
    return "\n".join(parts) + "\n"


def bar_plot(table: pd.DataFrame, path: Path) -> None:
    """One panel per metric, one bar per variant with its std as the error bar."""
    figure, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 0.35 * len(table) + 2))
    for axis, metric in zip(axes, METRICS, strict=True):
        axis.barh(table["variant"], table[f"{metric}_mean"], xerr=table[f"{metric}_std"].fillna(0))
        axis.set_title(metric)
        axis.invert_yaxis()
        if metric != METRICS[0]:
            axis.set_yticklabels([])
    figure.tight_layout()
    write_atomically(path, lambda temporary: figure.savefig(temporary, dpi=110, format="png"))
    plt.close(figure)


def pareto_plot(table: pd.DataFrame, trials: pd.DataFrame, path: Path) -> None:
    """The study's trials (accuracy vs FLOPs, front highlighted) with the variants' means."""
    figure, axis = plt.subplots(figsize=(8, 5.5))
    done = trials[trials["state"] == "COMPLETE"]
    axis.scatter(done["flops"], done["accuracy"], s=12, c="lightgray", label="study trials")
    front = done[done["pareto"]].sort_values("flops")
    axis.step(front["flops"], front["accuracy"], where="post", c="gray", label="Pareto front")
    for _, row in table.iterrows():
        axis.scatter(row["flops_mean"], row["accuracy_mean"], s=40)
        axis.annotate(row["variant"], (row["flops_mean"], row["accuracy_mean"]), fontsize=7)
    axis.set_xscale("log")
    axis.set_xlabel("FLOPs (compact model, fvcore convention)")
    axis.set_ylabel("validation accuracy")
    axis.legend(loc="lower right")
    figure.tight_layout()
    write_atomically(path, lambda temporary: figure.savefig(temporary, dpi=110, format="png"))
    plt.close(figure)


def write_report(
    runs: pd.DataFrame, notes: dict, out: Path, trials: pd.DataFrame | None = None
) -> dict[str, Path]:
    """Every output file under `out`; returns them by kind."""
    out.mkdir(parents=True, exist_ok=True)
    table, effect_table = summary(runs), effects(runs)
    lines = notes_text(notes, effect_table)
    files = {
        "runs": out / "ablation_runs.csv",
        "summary": out / "ablation.csv",
        "markdown": out / "ablation.md",
        "bars": out / "ablation.png",
        "json": out / "ablation.json",
    }
    write_atomically(files["runs"], lambda path: runs.to_csv(path, index=False))
    write_atomically(files["summary"], lambda path: table.to_csv(path, index=False))
    write_text(files["markdown"], markdown(table, effect_table, lines))
    bar_plot(table, files["bars"])
    if trials is not None and len(trials):
        files["pareto"] = out / "ablation_pareto.png"
        pareto_plot(table, trials, files["pareto"])
    document = {
        "summary": table.to_dict("records"),
        "effects": effect_table.to_dict("records"),
        "notes": lines,
        "runs": runs.to_dict("records"),
    }
    write_text(files["json"], json.dumps(document, indent=2, default=str))
    return files
