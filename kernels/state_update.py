"""Triton kernel of one decoding step of the Mamba v1 scan (selective_state_update), forward only:
h' = exp(dt A) h + dt B x, y = (C h' + D x) * silu(z); blocks of dead channels are skipped."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from autohm.kernels.selective_scan import (
    BLOCK_D,
    alive_flags,
    channel_vector,
    launch_shape,
    live_channels,
    softplus,
)


@triton.jit
def _state_update_kernel(
    state_ptr,
    x_ptr,
    dt_ptr,
    A_ptr,
    B_ptr,
    C_ptr,
    D_ptr,
    z_ptr,
    bias_ptr,
    alive_ptr,
    y_ptr,
    new_state_ptr,
    d_inner,
    n_state,
    stride_state_b,
    stride_state_d,
    stride_state_n,
    stride_x_b,
    stride_x_d,
    stride_dt_b,
    stride_dt_d,
    stride_z_b,
    stride_z_d,
    stride_B_b,
    stride_B_n,
    stride_C_b,
    stride_C_n,
    BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    HAS_ALIVE: tl.constexpr,
):
    """y (batch, d) in x's dtype and new_state (batch, d, N) in state's dtype; dead channels get
    zeros in both. Grid: (batch, cdiv(d_inner, BLOCK_D))."""
    pid_b = tl.program_id(0).to(tl.int64)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    mask_d = offs_d < d_inner
    mask_n = offs_n < n_state
    live = live_channels(alive_ptr, offs_d, d_inner, HAS_ALIVE)
    rows = pid_b * d_inner + offs_d
    new_state_ptrs = new_state_ptr + rows[:, None] * n_state + offs_n[None, :]
    mask_state = mask_d[:, None] & mask_n[None, :]
    if tl.max(live.to(tl.int32), axis=0) == 0:
        tl.store(y_ptr + rows, tl.zeros((BLOCK_D,), tl.float32), mask=mask_d)
        tl.store(new_state_ptrs, tl.zeros((BLOCK_D, BLOCK_N), tl.float32), mask=mask_state)
        return

    mask_live = live[:, None] & mask_n[None, :]
    A = tl.load(A_ptr + offs_d[:, None] * n_state + offs_n[None, :], mask=mask_live, other=0.0)
    state_ptrs = state_ptr + pid_b * stride_state_b + offs_d[:, None] * stride_state_d
    h = tl.load(state_ptrs + offs_n[None, :] * stride_state_n, mask=mask_live, other=0.0)
    x = tl.load(x_ptr + pid_b * stride_x_b + offs_d * stride_x_d, mask=live, other=0.0)
    dt = tl.load(dt_ptr + pid_b * stride_dt_b + offs_d * stride_dt_d, mask=live, other=0.0)
    dt = dt.to(tl.float32) + channel_vector(bias_ptr, offs_d, live, HAS_BIAS, BLOCK_D)
    if SOFTPLUS:
        dt = softplus(dt)
    B = tl.load(B_ptr + pid_b * stride_B_b + offs_n * stride_B_n, mask=mask_n, other=0.0)
    C = tl.load(C_ptr + pid_b * stride_C_b + offs_n * stride_C_n, mask=mask_n, other=0.0)
    x = x.to(tl.float32)
    h = tl.exp(dt[:, None] * A.to(tl.float32)) * h.to(tl.float32)
    h += (dt * x)[:, None] * B.to(tl.float32)[None, :]
    y = tl.sum(h * C.to(tl.float32)[None, :], axis=1)
    if HAS_D:
        y += channel_vector(D_ptr, offs_d, live, HAS_D, BLOCK_D) * x
    if HAS_Z:
        z = tl.load(z_ptr + pid_b * stride_z_b + offs_d * stride_z_d, mask=live, other=0.0)
        z = z.to(tl.float32)
        y *= z * tl.sigmoid(z)
    tl.store(y_ptr + rows, y, mask=mask_d)
    tl.store(new_state_ptrs, h, mask=mask_state)


def selective_state_update_triton(
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
    alive: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One decoding step with selective_state_update_reference's contract: returns (y, new_state)
    and leaves `state` unchanged. Forward only (raises when grad is needed); computes in float32;
    dead channels (alive false) give zeros in y and new_state."""
    tensors = (state, x, dt, A, B, C, D, z, dt_bias)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        raise RuntimeError(
            "selective_state_update_triton is forward only: call it under torch.no_grad()"
        )
    batch, d_inner, n_state = state.shape
    grid, block_n, num_warps = launch_shape(batch, d_inner, n_state)
    A = A.contiguous()
    D, dt_bias = (None if t is None else t.contiguous() for t in (D, dt_bias))
    y = torch.empty(batch, d_inner, dtype=x.dtype, device=x.device)
    new_state = torch.empty(batch, d_inner, n_state, dtype=state.dtype, device=state.device)
    _state_update_kernel[grid](
        state, x, dt, A, B, C, D, z, dt_bias, alive_flags(alive), y, new_state,
        d_inner, n_state,
        *state.stride(), *x.stride(), *dt.stride(), *(z.stride() if z is not None else (0, 0)),
        *B.stride(), *C.stride(),
        BLOCK_D=BLOCK_D, BLOCK_N=block_n,
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=dt_bias is not None,
        SOFTPLUS=dt_softplus, HAS_ALIVE=alive is not None, num_warps=num_warps,
    )  # fmt: skip
    return y, new_state
