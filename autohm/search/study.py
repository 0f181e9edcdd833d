"""Create or resume a study and run trials until `budget` trials are finished, across runs and
workers: four directions with metric names, a sampler, the warm start, the budget callback, the
heartbeat of the storage and a clean stop on Ctrl-C.

Resuming: rerunning the same command opens the same study and runs only the missing trials.
Finished means complete, stopped early (pruned) or failed by its own configuration; trials that
were interrupted, abandoned by a dead worker (failed by the heartbeat, then retried; or, when it
died before the first heartbeat, failed as orphaned) or started after the budget was already
full do not count.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import signal
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna

from autohm import __version__
from autohm.errors import AutohmError, TrialFailed
from autohm.measure import check_options
from autohm.objectives import DIRECTIONS, OBJECTIVES, OLD_OBJECTIVES
from autohm.phases import Progress
from autohm.search.fidelity import RULES, EarlyStop
from autohm.search.optuna_objective import Objective, counts_toward_budget, mark_lost
from autohm.search.samplers import make_sampler
from autohm.search.space import SearchSpace
from autohm.storage import Location, locate, open_storage
from autohm.tasks import parse_task_spec
from autohm.trial import Workload, run_trial

SEEDS = 2**32  # numpy's seeds, which the samplers use
IDENTITY = ("task", "model", "space_parameters", "latency_shape")  # a resumed study agrees


@dataclass
class SearchSettings:
    """Everything `autohm search` decides before the first trial."""

    budget: int
    space: SearchSpace
    task: str = "digits"
    model: str | None = None
    study: str | None = None
    storage: str | None = None
    out: Path = Path(".")
    sampler: str = "tpe"
    n_jobs: int = 1
    seed: int | None = 0
    max_params: float | None = None
    max_latency: float | None = None
    max_latency_ms: float | None = None
    latency_batch: int | None = None  # None: the base model's default (measure.default_batch)
    latency_seq_len: int | None = None  # None: the task's length
    prune: str = "median"
    prune_min_trials: int = 4
    baselines: bool = False
    heartbeat_s: int | None = 60
    limits: dict[str, float] = field(init=False)

    @classmethod
    def from_options(cls, space: SearchSpace, **options: Any) -> SearchSettings:
        """Settings from command-line options; options left as None take the space file's
        `settings` (task, model, prune, prune_min_trials, latency_batch, latency_seq_len),
        then the defaults."""
        given = {key: value for key, value in options.items() if value is not None}
        return cls(space=space, **{**space.settings, **given})

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.budget < 1:
            raise AutohmError(f"--budget must be at least 1, got {self.budget}")
        parse_task_spec(self.task)  # an unknown task or option fails before a study exists
        make_sampler(self.sampler, None, self.budget)  # a bad --sampler fails before any work
        _one_of("--prune", self.prune, RULES)
        if self.n_jobs < 1:
            raise AutohmError(f"--n-jobs must be at least 1, got {self.n_jobs}")
        check_options(1 if self.latency_batch is None else self.latency_batch, self.latency_seq_len)
        locate(self.storage, self.out)  # a malformed storage URL fails before anything loads
        if self.seed is not None and not 0 <= self.seed < SEEDS:
            raise AutohmError(f"--seed must be in [0, 2**32), got {self.seed}")
        limits = {
            "params": self.max_params,
            "latency": self.max_latency,
            "latency_ms": self.max_latency_ms,
        }
        for name, limit in limits.items():
            if limit is not None and not (math.isfinite(limit) and limit > 0):
                option = "--max-" + name.replace("_", "-")
                raise AutohmError(f"{option} must be a positive number, got {limit!r}")
        self.limits = {name: limit for name, limit in limits.items() if limit is not None}

    @property
    def study_name(self) -> str:
        """--study, or `<space>-<task>` made safe for a name."""
        return self.study or re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{self.space.name}-{self.task}")

    def identity(self) -> dict[str, Any]:
        parameters = json.loads(json.dumps(self.space.raw.get("parameters"), default=str))
        shape = [self.latency_batch, self.latency_seq_len]
        return {"task": self.task, "model": self.model, "space_parameters": parameters,
                "latency_shape": shape}  # fmt: skip


def create_or_resume(settings: SearchSettings) -> tuple[optuna.Study, Location]:
    """The study of `settings`: created with its directions, metric names and warm start, or
    loaded and checked to be the same search."""
    location = locate(settings.storage, settings.out)
    storage = open_storage(location, settings.heartbeat_s)
    existing = optuna.get_all_study_names(storage)
    try:
        study = optuna.create_study(
            storage=storage, study_name=settings.study_name, directions=list(DIRECTIONS)
        )
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=settings.study_name, storage=storage)
        created = False
    if created:
        with warnings.catch_warnings():  # set_metric_names is "experimental" since Optuna 3.2
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(OBJECTIVES))
        study.set_user_attr("autohm", {**settings.identity(), "space": settings.space.source,
                                       "version": __version__})  # fmt: skip
        study.set_user_attr("artifacts", str(location.artifacts))
        study.enqueue_trial(settings.space.warm_start(), user_attrs={"warm_start": "default"})
    else:
        _check_same_search(study, settings, location, existing)
    if settings.baselines:
        _enqueue_baselines(study, settings.space)
    # a resumed run or a later worker continues with another seed, not the same proposals
    trials = len(study.get_trials(deepcopy=False))
    seed = None if settings.seed is None else (settings.seed + trials) % SEEDS
    study.sampler = make_sampler(settings.sampler, seed, settings.budget)
    return study, location


def finished(study: optuna.Study) -> int:
    """Trials that count toward the budget."""
    return sum(counts_toward_budget(t) for t in study.get_trials(deepcopy=False))


def run_search(
    settings: SearchSettings,
    workload: Any = None,
    runner: Callable | None = None,
    callbacks: Sequence[Callable] = (),
    on_start: Callable[[optuna.Study, Location], None] | None = None,
    watch: Callable[[int], Progress] | None = None,
) -> optuna.Study:
    """Run trials until the study holds `budget` finished ones (none when it already does).
    `workload` and `runner` default to autohm.trial's (the workload is loaded first, so that a
    bad model or latency shape leaves no study behind); `callbacks` are Optuna trial callbacks
    (progress lines), `watch(trial number)` the progress of a running trial (autohm.phases).
    Ctrl-C marks the running trials as interrupted and raises KeyboardInterrupt; completed
    trials are already stored."""
    workload = workload or Workload.load(
        settings.task,
        settings.model,
        latency_batch=settings.latency_batch,
        latency_seq_len=settings.latency_seq_len,
    )
    if settings.latency_batch is None:  # recorded in the study as the number it resolved to
        settings = replace(settings, latency_batch=workload.latency_batch)
    study, location = create_or_resume(settings)
    mark_lost(study)
    if on_start is not None:
        on_start(study, location)
    if finished(study) >= settings.budget:
        return study
    runner = runner or run_trial
    objective = Objective(
        settings.space, workload, runner, settings.budget, location.artifacts,
        EarlyStop(settings.prune, settings.prune_min_trials), settings.limits,
    )  # fmt: skip
    objective.watch = watch
    with _interruptible(study, objective):
        study.optimize(
            objective,
            n_jobs=settings.n_jobs,
            catch=(TrialFailed,),
            callbacks=[_stop_at_budget(settings.budget), *callbacks],
        )
    return study


def _stop_at_budget(budget: int) -> Callable[[optuna.Study, optuna.trial.FrozenTrial], None]:
    """Optuna's MaxTrialsCallback with autohm's notion of a finished trial."""

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        mark_lost(study)  # before the next trial's stale check fails them
        if finished(study) >= budget:
            study.stop()

    return callback


class Terminated(KeyboardInterrupt):
    """The search was stopped by SIGTERM (a scheduler, `kill`): handled like Ctrl-C."""


@contextmanager
def _interruptible(study: optuna.Study, objective: Objective) -> Iterator[None]:
    """The first Ctrl-C or SIGTERM stops the search cleanly: no new trial starts, running trials
    end at their next step (the handler only sets flags: raising from it could land in any
    finalizer), each marked `interrupted`; then KeyboardInterrupt (Terminated for SIGTERM). A
    second signal acts as usual."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {number: signal.getsignal(number) for number in signals}
    received: list[int] = []

    def stopped() -> KeyboardInterrupt:
        return Terminated() if received[0] == signal.SIGTERM else KeyboardInterrupt()

    def handler(signum: int, frame: Any) -> None:
        received.append(signum)
        objective.stop.set()
        with contextlib.suppress(RuntimeError):  # only possible in the optimize loop's thread
            study.stop()
        for number in signals:
            signal.signal(number, previous[number])

    for number in signals:
        signal.signal(number, handler)
    try:
        yield
    except KeyboardInterrupt:
        if received:
            raise stopped() from None
        raise
    finally:
        for number in signals:
            signal.signal(number, previous[number])
    if received:
        raise stopped()


def _check_same_search(
    study: optuna.Study, settings: SearchSettings, location: Location, existing: list[str]
) -> None:
    """A resumed study must have autohm's objectives and the same task, model and space."""
    if settings.study_name not in existing:
        return  # another worker created it a moment ago
    if [d.name.lower() for d in study.directions] != list(DIRECTIONS):
        raise AutohmError(f"study {study.study_name!r} in {location.shown} is not an autohm "
                          "search (other objectives); pass another --study")  # fmt: skip
    if study.metric_names == list(OLD_OBJECTIVES):
        raise AutohmError(
            f"study {study.study_name!r} in {location.shown} was made by an earlier autohm "
            "(objective latency_ms, FLOPs of the masked dense model); autohm app and export "
            "still read it, but a search cannot add trials measured differently: pass another "
            "--study"
        )
    recorded = study.user_attrs.get("autohm", {})
    for key in IDENTITY:
        if key in recorded and recorded[key] != settings.identity()[key]:
            was = "different parameters" if key == "space_parameters" else repr(recorded[key])
            raise AutohmError(
                f"study {study.study_name!r} in {location.shown} was created with {key} {was}; "
                f"resume it with the same settings or pass another --study"
            )


def _enqueue_baselines(study: optuna.Study, space: SearchSpace) -> None:
    """Enqueue the space's baselines that the study has not seen yet."""
    seen = {t.user_attrs.get("baseline") for t in study.get_trials(deepcopy=False)}
    for name, overrides in space.baselines.items():
        if name not in seen:
            study.enqueue_trial(space.warm_start(overrides), user_attrs={"baseline": name})


def _one_of(option: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise AutohmError(f"{option} {value!r} is not one of {', '.join(allowed)}")
