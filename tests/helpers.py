"""Helpers for building tiny models offline."""

import torch

from autohm.model import MambaConfig


def tiny_config(**overrides) -> MambaConfig:
    """A 2-layer model small enough for the sequential reference scan."""
    values = dict(d_model=16, n_layer=2, vocab_size=37, d_state=4, d_conv=4, expand=2)
    return MambaConfig(**{**values, **overrides})


@torch.no_grad()
def randomise_(model: torch.nn.Module, scale: float = 0.3) -> torch.nn.Module:
    """Replace every parameter by random values, so no weight is left at a trivial init."""
    for name, param in model.named_parameters():
        if name.endswith("A_log"):
            param.copy_(torch.rand_like(param) * 2 - 1)
        elif "norm" in name and name.endswith("weight"):
            param.copy_(1 + scale * torch.randn_like(param))
        else:
            param.copy_(scale * torch.randn_like(param))
    return model
