"""The reference selective scan and single-step state update: plain, sequential, differentiable
PyTorch — the oracle for every faster backend. Semantics of mamba_ssm's selective_scan_ref and
selective_state_update_ref."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _discretize(delta: torch.Tensor, bias: torch.Tensor | None, softplus: bool) -> torch.Tensor:
    """delta + bias (broadcast over the channel dim 1), then softplus if asked."""
    if bias is not None:
        delta = delta + bias.to(delta.dtype).view(-1, *([1] * (delta.dim() - 2)))
    return F.softplus(delta) if softplus else delta


def _skip_and_gate(y, u, D, z) -> torch.Tensor:
    """y + D * u, then gated by silu(z); D broadcasts over the channel dim 1."""
    if D is not None:
        y = y + u * D.to(y.dtype).view(-1, *([1] * (u.dim() - 2)))
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    return y


def _recur(state, u_t, delta_t, A, B_t, C_t) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of h = exp(delta A) h + delta B u and y = C h; u_t, delta_t: (batch, d_inner)."""
    state = torch.exp(delta_t[..., None] * A) * state + (delta_t * u_t)[..., None] * B_t[:, None]
    return state, torch.einsum("bdn,bn->bd", state, C_t)


def selective_scan_reference(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    alive: torch.Tensor | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t;  y_t = C_t h_t + D u_t;  y *= silu(z).

    Shapes: u, delta, z (batch, d_inner, L); A (d_inner, N); B, C (batch, N, L); D, delta_bias,
    alive (d_inner). Computes in float32 (float64 stays float64) and returns u's dtype. Dead
    channels (alive false) are computed, then zeroed: this backend defines, not exploits, them.
    """
    compute = _compute_dtype(u.dtype)
    uc, A, B, C = u.to(compute), A.to(compute), B.to(compute), C.to(compute)
    delta = _discretize(delta.to(compute), delta_bias, delta_softplus)
    state = uc.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    outputs = []
    for t in range(u.shape[2]):
        state, y_t = _recur(state, uc[:, :, t], delta[:, :, t], A, B[:, :, t], C[:, :, t])
        outputs.append(y_t)
    y = _skip_and_gate(torch.stack(outputs, dim=-1), uc, D, z)
    if alive is not None:
        keep = alive.to(torch.bool)[:, None]
        y, state = torch.where(keep, y, 0.0), torch.where(keep, state, 0.0)
    y = y.to(u.dtype)
    return (y, state) if return_last_state else y


def selective_state_update_reference(
    state: torch.Tensor,
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One decoding step of the scan: returns (y, new_state) without modifying `state`.

    Shapes: state (batch, d_inner, N); x, dt, z (batch, d_inner); A (d_inner, N);
    B, C (batch, N); D, dt_bias (d_inner).
    """
    compute = _compute_dtype(x.dtype)
    xc, A, B, C = x.to(compute), A.to(compute), B.to(compute), C.to(compute)
    dt = _discretize(dt.to(compute), dt_bias, dt_softplus)
    new_state, y = _recur(state.to(compute), xc, dt, A, B, C)
    return _skip_and_gate(y, xc, D, z).to(x.dtype), new_state.to(state.dtype)
