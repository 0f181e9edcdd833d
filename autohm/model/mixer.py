"""The Mamba v1 mixer, with the parameter names and shapes of mamba_ssm's `Mamba` and
transformers' `MambaMixer`.

Every projection (in_proj, conv1d, x_proj, dt_proj, out_proj) is applied as a module call, so a
wrapper that replaces or parametrizes one of them (mask, LoRA, IA3) is used on every backend.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from autohm.model.config import MambaConfig
from autohm.ops import selective_scan, selective_state_update


class LayerState(NamedTuple):
    """Decoding state of one mixer: the last d_conv conv inputs and the scan state."""

    conv: torch.Tensor  # (batch, d_inner, d_conv)
    ssm: torch.Tensor  # (batch, d_inner, d_state)


class ScanInputs(NamedTuple):
    """A mixer's selective-scan arguments (delta before softplus, dt_proj's bias included) and
    the conv input, whose last d_conv steps are the decoding state."""

    u: torch.Tensor  # (batch, d_inner, L)
    delta: torch.Tensor  # (batch, d_inner, L)
    A: torch.Tensor  # (d_inner, d_state)
    B: torch.Tensor  # (batch, d_state, L)
    C: torch.Tensor  # (batch, d_state, L)
    D: torch.Tensor  # (d_inner,)
    z: torch.Tensor  # (batch, d_inner, L)
    conv_in: torch.Tensor  # (batch, d_inner, L)


def at_least_float32(tensor: torch.Tensor) -> torch.Tensor:
    """float32 for half types, float64 stays float64: the scan's parameters are never rounded
    below float32, and a float64 model computes in float64 throughout."""
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


class MambaMixer(nn.Module):
    """in_proj -> causal depthwise conv -> SiLU -> selective scan (gated by SiLU(z)) -> out_proj."""

    def __init__(self, config: MambaConfig, layer: int = 0) -> None:
        """Layer `layer` of `config`: its own d_inner and d_state where the config is compact
        (zero channels allowed: such a mixer contributes out_proj's bias, or nothing)."""
        super().__init__()
        d_inner, d_state = config.layer_inner(layer), config.layer_state(layer)
        dt_rank = config.resolved_dt_rank
        self.d_inner, self.d_state, self.dt_rank, self.d_conv = (
            d_inner,
            d_state,
            dt_rank,
            config.d_conv,
        )
        self.in_proj = nn.Linear(config.d_model, 2 * d_inner, bias=config.bias)
        self.conv1d = nn.Conv1d(
            d_inner,
            d_inner,
            config.d_conv,
            groups=max(d_inner, 1),  # a zero-width layer never calls its conv
            padding=config.d_conv - 1,
            bias=config.conv_bias,
        )
        if d_inner == 0:  # the weight keeps its usual shape (d_inner, 1, d_conv) in files
            self.conv1d.weight = nn.Parameter(torch.empty(0, 1, config.d_conv))
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=config.x_proj_bias)
        self.dt_proj = nn.Linear(dt_rank, d_inner, bias=True)
        self.A_log = nn.Parameter(torch.empty(d_inner, d_state))
        self.D = nn.Parameter(torch.empty(d_inner))
        self.out_proj = nn.Linear(d_inner, config.d_model, bias=config.bias)
        self.scan_backend = "auto"
        self.masks: nn.Module | None = None  # attached by autohm.masking.attach_masks
        self.reset_ssm_parameters(config)

    @torch.no_grad()
    def reset_ssm_parameters(self, config: MambaConfig) -> None:
        """mamba_ssm's initialisation of dt_proj, A_log (S4D-real) and D."""
        dt_init_std = self.dt_rank**-0.5 * config.dt_scale
        if config.dt_init == "constant":
            nn.init.constant_(self.dt_proj.weight, dt_init_std)
        else:
            nn.init.uniform_(self.dt_proj.weight, -dt_init_std, dt_init_std)
        log_min, log_max = math.log(config.dt_min), math.log(config.dt_max)
        dt = torch.exp(torch.rand(self.d_inner) * (log_max - log_min) + log_min)
        dt = dt.clamp(min=config.dt_init_floor)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        A = torch.arange(1, self.d_state + 1, dtype=torch.float32).repeat(self.d_inner, 1)
        self.A_log.copy_(torch.log(A))
        self.D.fill_(1.0)

    def _ssm_inputs(
        self, x: torch.Tensor, keep: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """From the conv output x (..., d_inner): delta before softplus, B and C. x_proj's bias
        (a compact model's folded constant inputs) is zero where `keep` (..., 1) is zero, as
        the inputs it stands for are at padded positions."""
        projected = self.x_proj(x)
        bias = self.x_proj.bias
        if bias is not None and keep is not None:
            projected = projected - (1 - keep) * bias
        dt, B, C = projected.split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        return self.dt_proj(dt), B, C

    def scan_inputs(
        self, hidden: torch.Tensor, padding_mask: torch.Tensor | None = None
    ) -> ScanInputs:
        """Everything the selective scan of `hidden` (batch, L, d_model) takes, in its layout.

        With a padding mask (batch, L; 1 = token, 0 = padding), padded positions feed zeros to the
        conv and leave the scan state untouched, so left or right padding does not change the
        outputs at real tokens.
        """
        length = hidden.shape[1]
        self._begin_masked_pass()
        keep_tokens = None if padding_mask is None else padding_mask[..., None].to(hidden.dtype)
        x, z = self.in_proj(hidden).chunk(2, dim=-1)
        keep = None if padding_mask is None else padding_mask[:, None, :].to(x.dtype)
        conv_in = x.transpose(1, 2)  # (batch, d_inner, L)
        if keep is not None:
            conv_in = conv_in * keep
        u = F.silu(self.conv1d(conv_in)[..., :length])
        if keep is not None:
            u = u * keep
        delta, B, C = self._ssm_inputs(u.transpose(1, 2), keep_tokens)
        return ScanInputs(
            u, delta.transpose(1, 2), -torch.exp(at_least_float32(self.A_log)),
            B.transpose(1, 2), C.transpose(1, 2), at_least_float32(self.D), z.transpose(1, 2),
            conv_in,
        )  # fmt: skip

    def forward(
        self,
        hidden: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        return_state: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, LayerState]:
        """hidden (batch, L, d_model) -> (batch, L, d_model); padding as in scan_inputs."""
        if self.d_inner == 0:
            out = self._nothing(hidden)
            return (out, self.empty_state(hidden.shape[0])) if return_state else out
        s = self.scan_inputs(hidden, padding_mask)
        y, ssm_state = selective_scan(
            s.u, s.delta, s.A, s.B, s.C, s.D, z=s.z, delta_softplus=True,
            return_last_state=True, backend=self.scan_backend, alive=self.alive_channels(),
        )  # fmt: skip
        out = self.out_proj(y.transpose(1, 2))
        if not return_state:
            return out
        pad = max(self.d_conv - hidden.shape[1], 0)
        conv_state = F.pad(s.conv_in, (pad, 0))[..., -self.d_conv :]
        return out, LayerState(conv_state, ssm_state)

    def _nothing(self, hidden: torch.Tensor) -> torch.Tensor:
        """The output of a mixer without channels: out_proj of no inputs (its bias, or zeros)."""
        return self.out_proj(hidden.new_zeros(*hidden.shape[:-1], 0))

    def _begin_masked_pass(self) -> None:
        """Masks draw one fresh sample per pass, shared by every projection they cover."""
        if self.masks is not None:
            self.masks.begin_forward()

    def alive_channels(self) -> torch.Tensor | None:
        """Channels whose output is used (False: masked out, the scan may skip them)."""
        return self.masks.alive() if self.masks is not None else None

    def empty_state(self, batch: int) -> LayerState:
        """The state before the first token: conv inputs in the weights' dtype, scan state in
        float32 (as the scan computes)."""
        weight = self.in_proj.weight
        return LayerState(
            weight.new_zeros(batch, self.d_inner, self.d_conv),
            torch.zeros(batch, self.d_inner, self.d_state, device=weight.device),
        )

    def step(self, hidden: torch.Tensor, state: LayerState) -> tuple[torch.Tensor, LayerState]:
        """One token: hidden (batch, d_model) -> (batch, d_model) and the next state."""
        if self.d_inner == 0:
            return self._nothing(hidden), state
        self._begin_masked_pass()
        x, z = self.in_proj(hidden).chunk(2, dim=-1)
        conv_state = torch.cat([state.conv[..., 1:], x[..., None]], dim=-1)
        x = F.silu(self.conv1d(conv_state)[..., self.d_conv - 1])  # the full window
        delta, B, C = self._ssm_inputs(x)
        y, ssm_state = selective_state_update(
            state.ssm,
            x,
            delta,
            -torch.exp(self.A_log.float()),
            B,
            C,
            self.D.float(),
            z=z,
            dt_softplus=True,
            backend=self.scan_backend,
        )
        return self.out_proj(y), LayerState(conv_state, ssm_state)
