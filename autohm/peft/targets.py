"""The projections pillar 3 may tune, their keys ("layers.{i}.{module}"), and the weight rows
and columns that the hard masks remove from them.

conv1d is not a target: its depthwise kernel has d_conv weights per channel, so a low-rank
update is meaningless, and an IA3 scaling of its output equals one of in_proj's x rows (up to
the conv bias). Its mask, if any, still applies.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from autohm.masking.masks import mixers
from autohm.model.mixer import MambaMixer

PEFT_MODULES = ("in_proj", "x_proj", "dt_proj", "out_proj")
IA3_ON_INPUT = ("out_proj",)  # scaled on its input, as PEFT does for feed-forward modules


def module_key(layer: int, name: str) -> str:
    """The key of one candidate module, as used by importance and allocation dictionaries."""
    return f"layers.{layer}.{name}"


def targets(model: nn.Module) -> Iterator[tuple[str, MambaMixer, str]]:
    """(key, mixer, module name) for every candidate module of every layer, in order."""
    for index, mixer in enumerate(mixers(model)):
        for name in PEFT_MODULES:
            yield module_key(index, name), mixer, name


@torch.no_grad()
def hard_multiplier(mixer: MambaMixer, name: str) -> torch.Tensor | None:
    """The evaluation mask 1(L > 0) of one projection's weight, or None when none covers it."""
    masks = mixer.masks
    if masks is None:
        return None
    was_training = masks.training
    masks.eval()
    try:
        return masks.weight_multiplier(name, getattr(mixer, name).weight)
    finally:
        masks.train(was_training)


def removed_lines(mixer: MambaMixer, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Booleans (out,) and (in,): weight rows / columns the hard mask zeroes entirely."""
    weight = getattr(mixer, name).weight
    multiplier = hard_multiplier(mixer, name)
    if multiplier is None:
        rows, columns = weight.shape[0], weight[0].numel()
        return weight.new_zeros(rows, dtype=torch.bool), weight.new_zeros(columns, dtype=torch.bool)
    removed = multiplier.expand_as(weight).eq(0).flatten(1)
    return removed.all(dim=1), removed.all(dim=0)


def ia3_held(mixer: MambaMixer, name: str) -> torch.Tensor:
    """IA3 entries that cannot change the output under the hard masks (their gradient is exactly
    zero): columns removed entirely (input scaling), or rows removed entirely when the module has
    no bias (output scaling; with a bias the entry still scales it)."""
    rows, columns = removed_lines(mixer, name)
    if name in IA3_ON_INPUT:
        return columns
    return rows if getattr(mixer, name).bias is None else torch.zeros_like(rows)
