"""Relaxed Bernoulli gates: the binary concrete (Gumbel-sigmoid) and the hard concrete.

Binary concrete: M = sigmoid((L + n) / tau) with logistic noise n = log(u) - log(1 - u), the
difference of two Gumbel(0, 1) samples. Then M > 1/2 exactly when L + n > 0, so
P(M > 1/2) = sigmoid(L) for every tau. (A single Gumbel sample instead of n is biased: its mean
is Euler's constant, about 0.577.)

Hard concrete (Louizos, Welling and Kingma 2018): the binary concrete with temperature beta,
stretched to (gamma, zeta) = (-0.1, 1.1) and clamped to [0, 1], so exact zeros and ones have
positive probability; its expected L0 norm is sigmoid(L - beta * log(-gamma / zeta)).
"""

from __future__ import annotations

import math

import torch

HARD_CONCRETE_BETA = 2.0 / 3.0
HARD_CONCRETE_STRETCH = (-0.1, 1.1)
MIN_TEMPERATURE = 1e-6


def logistic_noise(shape: torch.Size, like: torch.Tensor) -> torch.Tensor:
    """log(u) - log(1 - u) for u uniform in (0, 1), bounded away from 0 and 1 (no infinities)."""
    tiny = torch.finfo(like.dtype).tiny
    u = torch.rand(shape, dtype=like.dtype, device=like.device).clamp(tiny, 1.0 - 1e-7)
    return torch.log(u) - torch.log1p(-u)


class _StraightThrough(torch.autograd.Function):
    """Forward: exact 0/1 (soft > 1/2); backward: the gradient of the soft value, unchanged."""

    @staticmethod
    def forward(ctx, soft: torch.Tensor) -> torch.Tensor:
        return (soft > 0.5).to(soft.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad


def _check_temperature(tau: float) -> float:
    if not math.isfinite(tau) or tau <= 0:
        raise ValueError(f"the temperature must be a positive finite number, got {tau!r}")
    return max(float(tau), MIN_TEMPERATURE)


def gumbel_sigmoid(logits: torch.Tensor, tau: float, hard: bool = False) -> torch.Tensor:
    """A binary concrete sample in [0, 1] per logit; `hard` gives exact 0/1 values in the
    forward pass with straight-through gradients to the logits."""
    tau = _check_temperature(tau)
    soft = torch.sigmoid((logits + logistic_noise(logits.shape, logits)) / tau)
    return _StraightThrough.apply(soft) if hard else soft


def hard_concrete(
    logits: torch.Tensor, beta: float = HARD_CONCRETE_BETA, hard: bool = False
) -> torch.Tensor:
    """A hard-concrete sample: the binary concrete at temperature beta, stretched and clamped."""
    low, high = HARD_CONCRETE_STRETCH
    stretched = gumbel_sigmoid(logits, beta) * (high - low) + low
    sample = stretched.clamp(0.0, 1.0)
    return _StraightThrough.apply(sample) if hard else sample


def open_probability(
    logits: torch.Tensor, distribution: str = "concrete", beta: float = HARD_CONCRETE_BETA
) -> torch.Tensor:
    """P(gate is on): sigmoid(L) for the binary concrete (P(M > 1/2)); for the hard concrete
    P(M != 0) = sigmoid(L - beta log(-gamma / zeta)), the expected-L0 term of Louizos et al."""
    if distribution == "concrete":
        return torch.sigmoid(logits)
    low, high = HARD_CONCRETE_STRETCH
    return torch.sigmoid(logits - beta * math.log(-low / high))


def hard_gate(logits: torch.Tensor) -> torch.Tensor:
    """The evaluation mask 1(L > 0), in the logits' dtype."""
    return (logits > 0).to(logits.dtype)
