"""Compaction: the deployed form of a model, in which every d_inner channel and every scan state
that its (baked) masks make removable is physically gone, layer by layer, so that FLOPs and
latency fall with what the masks learned.

A channel c of a Mamba v1 mixer reaches the output by two roads:
1. its own output y_c = (C h_c + D_c u_c) * silu(z_c) through out_proj: closed when out_proj's
   column c is zero, when z_c is zero (z row of in_proj zero, no bias), or when u_c is zero;
2. its scan input u_c = silu(conv(x_c)) through x_proj into dt, B and C of every channel:
   closed when x_proj's column c is zero. When x_c is zero (x row of in_proj zero, no bias) or
   the conv kernel of c is zero, u_c is the constant silu(conv bias_c) at every real token (zero
   at padded ones): its share of x_proj's output is a constant, folded exactly into a bias of
   x_proj that the mixer applies at real tokens only.
A channel whose two roads are closed or folded is removed: its in_proj rows (x and z), conv
channel, x_proj column, dt_proj row and bias, A_log row, D and out_proj column. A state n whose B
row (or C row) of x_proj is zero, bias included, contributes nothing: its B and C rows and its
A_log column go. Removal decides from the weights alone, so fully zero rows and columns of
element masks count as well as channel and block masks. The compact model computes what the
masked model computes (up to the order of floating-point sums); a layer may end with no
channels, and then contributes out_proj's bias (or nothing).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from autohm.masking.masks import mixers
from autohm.model import MambaClassifier, MambaConfig, MambaLM, MambaMixer
from autohm.peft.export import merged_copy


@dataclass(frozen=True)
class LayerPlan:
    """What compaction keeps of one mixer: channel and state indices, and x_proj's new bias
    (None when it needs none)."""

    channels: torch.Tensor  # long, indices of the kept channels
    states: torch.Tensor  # long, indices of the kept states
    x_proj_bias: torch.Tensor | None  # (dt_rank + 2 * kept states,)
    folded: int  # removed channels whose constant input went into x_proj's bias


def _zero_rows(weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Rows of `weight` (first axis) that are entirely zero, their bias entry included."""
    zero = weight.detach().flatten(1).eq(0).all(dim=1)
    return zero if bias is None else zero & bias.detach().eq(0)


def _bias_or_zeros(module: nn.Module, size: int) -> torch.Tensor:
    bias = module.bias
    return bias.detach() if bias is not None else module.weight.new_zeros(size)


@torch.no_grad()
def plan_layer(mixer: MambaMixer) -> LayerPlan:
    """The channels and states of a plain mixer (no masks or adapters: weights as deployed)
    that compaction keeps; see the module docstring for when each may go."""
    d, rank, n = mixer.d_inner, mixer.dt_rank, mixer.d_state
    in_weight, in_bias = mixer.in_proj.weight, mixer.in_proj.bias
    x_bias = None if in_bias is None else in_bias[:d]
    z_bias = None if in_bias is None else in_bias[d:]
    constant_input = _zero_rows(in_weight[:d], x_bias) | _zero_rows(mixer.conv1d.weight)
    input_value = F.silu(_bias_or_zeros(mixer.conv1d, d))  # u_c where the input is constant
    silent = constant_input & input_value.eq(0)  # u_c == 0: no output, no share of x_proj
    own_road_closed = _zero_rows(mixer.out_proj.weight.t()) | _zero_rows(in_weight[d:], z_bias)
    x_weight = mixer.x_proj.weight
    read_road_closed = _zero_rows(x_weight.t())
    removed = (own_road_closed | silent) & (read_road_closed | constant_input)
    folding = removed & constant_input & ~read_road_closed & ~silent
    bias = _bias_or_zeros(mixer.x_proj, rank + 2 * n)
    if folding.any():
        share = x_weight[:, folding].double() @ input_value[folding].double()
        bias = bias + share.to(bias.dtype)
    channels = torch.nonzero(~removed).flatten()
    kept_weight = x_weight[:, channels]
    zero_b = _zero_rows(kept_weight[rank : rank + n], bias[rank : rank + n])
    zero_c = _zero_rows(kept_weight[rank + n :], bias[rank + n :])
    states = torch.nonzero(~(zero_b | zero_c)).flatten()
    if len(channels) == 0:
        states = states[:0]  # a layer without channels has no scan
    rows = torch.cat([torch.arange(rank), rank + states, rank + n + states]).to(bias.device)
    has_bias = mixer.x_proj.bias is not None or bool(folding.any())
    return LayerPlan(channels, states, bias[rows] if has_bias else None, int(folding.sum()))


def _layer_tensors(mixer: MambaMixer, plan: LayerPlan, x_bias: bool) -> dict[str, torch.Tensor]:
    """The mixer's parameters restricted to the plan's channels and states (names as in the
    mixer's state dict); x_proj gets a bias when `x_bias` (zeros where the plan needs none)."""
    d, rank, n = mixer.d_inner, mixer.dt_rank, mixer.d_state
    channels = plan.channels.to(mixer.A_log.device)
    states = plan.states.to(mixer.A_log.device)
    rows = torch.cat([torch.arange(rank, device=states.device), rank + states, rank + n + states])
    tensors = {
        "in_proj.weight": mixer.in_proj.weight[torch.cat([channels, d + channels])],
        "conv1d.weight": mixer.conv1d.weight[channels],
        "x_proj.weight": mixer.x_proj.weight[rows][:, channels],
        "dt_proj.weight": mixer.dt_proj.weight[channels],
        "dt_proj.bias": mixer.dt_proj.bias[channels],
        "A_log": mixer.A_log[channels][:, states],
        "D": mixer.D[channels],
        "out_proj.weight": mixer.out_proj.weight[:, channels],
    }
    if mixer.in_proj.bias is not None:
        tensors["in_proj.bias"] = mixer.in_proj.bias[torch.cat([channels, d + channels])]
    if mixer.conv1d.bias is not None:
        tensors["conv1d.bias"] = mixer.conv1d.bias[channels]
    if mixer.out_proj.bias is not None:
        tensors["out_proj.bias"] = mixer.out_proj.bias
    if x_bias:
        none = mixer.x_proj.weight.new_zeros(len(rows))
        tensors["x_proj.bias"] = none if plan.x_proj_bias is None else plan.x_proj_bias
    return {key: value.detach().contiguous() for key, value in tensors.items()}


def _empty_like(model: nn.Module, config: MambaConfig) -> nn.Module:
    """A model of `model`'s kind for `config`, with parameters on the meta device."""
    with torch.device("meta"):
        if isinstance(model, MambaClassifier):
            return MambaClassifier(config, model.score.out_features, model.pooling)
        if isinstance(model, MambaLM):
            return MambaLM(config)
    raise TypeError(f"compact() takes a MambaClassifier or MambaLM, not {type(model).__name__}")


@torch.no_grad()
def compact(model: nn.Module) -> nn.Module:
    """A plain copy of `model` (MambaClassifier or MambaLM; evaluation mode) with adapters
    merged, hard masks baked and every removable channel and state removed per layer; it
    computes the masked model's evaluation outputs. `model` itself is left as it was."""
    plain = merged_copy(model)
    layers = list(mixers(plain))
    plans = [plan_layer(mixer) for mixer in layers]
    inner = [len(plan.channels) for plan in plans]
    states = [len(plan.states) for plan in plans]
    config = replace(
        plain.config,
        layer_d_inner=None if inner == [plain.config.d_inner] * len(plans) else inner,
        layer_d_state=None if states == [plain.config.d_state] * len(plans) else states,
        x_proj_bias=any(plan.x_proj_bias is not None for plan in plans),
    )
    state = {k: v for k, v in plain.state_dict().items() if ".mixer." not in k}
    for index, (mixer, plan) in enumerate(zip(layers, plans, strict=True)):
        for key, tensor in _layer_tensors(mixer, plan, config.x_proj_bias).items():
            state[f"backbone.layers.{index}.mixer.{key}"] = tensor
    result = _empty_like(plain, config)
    result.load_state_dict(state, assign=True)
    if isinstance(result, MambaLM) and config.tie_embeddings:
        result.lm_head.weight = result.backbone.embedding.weight
    for old, new in zip(layers, mixers(result), strict=True):
        new.scan_backend = old.scan_backend
    return result.eval()


def describe(config: MambaConfig) -> str:
    """One line on what compaction kept per layer, e.g. 'layer 0: 61/128 channels, 8/8 states;
    ...' (every layer at its full widths: 'not compacted')."""
    if config.layer_d_inner is None and config.layer_d_state is None:
        return "not compacted: every layer has its full widths"
    return "; ".join(
        f"layer {i}: {config.layer_inner(i)}/{config.d_inner} channels, "
        f"{config.layer_state(i)}/{config.d_state} states"
        for i in range(config.n_layer)
    )
