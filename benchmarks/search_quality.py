"""Search quality side by side: TPE against random search, and autohm's early stops on against
off, on the same task and space. Prints, per variant (sampler:prune rule), the normalised
hypervolume after the budget (mean ± std over seeds, all studies in the units of the first
study's anchor; latency is a ratio to the base model in every study) and the compute spent,
twice:
training steps run (mask learning plus fine-tuning; deterministic, so not skewed by a busy
machine) and the summed wall time of the trials. Early-stop variants are compared with the
same sampler without early stops: compute spent, the hypervolume they reach within its
training steps, and the compute at which they first reach its final hypervolume (steps, seeds
that did; --early-stop-budget gives them more trials to get there).
Last, the hypervolume of all studies' trials pooled: the best front known in the space, which
bounds from below what a search could reach and puts the "x random" ratios in proportion.

Run: python benchmarks/search_quality.py [--budget 100] [--early-stop-budget 150] [--seeds 3]
     [--space default] [--variants tpe:none,random:none,tpe:pareto,tpe:median] [--out DIR]
Every study is kept in DIR/bench.db, so an interrupted run resumes where it stopped. On a
2-core machine two single-threaded processes (OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1) with
disjoint --run-only lists get through about 1.5x the trials of one; a last run without
--run-only prints the table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState

from autohm.objectives import minimised, normalised_hypervolume, pareto_mask
from autohm.outcome import TrialOutcome
from autohm.outcome import anchor as first_completed
from autohm.results import training_steps
from autohm.search.space import load_space
from autohm.search.study import SearchSettings, run_search
from autohm.trial import Workload


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument(
        "--early-stop-budget", type=int, default=None, help="Trials for the variants with early "
        "stops (default: --budget); more lets them show the compute they need to reach the "
        "hypervolume of the same sampler without early stops."
    )  # fmt: skip
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--run-only", default=None, help="Search only these variant/seed pairs (e.g. "
        "'tpe:none/0,random:none/1') and stop: to share the work between processes."
    )  # fmt: skip
    parser.add_argument("--space", default="default")
    parser.add_argument("--variants", default="tpe:none,random:none,tpe:pareto,tpe:median")
    parser.add_argument("--out", type=Path, default=Path("search-bench"))
    args = parser.parse_args()
    for name in ("budget", "early_stop_budget", "seeds"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    return args


def parse_pair(text: str) -> tuple[str, int]:
    """'tpe:none/0' -> ('tpe:none', 0); a malformed pair ends the run with one error line."""
    variant, _, seed = text.strip().partition("/")
    if variant.count(":") != 1 or not seed.isdigit():
        raise SystemExit(f"error: --run-only: {text!r} is not SAMPLER:PRUNE/SEED")
    return variant, int(seed)


def study_of(args, workload, sampler: str, prune: str, seed: int) -> optuna.Study:
    """The study of one variant and seed, searched to the budget (resumed if it exists)."""
    budget = args.budget if prune == "none" else args.early_stop_budget or args.budget
    settings = SearchSettings(
        budget=budget, space=load_space(args.space), storage=f"sqlite:///{args.out}/bench.db",
        study=f"{sampler}-{prune}-{seed}", out=args.out, sampler=sampler, seed=seed, prune=prune,
    )  # fmt: skip
    return run_search(settings, workload)


def compute_seconds(study: optuna.Study) -> float:
    """The summed wall time of every finished trial (pruned ones count what they used)."""
    return sum(
        (t.datetime_complete - t.datetime_start).total_seconds()
        for t in study.get_trials(deepcopy=False)
        if t.datetime_complete is not None and t.datetime_start is not None
    )


def objectives(trial: optuna.trial.FrozenTrial) -> list[float]:
    """A completed trial's objective values, latency as the ratio to the base model (also in
    studies made before compaction)."""
    return list(TrialOutcome.of(trial).objectives())


def latency_spread(studies: list[optuna.Study]) -> tuple[float, float]:
    """(min, max) of the latency objective over every completed trial."""
    values = [objectives(t)[3] for s in studies for t in s.get_trials(deepcopy=False)
              if t.state == TrialState.COMPLETE]  # fmt: skip
    return float(np.nanmin(values)), float(np.nanmax(values))


def trajectory(study: optuna.Study, anchor: TrialOutcome) -> tuple[np.ndarray, np.ndarray]:
    """(cumulative training steps, hypervolume of the completed trials so far) after each
    finished trial, in the order they finished."""
    trials = sorted(
        (t for t in study.get_trials(deepcopy=False) if t.datetime_complete is not None),
        key=lambda t: t.datetime_complete,
    )
    steps, volumes, done = [], [], []
    for trial in trials:
        if trial.state == TrialState.COMPLETE:
            done.append(objectives(trial))
        steps.append(training_steps(trial)[0])
        volumes.append(normalised_hypervolume(done, anchor))
    return np.cumsum(steps), np.array(volumes)


def first_reaching(steps: np.ndarray, volumes: np.ndarray, target: float) -> float | None:
    """The cumulative steps at which the hypervolume first reaches `target` (None: never)."""
    reached = np.flatnonzero(volumes >= target)
    return float(steps[reached[0]]) if reached.size else None


def pooled(studies: list[optuna.Study], anchor: TrialOutcome) -> tuple[int, float, np.ndarray]:
    """(completed trials, hypervolume, the latencies on their front) of every study's completed
    trials taken together: the best front known in the space, an estimate of what any one
    search could reach."""
    values = [
        objectives(t)
        for study in studies
        for t in study.get_trials(deepcopy=False)
        if t.state == TrialState.COMPLETE
    ]
    front = pareto_mask(minimised(values)) if values else np.zeros(0, dtype=bool)
    latencies = np.array([v[3] for v in values])[front]
    return len(values), normalised_hypervolume(values, anchor), latencies


def at_steps(steps: np.ndarray, volumes: np.ndarray, limit: float) -> float:
    """The hypervolume reached within `limit` cumulative training steps."""
    within = np.flatnonzero(steps <= limit)
    return float(volumes[within[-1]]) if within.size else 0.0


def main() -> None:
    args = arguments()
    args.out.mkdir(parents=True, exist_ok=True)
    pairs = [(variant, seed) for variant in args.variants.split(",") for seed in range(args.seeds)]
    if args.run_only:
        pairs = [parse_pair(pair) for pair in args.run_only.split(",")]
    workload = Workload.load(load_space(args.space).settings.get("task", "digits"))
    studies = {}
    for variant, seed in pairs:
        print(f"{variant} seed {seed} ...", flush=True)
        sampler, prune = variant.split(":")
        studies[variant, seed] = study_of(args, workload, sampler, prune, seed)
    if args.run_only:
        return
    first = next(iter(studies.values()))
    anchor = first_completed(first.get_trials(deepcopy=False))
    curves = {key: trajectory(study, anchor) for key, study in studies.items()}
    seconds = {key: compute_seconds(study) for key, study in studies.items()}
    variants = list(dict.fromkeys(variant for variant, _ in studies))
    final = {v: np.array([curves[v, s][1][-1] for s in range(args.seeds)]) for v in variants}
    steps = {v: np.array([curves[v, s][0][-1] for s in range(args.seeds)]) for v in variants}
    print(f"\nbudget {args.budget}, space {args.space}, {args.seeds} seeds; hypervolume in the "
          "units of the first study (docs/search.md: objectives and hypervolume)")  # fmt: skip
    print("| variant | trials | hypervolume | HV vs random | training steps | wall s | steps vs "
          "no early stops | HV at its steps | steps to reach its HV (seeds) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for variant in variants:
        sampler, prune = variant.split(":")
        random, off = f"random:{prune}", f"{sampler}:none"
        versus_random = (
            f"{final[variant].mean() / final[random].mean():.2f}x"
            if random in final and random != variant else "-"
        )  # fmt: skip
        versus_off, same_steps, reach = "-", "-", "-"
        if off in final and off != variant:
            versus_off = f"{steps[variant].mean() / steps[off].mean():.2f}x"
            within = [at_steps(*curves[variant, s], steps[off][s]) for s in range(args.seeds)]
            same_steps = f"{np.mean(within):.4f}"
            hits = [first_reaching(*curves[variant, s], final[off][s]) for s in range(args.seeds)]
            hit = [h for h in hits if h is not None]
            reach = f"{np.mean(hit):,.0f} ({len(hit)}/{args.seeds})" if hit else "never"
        wall = np.mean([seconds[variant, s] for s in range(args.seeds)])
        trials = np.mean([len(curves[variant, s][0]) for s in range(args.seeds)])
        print(
            f"| {variant} | {trials:.0f} | {final[variant].mean():.4f} ± "
            f"{final[variant].std():.4f} | {versus_random} | {steps[variant].mean():,.0f} | "
            f"{wall:.0f} | {versus_off} | {same_steps} | {reach} |"
        )
    count, ceiling, front = pooled(list(studies.values()), anchor)
    baseline = final.get("random:none")
    ratio = f" = {ceiling / baseline.mean():.2f}x random:none" if baseline is not None else ""
    print(f"\nall {count:,} completed trials of every study together: hypervolume {ceiling:.4f}"
          f"{ratio} (the best front all the searches found together)")  # fmt: skip
    low, high = latency_spread(list(studies.values()))
    print(f"latency objective over those trials: {low:.3f}x to {high:.3f}x the dense base "
          f"model's, a spread of {high / low:.2f}x; their front holds {len(front)} trials, "
          f"{int((front <= 0.8).sum())} of them at 0.8x the base or faster (latencies "
          f"{', '.join(f'{v:.2f}' for v in np.sort(front))})")  # fmt: skip


if __name__ == "__main__":
    main()
