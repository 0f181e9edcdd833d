"""Multi-fidelity early stopping, done by autohm because Optuna cannot prune multi-objective
studies. A trial reports its validation accuracy at each fidelity step (step 0, right after
mask learning, which trains the head with the masks; then every `train.eval_every` fine-tuning
steps) and is stopped when it falls behind the completed trials at the same step:

- median:  below the median of their accuracies (Optuna's MedianPruner rule);
- halving: outside the best 1/eta of them (asynchronous successive halving, eta = 3);
- pareto:  dominated by one of them in (accuracy at the step, FLOPs, parameters): FLOPs and
           parameters are fixed before fine-tuning starts, so a cheap trial that learns slowly
           is kept while nothing at least as cheap learned faster;
- none:    never stopped.

Nothing is compared until `min_trials` completed trials reached the step. median and halving
look at accuracy alone, so a cheap trial that learns slowly can be stopped although its FLOPs
or parameters might have put it on the front.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

KNOWN_COSTS = ("flops", "params")  # objectives fixed before fine-tuning, minimised


@dataclass(frozen=True)
class Progress:
    """A trial at one fidelity step: its validation accuracy there and its KNOWN_COSTS."""

    accuracy: float
    costs: tuple[float, ...] = ()

    def dominated_by(self, other: Progress) -> bool:
        """Whether `other` is at least as good everywhere and better somewhere (never when the
        two do not know the same costs)."""
        if len(other.costs) != len(self.costs):
            return False
        mine, theirs = (self.accuracy, *self.costs), (other.accuracy, *other.costs)
        no_worse = other.accuracy >= self.accuracy and all(
            o <= m for o, m in zip(other.costs, self.costs, strict=True)
        )
        return no_worse and mine != theirs


@dataclass(frozen=True)
class EarlyStop:
    """The stop rule of one search."""

    rule: str = "median"
    min_trials: int = 4
    eta: int = 3

    @property
    def active(self) -> bool:
        """Whether the rule can stop anything (callers skip gathering `others` otherwise)."""
        return self.rule != "none"

    @property
    def weighs_costs(self) -> bool:
        """Whether the rule needs the trial's KNOWN_COSTS (computing them takes a FLOP count)."""
        return self.rule in COST_RULES

    def should_stop(self, trial: Progress, others: Sequence[Progress]) -> bool:
        """Whether a trial falls behind `others` (completed trials at the same step)."""
        if not self.active or len(others) < self.min_trials:
            return False
        return STOP_RULES[self.rule](trial, others, self.eta)


StopRule = Callable[[Progress, Sequence[Progress], int], bool]
"""rule(trial, others, eta) -> stop? (others: at least min_trials completed trials)"""


def _median(trial: Progress, others: Sequence[Progress], eta: int) -> bool:
    return trial.accuracy < float(np.median([other.accuracy for other in others]))


def _halving(trial: Progress, others: Sequence[Progress], eta: int) -> bool:
    return trial.accuracy < float(np.quantile([other.accuracy for other in others], 1 - 1 / eta))


def _pareto(trial: Progress, others: Sequence[Progress], eta: int) -> bool:
    return any(trial.dominated_by(other) for other in others)


def _never(trial: Progress, others: Sequence[Progress], eta: int) -> bool:
    return False


STOP_RULES: dict[str, StopRule] = {
    "median": _median,
    "halving": _halving,
    "pareto": _pareto,
    "none": _never,
}
RULES = tuple(STOP_RULES)
COST_RULES = ("pareto",)  # rules that compare KNOWN_COSTS too
