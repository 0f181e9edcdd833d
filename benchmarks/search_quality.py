"""Search quality side by side: TPE against random search, and autohm's early stops on against
off, on the same task and space. Prints, per variant, the normalised hypervolume after the
budget (mean ± std over seeds, all studies in the same units: the first study's anchor) and the
compute spent (the summed wall time of the trials).

Run: python benchmarks/search_quality.py [--budget 100] [--seeds 3] [--space default]
     [--variants tpe:median,random:median,tpe:none] [--out DIR]
Every study is kept in DIR/bench.db, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState

from autohm.results import anchor_metrics
from autohm.search.objectives import normalised_hypervolume
from autohm.search.space import load_space
from autohm.search.study import SearchSettings, run_search
from autohm.trial import Workload


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--space", default="default")
    parser.add_argument("--variants", default="tpe:median,random:median,tpe:none")
    parser.add_argument("--out", type=Path, default=Path("search-bench"))
    return parser.parse_args()


def study_of(args, workload, sampler: str, prune: str, seed: int) -> optuna.Study:
    """The study of one variant and seed, searched to the budget (resumed if it exists)."""
    settings = SearchSettings(
        budget=args.budget, space=load_space(args.space), storage=f"sqlite:///{args.out}/bench.db",
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


def completed_values(study: optuna.Study) -> list[list[float]]:
    return [t.values for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]


def main() -> None:
    args = arguments()
    args.out.mkdir(parents=True, exist_ok=True)
    workload = Workload.load(load_space(args.space).settings.get("task", "digits"))
    studies = {}
    for variant in args.variants.split(","):
        sampler, prune = variant.split(":")
        for seed in range(args.seeds):
            print(f"{variant} seed {seed} ...", flush=True)
            studies[variant, seed] = study_of(args, workload, sampler, prune, seed)
    first = next(iter(studies.values()))
    anchor = anchor_metrics(first.get_trials(deepcopy=False))
    rows = {}
    for (variant, _), study in studies.items():
        hv = normalised_hypervolume(completed_values(study), anchor)
        rows.setdefault(variant, []).append((hv, compute_seconds(study)))
    print(f"\nbudget {args.budget}, space {args.space}, {args.seeds} seeds; hypervolume in the "
          "units of the first study (README: Search and export)")  # fmt: skip
    print("| variant | hypervolume | compute (s) | HV vs random | compute vs tpe:none |")
    print("|---|---:|---:|---:|---:|")
    mean = {v: np.mean(r, axis=0) for v, r in rows.items()}
    for variant, values in rows.items():
        hv, seconds = np.array(values).T
        versus_random = (
            mean[variant][0] / mean["random:median"][0] if "random:median" in mean else None
        )
        versus_off = seconds.mean() / mean["tpe:none"][1] if "tpe:none" in mean else None
        print(
            f"| {variant} | {hv.mean():.4f} ± {hv.std():.4f} | {seconds.mean():.0f} | "
            f"{'-' if versus_random is None else f'{versus_random:.2f}x'} | "
            f"{'-' if versus_off is None else f'{versus_off:.2f}x'} |"
        )


if __name__ == "__main__":
    main()
