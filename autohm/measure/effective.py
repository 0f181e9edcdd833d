"""Dense and mask-effective forward FLOPs of an adapted model, in fvcore's convention.

Both are counted on a deployed form (adapters merged, hard masks baked into the weights; the
compact model, or the masked one at full width). Dense is fvcore's count of that model: what
runs. Effective (the metric flops_sparse) counts, per layer, only the work a sparse
implementation would need: multiply-adds with non-zero weights, and none of a dead channel's
path (a channel is dead when its out_proj column is zero: the scan skips it, its z row is
unused, and its x row and conv are only needed while x_proj still reads the channel).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from autohm.measure.flops import SCAN_KEY, FlopCount, count_flops, scan_flops
from autohm.model.mixer import MambaMixer
from autohm.peft import deployed


def mixer_flops(mixer: MambaMixer, batch: int, seq_len: int) -> dict[str, int]:
    """The effective FLOPs of one mixer's masked terms, keyed like count_flops' by_module."""
    tokens, d = batch * seq_len, mixer.d_inner
    alive = mixer.alive_channels()  # masks frozen in evaluation, or the out_proj columns left
    alive = mixer.out_proj.weight.detach().ne(0).any(dim=0) if alive is None else alive
    alive = alive.cpu()
    in_w, x_w = mixer.in_proj.weight.detach(), mixer.x_proj.weight.detach()
    needed = alive | x_w.ne(0).any(dim=0).cpu()  # channels whose scan input u is still read
    conv_taps = mixer.conv1d.weight.detach().ne(0).flatten(1).sum(1).cpu()
    kernel = mixer.d_conv
    return {
        "in_proj": tokens
        * int(in_w[:d].ne(0).sum(1).cpu()[needed].sum() + in_w[d:].ne(0).sum(1).cpu()[alive].sum()),
        "conv1d": batch * (seq_len + kernel - 1) * int(conv_taps[needed].sum()),
        "": tokens * int(needed.sum()) + 2 * d * mixer.d_state,
        "x_proj": tokens * int(x_w.ne(0).sum()),
        "dt_proj": tokens * int(mixer.dt_proj.weight.detach().ne(0).sum(1).cpu()[alive].sum()),
        SCAN_KEY: scan_flops(batch, int(alive.sum()), seq_len, mixer.d_state),
        "out_proj": tokens * int(mixer.out_proj.weight.detach().ne(0).sum()),
    }


def deployed_flops(plain: nn.Module, seq_len: int, batch: int = 1) -> tuple[FlopCount, FlopCount]:
    """(dense, effective) forward FLOPs of a model already in its deployed form."""
    dense = count_flops(plain, seq_len, batch)
    by_module = dict(dense.by_module)
    with torch.no_grad():
        for name, module in plain.named_modules():
            if isinstance(module, MambaMixer):
                for key, value in mixer_flops(module, batch, seq_len).items():
                    by_module[f"{name}.{key}" if key else name] = value
    by_module = {key: value for key, value in by_module.items() if value}
    return dense, replace(dense, total=sum(by_module.values()), by_module=by_module)


def dense_and_effective_flops(
    model: nn.Module, seq_len: int, batch: int = 1
) -> tuple[FlopCount, FlopCount]:
    """(dense, effective) forward FLOPs of the deployed form of `model`."""
    return deployed_flops(deployed(model), seq_len, batch)
