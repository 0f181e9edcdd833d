"""LoRA part of an adapted projection: the weight update s * B A of rank r (Hu et al., 2021)."""

from __future__ import annotations

import math

import torch
from torch import nn


class LoRA(nn.Module):
    """delta() = (alpha / r) * B A with A (r, in), B (out, r); PEFT's initialisation (A
    Kaiming-uniform with a = sqrt(5), B = 0), so a new LoRA leaves the projection unchanged."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rank: int,
        alpha: float,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(rank, int) or rank < 1:
            raise ValueError(f"LoRA rank must be a positive integer, got {rank!r}")
        self.rank, self.alpha, self.scaling = rank, float(alpha), float(alpha) / rank
        A = torch.empty(rank, in_features)  # on the CPU, where the seeded generator lives
        nn.init.kaiming_uniform_(A, a=math.sqrt(5), generator=generator)
        self.A = nn.Parameter(A.to(device=device, dtype=dtype))
        self.B = nn.Parameter(torch.zeros(out_features, rank, device=device, dtype=self.A.dtype))

    def delta(self) -> torch.Tensor:
        """The weight-shaped update (out, in)."""
        return self.scaling * (self.B @ self.A)

    @torch.no_grad()
    def permute_(self, dim: int, index: torch.Tensor) -> None:
        """Reorder along weight dimension `dim`: rows of B (outputs) or columns of A (inputs)."""
        param, axis = (self.B, 0) if dim == 0 else (self.A, 1)
        param.copy_(param.index_select(axis, index.to(param.device)))

    def extra_repr(self) -> str:
        return f"in={self.A.shape[1]}, out={self.B.shape[0]}, rank={self.rank}, alpha={self.alpha}"
