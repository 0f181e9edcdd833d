"""The sparsity term added to the task loss while masks learn.

- "l0": weight * expected density (the mean over mask entries of P(gate on), i.e. the expected
  L0 norm per entry; for the hard concrete Louizos et al.'s closed form);
- "target": weight * (density - (1 - sparsity))^2, a quadratic pull to a target sparsity;
- "lagrangian": lambda * gap + weight * gap^2 with gap = density - (1 - sparsity) and lambda
  updated by gradient ascent at each call (lambda += multiplier_lr * gap), as in CoFi-style
  pruning: it holds the constraint rather than trading it off. A small multiplier_lr (0.01)
  avoids the overshoot that larger ascent rates show with Adam at lr 0.1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from autohm.masking.masks import mask_modules

PENALTIES = ("l0", "target", "lagrangian")


def expected_density(model: nn.Module) -> torch.Tensor:
    """The mean over all mask entries of P(gate on) (differentiable)."""
    probabilities = [
        p.flatten() for m in mask_modules(model) for p in m.open_probabilities().values()
    ]
    if not probabilities:
        raise ValueError("the model has no masks attached")
    return torch.cat(probabilities).mean()


def hard_density(model: nn.Module) -> float:
    """The fraction of mask entries that are on in evaluation (1 - sparsity)."""
    hard = [h.flatten() for m in mask_modules(model) for h in m.hard_masks().values()]
    return float(torch.cat(hard).float().mean())


@dataclass
class SparsityPenalty:
    """One of PENALTIES with its weight and, for target/lagrangian, the target sparsity."""

    kind: str = "target"
    weight: float = 1.0
    sparsity: float = 0.5
    multiplier_lr: float = 0.01
    multiplier: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        if self.kind not in PENALTIES:
            raise ValueError(f"unknown sparsity penalty {self.kind!r}; choose from {PENALTIES}")
        if not 0.0 <= self.sparsity < 1.0:
            raise ValueError(f"target sparsity must be in [0, 1), got {self.sparsity!r}")
        if self.weight < 0:
            raise ValueError(f"penalty weight must be >= 0, got {self.weight!r}")

    def __call__(self, model: nn.Module) -> torch.Tensor:
        density = expected_density(model)
        if self.kind == "l0":
            return self.weight * density
        gap = density - (1.0 - self.sparsity)
        penalty = self.weight * gap.square()
        if self.kind == "lagrangian":
            penalty = penalty + self.multiplier * gap
            self.multiplier += self.multiplier_lr * float(gap.detach())
        return penalty
