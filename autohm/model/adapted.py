"""Adapted projections: drop-in replacements for a mixer's nn.Linear / nn.Conv1d that keep the
original `weight` and `bias` Parameters under their names and apply attached parts when they
compute: a weight mask (pillar 2), a LoRA update and an IA3 scaling (pillar 3).

The effective weight is M * (W + s * B A), scaled by IA3, and every forward uses it, so no
backend or kernel can bypass an adapter. The parts are duck-typed:
- mask: a callable returning a multiplier that broadcasts against the weight (or None);
- lora: `.delta()` -> a weight-shaped update, `.permute_(dim, index)`;
- ia3: `.vector()` -> a scaling vector, `.on_input` (scale inputs rather than outputs),
  `.permute_(dim, index)`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

PROJECTIONS = ("in_proj", "conv1d", "x_proj", "dt_proj", "out_proj")


class AdaptedMixin:
    """The effective-weight computation shared by the adapted linear and conv layers."""

    weight: nn.Parameter
    bias: nn.Parameter | None
    mask: Callable[[], torch.Tensor | None] | None
    lora: nn.Module | None
    ia3: nn.Module | None

    def _take_over(self, module: nn.Module) -> None:
        """Hold `module`'s own Parameter objects (optimizers and state dicts keep working)."""
        self.weight = module.weight
        self.bias = module.bias
        self.mask = None
        self.lora = None
        self.ia3 = None
        self.merged = False

    def effective_weight(self) -> torch.Tensor:
        """M * (W + s B A): the LoRA update is masked too, so masked weights stay exactly zero."""
        weight = self.weight
        if self.lora is not None and not self.merged:
            weight = weight + self.lora.delta().view_as(weight).to(weight.dtype)
        multiplier = self.mask() if self.mask is not None else None
        if multiplier is not None:
            weight = weight * multiplier.to(weight.dtype)
        return weight

    def _scale_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.ia3 is not None and self.ia3.on_input and not self.merged:
            return x * self.ia3.vector().to(x.dtype)
        return x

    def _scale_output(self, y: torch.Tensor, channel_dim: int) -> torch.Tensor:
        if self.ia3 is None or self.ia3.on_input or self.merged:
            return y
        vector = self.ia3.vector().to(y.dtype)
        return y * (vector if channel_dim == -1 else vector[:, None])

    @torch.no_grad()
    def permute_parts_(self, dim: int, index: torch.Tensor) -> None:
        """Reorder the attached LoRA and IA3 tensors along weight dimension `dim`."""
        for part in (self.lora, self.ia3):
            if part is not None:
                part.permute_(dim, index)

    @torch.no_grad()
    def merge_(self) -> None:
        """Fold LoRA and IA3 into the base weight and bias (the mask stays a mask)."""
        if self.merged:
            return
        self._fold(sign=1)
        self.merged = True

    @torch.no_grad()
    def unmerge_(self) -> None:
        """Undo merge_: the base weight and bias return to their values before it."""
        if not self.merged:
            return
        self._fold(sign=-1)
        self.merged = False

    def _fold(self, sign: int) -> None:
        """W + s BA then IA3 scaling (sign 1), or its inverse in reverse order (sign -1)."""
        weight = self.weight
        if sign > 0 and self.lora is not None:
            weight += self.lora.delta().view_as(weight).to(weight.dtype)
        if self.ia3 is not None:
            vector = self.ia3.vector().to(weight.dtype) ** sign
            shape = [1] * weight.dim()
            shape[1 if self.ia3.on_input else 0] = -1
            weight *= vector.view(shape)
            if self.bias is not None and not self.ia3.on_input:
                self.bias *= vector
        if sign < 0 and self.lora is not None:
            weight -= self.lora.delta().view_as(weight).to(weight.dtype)


class AdaptedLinear(AdaptedMixin, nn.Module):
    """nn.Linear with the effective weight; parameter names stay `weight` and `bias`."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self._take_over(linear)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(self._scale_input(x), self.effective_weight(), self.bias)
        return self._scale_output(y, channel_dim=-1)


class AdaptedConv1d(AdaptedMixin, nn.Module):
    """The mixer's depthwise causal nn.Conv1d with the effective kernel."""

    def __init__(self, conv: nn.Conv1d) -> None:
        super().__init__()
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.kernel_size, self.padding, self.groups = conv.kernel_size, conv.padding, conv.groups
        self._take_over(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv1d(
            self._scale_input(x), self.effective_weight(), self.bias,
            padding=self.padding, groups=self.groups,
        )  # fmt: skip
        return self._scale_output(y, channel_dim=-2)


def adapt(mixer: nn.Module) -> dict[str, AdaptedMixin]:
    """Replace the mixer's projections by adapted ones (once; later calls return the same)."""
    adapted = {}
    for name in PROJECTIONS:
        module = getattr(mixer, name)
        if not isinstance(module, AdaptedMixin):
            module = AdaptedConv1d(module) if name == "conv1d" else AdaptedLinear(module)
            setattr(mixer, name, module)
        adapted[name] = module
    return adapted
