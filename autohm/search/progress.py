"""What `autohm search` prints: a header, one line per finished trial (its objectives or why it
stopped, the best accuracy so far, the front size, the hypervolume, the ETA), a closing
table of the Pareto front with the knee marked, and the compute early stops saved."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import timedelta

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.table import Table
from rich.text import Text

from autohm.results import training_steps, trials_frame
from autohm.search.optuna_objective import counts_toward_budget
from autohm.selection import knee
from autohm.storage import Location
from autohm.trial import stop_point

SUMMARY_CONFIG = {
    "cfg.scan_order.method": "scan order",
    "cfg.masking.granularity": "masks",
    "cfg.peft.lora_quantile": "lora q",
    "cfg.peft.rank": "rank",
}


class SearchProgress:
    """Optuna trial callback that prints one line per trial; also the header and the summary."""

    def __init__(
        self, console: Console, budget: int, n_jobs: int = 1, shape: str | None = None
    ) -> None:
        """`shape`: the deployment shape latency is timed at, in words (for the header)."""
        self.console, self.budget, self.n_jobs, self.shape = console, budget, n_jobs, shape
        self.started = time.monotonic()
        self.done_here = 0
        self.lock = threading.Lock()

    def header(self, study: optuna.Study, location: Location) -> None:
        done = sum(counts_toward_budget(t) for t in study.get_trials(deepcopy=False))
        self.console.print(
            Text.assemble(
                "study ",
                (study.study_name, "bold"),
                f" in {location.shown}: {done}/{self.budget} "
                f"trials finished; artefacts in {location.artifacts}",
            )  # fmt: skip
        )
        if self.shape:
            self.console.print(f"latency: the compact model timed beside the dense base model "
                               f"on {self.shape}")  # fmt: skip

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.user_attrs.get("surplus"):
            return  # never run: the budget was full
        trials = study.get_trials(deepcopy=False)
        table = trials_frame(trials)
        with self.lock:
            self.done_here += counts_toward_budget(trial)
            done = sum(counts_toward_budget(t) for t in trials)
            self.console.print(
                Text.assemble(
                    f"[{done:>{len(str(self.budget))}}/{self.budget}] trial {trial.number:<4} ",
                    describe(trial),
                    f" | {standing(table)} | ETA {self._eta(done)}",
                )  # fmt: skip
            )

    def _eta(self, done: int) -> str:
        if self.done_here == 0:
            return "?"
        per_trial = (time.monotonic() - self.started) / self.done_here
        remaining = max(self.budget - done, 0) * per_trial
        if remaining > timedelta.max.total_seconds():
            return "never"
        return str(timedelta(seconds=round(remaining)))

    def summary(self, study: optuna.Study) -> None:
        """The Pareto front as a table, the knee marked with *."""
        table = trials_frame(study.get_trials(deepcopy=False))
        front = table[table["pareto"]] if len(table) else table
        if front.empty:
            self.console.print("no completed trial meets the constraints yet")
            return
        best = front.index[knee(front)]
        completed = int((table["state"] == "COMPLETE").sum())
        title = f"Pareto front of {study.study_name}: {len(front)} of {completed} completed trials"
        view = Table(title=title)
        columns = ["trial", "accuracy", "MFLOPs", "params", "latency"]
        configs = [c for c in SUMMARY_CONFIG if c in front.columns]
        for column in columns + [SUMMARY_CONFIG[c] for c in configs]:
            view.add_column(column, justify="right" if column in columns else "left")
        for index, row in front.sort_values("accuracy", ascending=False).iterrows():
            mark = "*" if index == best else ""
            view.add_row(
                f"{row['number']}{mark}", f"{row['accuracy']:.4f}", f"{row['flops'] / 1e6:.3f}",
                f"{row['params']:,.0f}", f"{row['latency']:.2f}x",
                *(_short(row[c]) for c in configs),
            )  # fmt: skip
        self.console.print(view)
        self.console.print("* the knee (autohm export picks it by default)", highlight=False)
        stops = early_stops(study.get_trials(deepcopy=False))
        if stops:
            self.console.print(stops, highlight=False)


def describe(trial: FrozenTrial) -> Text:
    """The trial's outcome in a few words (reasons and values printed as they are)."""
    attrs = trial.user_attrs
    if trial.state.name == "COMPLETE":
        accuracy, flops, params, latency = trial.values
        flag = "" if attrs.get("feasible", True) else " infeasible"
        return Text.assemble(
            f"acc {accuracy:.4f} flops {flops / 1e6:.3f}M params {params:,.0f} "
            f"latency {latency:.2f}x", (flag, "yellow"),
        )  # fmt: skip
    if trial.state.name == "PRUNED":
        accuracy = attrs.get("accuracy_at_stop", float("nan"))
        stopped = f"stopped early {stop_point(attrs.get('pruned_at_step'))} (acc {accuracy:.4f})"
        return Text(stopped, style="dim")
    if attrs.get("interrupted"):
        return Text("interrupted", style="yellow")
    reason = attrs.get("fail_reason") or attrs.get("lost") or "see the log"
    return Text.assemble(("failed", "red"), f": {reason}")


def early_stops(trials: Sequence[FrozenTrial]) -> str | None:
    """The compute early stops saved, in training steps (mask learning plus fine-tuning) against
    running every stopped trial to the end; None when no trial was stopped."""
    stopped = [t for t in trials if t.state == TrialState.PRUNED]
    if not stopped:
        return None
    run, full = (sum(steps) for steps in zip(*map(training_steps, trials), strict=True))
    first = sum(t.user_attrs.get("pruned_at_step") == 0 for t in stopped)
    finished = sum(t.state == TrialState.COMPLETE for t in trials) + len(stopped)
    return (
        f"early stops: {len(stopped)} of {finished} trials stopped ({first} right after mask "
        f"learning); {run:,} of {full:,} training steps run, {1 - run / full:.0%} saved"
    )


def standing(table: pd.DataFrame) -> str:
    """Best accuracy among feasible completed trials, front size and latest hypervolume."""
    if table.empty or not table["pareto"].any():
        return "no front yet"
    done = table[(table["state"] == "COMPLETE") & table["feasible"]]
    hypervolume = table["hypervolume"].dropna()
    shown = f" HV {hypervolume.iloc[-1]:.4f}" if len(hypervolume) else ""
    return f"best acc {done['accuracy'].max():.4f} front {int(table['pareto'].sum())}{shown}"


def _short(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
