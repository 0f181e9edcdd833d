"""Baselines the fast scans are compared with: mambapy's parallel (Blelloch) scan, which
materialises (batch, L, d_inner, N) tensors, used the way mambapy's MambaBlock uses it."""

from __future__ import annotations

import importlib.util

import torch
import torch.nn.functional as F

from autohm.errors import AutohmError


def mambapy_available() -> bool:
    return importlib.util.find_spec("mambapy") is not None


def selective_scan_mambapy(
    u,
    delta,
    A,
    B,
    C,
    D=None,
    z=None,
    delta_bias=None,
    delta_softplus=False,
    return_last_state=False,
    alive=None,
):
    """selective_scan semantics on top of mambapy.pscan (float32; alive zeroes outputs)."""
    if not mambapy_available():
        raise AutohmError("the mambapy baseline needs mambapy: pip install mambapy")
    from mambapy.pscan import pscan

    if delta_bias is not None:
        delta = delta + delta_bias[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    delta_t, u_t = delta.transpose(1, 2), u.transpose(1, 2)  # (batch, L, d_inner)
    decay = torch.exp(delta_t.unsqueeze(-1) * A)  # (batch, L, d_inner, N)
    drive = (delta_t * u_t).unsqueeze(-1) * B.transpose(1, 2).unsqueeze(2)
    states = pscan(decay, drive)
    y = (states @ C.transpose(1, 2).unsqueeze(-1)).squeeze(-1)  # (batch, L, d_inner)
    if D is not None:
        y = y + D * u_t
    if z is not None:
        y = y * F.silu(z.transpose(1, 2))
    y = y.transpose(1, 2)
    last = states[:, -1]
    if alive is not None:
        y, last = torch.where(alive[:, None], y, 0.0), torch.where(alive[:, None], last, 0.0)
    return (y, last) if return_last_state else y
