"""One search trial as Optuna sees it: suggest a configuration, run it with the multi-fidelity
early stop, and record everything in the study — the configuration and metrics (user
attributes), the constraints, the artefacts (artifact store) and the hypervolume so far — or
why it failed, stopped or was interrupted."""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.trial import FrozenTrial, TrialState

from autohm import phases
from autohm.config import ConfigError
from autohm.errors import TrialFailed
from autohm.objectives import feasible, normalised_hypervolume
from autohm.outcome import TrialOutcome, anchor
from autohm.search.fidelity import KNOWN_COSTS, EarlyStop, Progress
from autohm.search.space import SearchSpace, suggest
from autohm.storage import LOST, STALE_AFTER
from autohm.trial import TrialPruned

WORKER = "worker"  # trial user attribute, the first thing a trial records (its heartbeat runs)
ORPHANED_AFTER_S = 600  # at least: a live worker may still be sampling a trial's parameters


def counts_toward_budget(trial: FrozenTrial) -> bool:
    """Finished for the budget: complete, stopped early, or failed by its own configuration
    (not interrupted, stale or surplus trials, which say nothing about the configuration)."""
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and "fail_reason" in trial.user_attrs


def fail_orphans(study: optuna.Study, trials: Sequence[FrozenTrial]) -> set[int]:
    """Fail the trials of workers that died between creating a trial and its first heartbeat
    (Optuna's stale-trial check sees only trials that sent one, so these would stay running
    and hold a place in the budget forever): running, no WORKER recorded, started longer ago
    than the storage's grace period and ORPHANED_AFTER_S. Nothing of them ran, so they do not
    count; an enqueued one (the warm start, a baseline) is enqueued again. Returns their
    numbers."""
    storage = study._storage  # Optuna has no public way to fail another worker's trial
    interval = getattr(storage, "get_heartbeat_interval", lambda: None)()
    if not interval:
        return set()  # no heartbeat: a running trial may be alive however old it is
    cutoff = datetime.now() - timedelta(seconds=max(STALE_AFTER * interval, ORPHANED_AFTER_S))
    failed = set()
    for t in trials:
        started = t.datetime_start
        if t.state != TrialState.RUNNING or WORKER in t.user_attrs or started is None:
            continue
        if started >= cutoff:
            continue
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            storage.set_trial_user_attr(t._trial_id, "orphaned", True)
            if not storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                continue
            failed.add(t.number)
            if "fixed_params" in t.system_attrs:
                study.enqueue_trial(t.system_attrs["fixed_params"], user_attrs=t.user_attrs)
    return failed


def mark_lost(study: optuna.Study) -> None:
    """Say why, on the running trials whose worker stopped sending heartbeats, before Optuna's
    stale check (at the start of every trial) fails and retries them without a word."""
    storage = study._storage  # Optuna has no public way to see or tag another worker's trial
    if not getattr(storage, "get_heartbeat_interval", lambda: None)():
        return
    for trial_id in storage._get_stale_trial_ids(study._study_id):
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            storage.set_trial_user_attr(trial_id, LOST, "its worker stopped sending heartbeats")


@dataclass
class Objective:
    """The callable handed to study.optimize; returns (accuracy, flops, params, latency)."""

    space: SearchSpace
    workload: Any
    runner: Callable
    budget: int
    artifacts: Path
    early_stop: EarlyStop = field(default_factory=EarlyStop)
    limits: Mapping[str, float] = field(default_factory=dict)  # objective name -> maximum
    stop: threading.Event = field(default_factory=threading.Event)  # set by Ctrl-C
    watch: Callable[[int], phases.Progress] | None = None  # trial number -> its progress

    def __call__(self, trial: optuna.Trial) -> tuple[float, ...]:
        try:
            if self.stop.is_set():
                raise KeyboardInterrupt
            return self._run(trial)
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)
            raise

    def _progress(self, number: int) -> phases.Progress:
        """The trial's progress, which also ends it at its next step once Ctrl-C or SIGTERM
        set `stop` (a signal handler that raised could land in any finalizer)."""
        shown = self.watch(number) if self.watch else phases.ignore

        def progress(*args: Any, **kwargs: Any) -> None:
            if self.stop.is_set():
                raise KeyboardInterrupt
            shown(*args, **kwargs)

        return progress

    def _run(self, trial: optuna.Trial) -> tuple[float, ...]:
        trial.set_user_attr(WORKER, f"{socket.gethostname()}:{os.getpid()}")
        trials = trial.study.get_trials(deepcopy=False)
        orphans = fail_orphans(trial.study, trials)
        if self._surplus(trial.number, [t for t in trials if t.number not in orphans]):
            trial.set_user_attr("surplus", True)
            trial.study.stop()
            raise TrialFailed("the budget was reached by other trials")
        try:
            config = suggest(trial, self.space)
        except ConfigError as error:
            reason = f"invalid combination: {error}"
            trial.set_user_attr("fail_reason", reason)
            raise TrialFailed(reason) from None
        trial.set_user_attr("config", config.model_dump(mode="json"))
        try:
            report, progress = self._reporter(trial), self._progress(trial.number)
            result = self.runner(config, self.workload, report=report, progress=progress)
        except TrialPruned as stopped:
            trial.set_user_attr("pruned_at_step", stopped.step)
            trial.set_user_attr("accuracy_at_stop", stopped.accuracy)
            raise
        except TrialFailed as error:
            trial.set_user_attr("fail_reason", str(error))
            raise
        return self._record(trial, result)

    def _surplus(self, number: int, trials: Sequence[FrozenTrial]) -> bool:
        """Whether the trials numbered before `number` (finished or running) fill the budget:
        with several workers, the last ones to start give way."""
        running = TrialState.RUNNING
        ahead = [
            t
            for t in trials
            if t.number < number and (counts_toward_budget(t) or t.state == running)
        ]
        return len(ahead) >= self.budget

    def _reporter(self, trial: optuna.Trial) -> Callable[[int, float, Callable], bool]:
        """report(step, accuracy, known_costs): record the accuracy, then tell whether to stop
        early (baselines are references and always run to the end)."""
        seen: dict[str, float] = {}
        exempt = "baseline" in trial.user_attrs

        def report(step: int, accuracy: float, known_costs: Callable[[], dict]) -> bool:
            if self.stop.is_set():
                raise KeyboardInterrupt
            seen[str(step)] = float(accuracy)
            trial.set_user_attr("fidelity", dict(seen))
            if exempt or not self.early_stop.active:
                return False
            completed = trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            others = [
                _progress(t.user_attrs["fidelity"][str(step)], TrialOutcome.of(t))
                for t in completed
                if str(step) in t.user_attrs.get("fidelity", {})
            ]
            costs = known_costs() if self.early_stop.weighs_costs else {}
            return self.early_stop.should_stop(Progress(float(accuracy), _costs(costs)), others)

        return report

    def _record(self, trial: optuna.Trial, result: Any) -> tuple[float, ...]:
        outcome: TrialOutcome = result.outcome
        values = outcome.objectives()
        trial.set_user_attr("metrics", outcome.stored())
        excess = {name: outcome.value(name) - limit for name, limit in self.limits.items()}
        for name, value in excess.items():
            trial.set_constraint(name, value)
        ok = all(value <= 0 for value in excess.values())
        trial.set_user_attr("feasible", ok)
        trial.set_user_attr("artifacts", self._upload(trial, result))
        trial.set_user_attr("hypervolume", self._hypervolume(trial, values, outcome, ok))
        return values

    def _upload(self, trial: optuna.Trial, result: Any) -> dict[str, str]:
        """The trial's files (metrics, config, order, masks, adapter; never a whole model) into
        the artifact store; returns file name -> artifact id."""
        self.artifacts.mkdir(parents=True, exist_ok=True)
        store = FileSystemArtifactStore(str(self.artifacts))
        with tempfile.TemporaryDirectory() as directory:
            return {
                path.name: upload_artifact(
                    artifact_store=store, file_path=str(path), study_or_trial=trial
                )
                for path in result.save(directory, lean=True)
            }

    def _hypervolume(
        self, trial: optuna.Trial, values: tuple, outcome: TrialOutcome, ok: bool
    ) -> float:
        """The hypervolume of the feasible front once this trial is added."""
        completed = trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        points = [t.values for t in completed if feasible(t)] + ([values] if ok else [])
        return normalised_hypervolume(points, anchor(completed) or outcome)


def _progress(accuracy: float, outcome: TrialOutcome | None) -> Progress:
    """A completed trial at a fidelity step, with its known costs."""
    known = {name: outcome.value(name) for name in KNOWN_COSTS} if outcome else {}
    return Progress(float(accuracy), _costs(known))


def _costs(known: Mapping[str, Any]) -> tuple[float, ...]:
    """The known costs in KNOWN_COSTS order; () unless all of them are there."""
    costs = tuple(float(known[name]) for name in KNOWN_COSTS if known.get(name) is not None)
    return costs if len(costs) == len(KNOWN_COSTS) else ()
