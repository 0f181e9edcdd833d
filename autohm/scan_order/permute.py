"""Applying a channel order: permute the d_inner channels of a Mamba mixer in place, consistently
across every parameter that has a channel axis. Outputs are unchanged (an exact equivalence up
to the order of floating-point sums): the order only matters to what groups channels into
blocks (block masks, block-skipping kernels)."""

from __future__ import annotations

import numpy as np
import torch

from autohm.errors import AutohmError
from autohm.model.adapted import AdaptedMixin
from autohm.model.mixer import LayerState, MambaMixer


def as_permutation(perm, n: int) -> torch.Tensor:
    """`perm` as a long tensor, checked to be a permutation of range(n)."""
    perm = torch.as_tensor(np.asarray(perm), dtype=torch.long).flatten()
    if perm.numel() != n or not torch.equal(perm.sort().values, torch.arange(n)):
        raise AutohmError(f"not a permutation of the {n} channels: {perm.tolist()[:8]}...")
    return perm


def inverse_permutation(perm) -> torch.Tensor:
    """inv with inv[perm[i]] = i: applying perm, then inv, restores the original order."""
    perm = torch.as_tensor(np.asarray(perm), dtype=torch.long)
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(perm.numel())
    return inverse


@torch.no_grad()
def permute_channels(mixer: MambaMixer, perm) -> None:
    """New channel k is old channel perm[k], in in_proj (x and z rows alike), conv1d, x_proj's
    input columns, dt_proj's rows and bias, A_log, D and out_proj's input columns, and in the
    masks, LoRA and IA3 tensors attached to them."""
    d = mixer.d_inner
    perm = as_permutation(perm, d).to(mixer.A_log.device)
    xz = torch.cat([perm, perm + d])

    def take(param: torch.nn.Parameter | None, dim: int, index: torch.Tensor) -> None:
        if param is not None:
            param.copy_(param.index_select(dim, index))

    for name, dim, index in (
        ("in_proj", 0, xz), ("conv1d", 0, perm), ("x_proj", 1, perm), ("dt_proj", 0, perm),
        ("out_proj", 1, perm),
    ):  # fmt: skip
        module = getattr(mixer, name)
        take(module.weight, dim, index)
        if dim == 0:
            take(module.bias, 0, index)
        if isinstance(module, AdaptedMixin):
            module.permute_parts_(dim, index)
    take(mixer.A_log, 0, perm)
    take(mixer.D, 0, perm)
    if mixer.masks is not None:
        mixer.masks.permute_(perm)


def permute_state(state: LayerState, perm) -> LayerState:
    """A decoding state in the permuted channel order."""
    perm = torch.as_tensor(np.asarray(perm), dtype=torch.long, device=state.ssm.device)
    return LayerState(state.conv[:, perm], state.ssm[:, perm])
