"""The Mamba v1 backbone: embedding, pre-norm residual blocks around the mixer, final norm.

Module names follow mamba_ssm (backbone.embedding, backbone.layers[i].norm / .mixer,
backbone.norm_f), so checkpoints map onto it key for key.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from autohm.model.config import MambaConfig
from autohm.model.mixer import LayerState, MambaMixer, at_least_float32
from autohm.ops import check_backend_name


class RMSNorm(nn.Module):
    """Root-mean-square norm with a learned scale, computed in float32."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = at_least_float32(x)
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


def make_norm(config: MambaConfig) -> nn.Module:
    """RMSNorm, or LayerNorm when the config says rms_norm = false."""
    if config.rms_norm:
        return RMSNorm(config.d_model, eps=config.norm_epsilon)
    return nn.LayerNorm(config.d_model, eps=config.norm_epsilon)


class Block(nn.Module):
    """hidden + mixer(norm(hidden)), the residual kept in float32 when residual_in_fp32."""

    def __init__(self, config: MambaConfig, layer: int = 0) -> None:
        super().__init__()
        self.residual_in_fp32 = config.residual_in_fp32
        self.norm = make_norm(config)
        self.mixer = MambaMixer(config, layer)

    def _residual(self, hidden: torch.Tensor) -> torch.Tensor:
        return at_least_float32(hidden) if self.residual_in_fp32 else hidden

    def _normed(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.norm(hidden.to(self.norm.weight.dtype))

    def forward(self, hidden, padding_mask=None, return_state=False):
        out = self.mixer(self._normed(hidden), padding_mask, return_state)
        if return_state:
            return self._residual(hidden) + out[0], out[1]
        return self._residual(hidden) + out

    def step(self, hidden: torch.Tensor, state: LayerState) -> tuple[torch.Tensor, LayerState]:
        out, state = self.mixer.step(self._normed(hidden), state)
        return self._residual(hidden) + out, state


class MambaBackbone(nn.Module):
    """Token ids -> normalised hidden states (batch, L, d_model)."""

    def __init__(self, config: MambaConfig) -> None:
        super().__init__()
        with warnings.catch_warnings():  # a compact layer may have no channels left
            warnings.filterwarnings("ignore", "Initializing zero-element tensors")
            self.embedding = nn.Embedding(config.padded_vocab_size, config.d_model)
            self.layers = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
            self.norm_f = make_norm(config)
            self._init_weights(config)

    @torch.no_grad()
    def _init_weights(self, config: MambaConfig) -> None:
        """mamba_ssm's scheme: zero linear biases (not dt_proj's), N(0, 0.02) embedding,
        out_proj rescaled by 1/sqrt(n_layer) (GPT-2's prenorm residual rescaling)."""
        nn.init.normal_(self.embedding.weight, std=0.02)
        for layer in self.layers:
            mixer = layer.mixer
            for linear in (mixer.in_proj, mixer.x_proj, mixer.out_proj):
                if linear.bias is not None:
                    nn.init.zeros_(linear.bias)
            nn.init.kaiming_uniform_(mixer.out_proj.weight, a=math.sqrt(5))
            mixer.out_proj.weight /= math.sqrt(config.n_layer)

    def forward(
        self,
        input_ids: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        return_state: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, list[LayerState]]:
        hidden = self.embedding(input_ids)
        states = []
        for layer in self.layers:
            if return_state:
                hidden, state = layer(hidden, padding_mask, return_state=True)
                states.append(state)
            else:
                hidden = layer(hidden, padding_mask)
        hidden = self.norm_f(hidden.to(self.norm_f.weight.dtype))
        return (hidden, states) if return_state else hidden

    def step(
        self, input_ids: torch.Tensor, states: list[LayerState]
    ) -> tuple[torch.Tensor, list[LayerState]]:
        """One token per sequence: input_ids (batch,) -> hidden (batch, d_model), next states."""
        hidden = self.embedding(input_ids)
        next_states = []
        for layer, state in zip(self.layers, states, strict=True):
            hidden, state = layer.step(hidden, state)
            next_states.append(state)
        return self.norm_f(hidden.to(self.norm_f.weight.dtype)), next_states

    def empty_states(self, batch: int) -> list[LayerState]:
        """Decoding states before the first token, on the model's device."""
        return [layer.mixer.empty_state(batch) for layer in self.layers]

    def set_scan_backend(self, name: str) -> None:
        """Pin every mixer to a registered scan backend, or "auto" (chosen per device)."""
        check_backend_name(name)
        for layer in self.layers:
            layer.mixer.scan_backend = name
