"""Multi-fidelity early stopping, done by autohm because Optuna cannot prune multi-objective
studies. A trial reports its validation accuracy at each fidelity step (every
`train.eval_every` fine-tuning steps) and is stopped when it falls behind the completed trials
at the same step:

- median:  below the median of their accuracies (Optuna's MedianPruner rule);
- halving: outside the best 1/eta of them (asynchronous successive halving, eta = 3);
- none:    never stopped.

Nothing is compared until `min_trials` completed trials reached the step. Accuracy is the only
objective known mid-training, so a cheap trial that learns slowly can be stopped although its
FLOPs or parameters might have put it on the front: pass --prune none when that matters more
than the time saved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RULES = ("median", "halving", "none")


@dataclass(frozen=True)
class EarlyStop:
    """The stop rule of one search."""

    rule: str = "median"
    min_trials: int = 4
    eta: int = 3

    def should_stop(self, accuracy: float, others: Sequence[float]) -> bool:
        """Whether a trial at `accuracy` falls behind `others` (accuracies of completed trials
        at the same step)."""
        if self.rule == "none" or len(others) < self.min_trials:
            return False
        if self.rule == "median":
            return accuracy < float(np.median(others))
        return accuracy < float(np.quantile(others, 1 - 1 / self.eta))
