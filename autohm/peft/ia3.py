"""IA3 part of an adapted projection: a learned scaling vector (Liu et al., 2022)."""

from __future__ import annotations

import torch
from torch import nn


class IA3(nn.Module):
    """z' = alpha * z on a projection's outputs, or on its inputs when `on_input`. Entries
    marked `frozen` (dead under the hard masks) are held at exactly 1: vector() ignores them,
    so their gradient is zero whatever the optimizer does. Starts at 1 (the identity)."""

    def __init__(
        self,
        size: int,
        on_input: bool = False,
        frozen: torch.Tensor | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.on_input = bool(on_input)
        self.alpha = nn.Parameter(torch.ones(size, device=device, dtype=dtype))
        if frozen is None:
            frozen = torch.zeros(size, dtype=torch.bool)
        if frozen.shape != (size,):
            raise ValueError(f"frozen has shape {tuple(frozen.shape)}, expected ({size},)")
        self.register_buffer("frozen", frozen.to(self.alpha.device, torch.bool), persistent=False)

    def vector(self) -> torch.Tensor:
        """The scaling actually applied: alpha, with 1 at the frozen entries."""
        return torch.where(self.frozen, torch.ones_like(self.alpha), self.alpha)

    @torch.no_grad()
    def permute_(self, dim: int, index: torch.Tensor) -> None:
        """Reorder with the weight dimension it scales (1 for inputs, 0 for outputs)."""
        if (dim == 1) != self.on_input:
            return
        for tensor in (self.alpha, self.frozen):
            tensor.copy_(tensor.index_select(0, index.to(tensor.device)))

    def extra_repr(self) -> str:
        side = "inputs" if self.on_input else "outputs"
        return f"size={self.alpha.numel()}, on {side}, frozen={int(self.frozen.sum())}"
