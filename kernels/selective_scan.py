"""Triton kernels of the Mamba v1 selective scan, forward and backward under one autograd Function;
a block of channels that are all dead (alive false) loads nothing and only writes zeros.

Each program owns one batch row and BLOCK_D channels and keeps their (BLOCK_D, N) state in
registers while it walks the sequence one step at a time. Nothing of size (batch, d_inner, L, N)
is allocated: the forward saves the state at the start of every CHUNK steps; the backward walks
the chunks from last to first, recomputes a chunk's states from its checkpoint into a small
per-program scratch buffer, then runs the reverse recurrence. Everything computes in float32
(float64 inputs too); reductions over channel blocks and the batch are per-program partial sums
added up in torch, so results are deterministic.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK_D = 32  # channels per program
CHUNK = 16  # time steps between saved states: the backward's recompute window


@triton.jit
def softplus(x):
    """torch's softplus: x itself above 20, else log(1 + e^x) (absolute error below 1e-7)."""
    return tl.where(x > 20.0, x, tl.log(1.0 + tl.exp(tl.minimum(x, 20.0))))


@triton.jit
def live_channels(alive_ptr, offs_d, d_inner, HAS_ALIVE: tl.constexpr):
    """Which of the block's lanes are real channels that are alive."""
    live = offs_d < d_inner
    if HAS_ALIVE:
        live &= tl.load(alive_ptr + offs_d, mask=live, other=0) != 0
    return live


@triton.jit
def channel_vector(ptr, offs_d, live, PRESENT: tl.constexpr, BLOCK_D: tl.constexpr):
    """A per-channel parameter (D, delta_bias) as float32, zero where absent or dead."""
    if PRESENT:
        vec = tl.load(ptr + offs_d, mask=live, other=0.0).to(tl.float32)
    else:
        vec = tl.zeros((BLOCK_D,), tl.float32)
    return vec


@triton.jit
def _zero_rows(rows_ptr, mask_d, length, BLOCK_D: tl.constexpr, CHUNK: tl.constexpr):
    """Write zeros to whole (channel, time) rows: the outputs of a skipped block."""
    offs_t = tl.arange(0, CHUNK)
    zeros = tl.zeros((BLOCK_D, CHUNK), tl.float32)
    for t0 in range(0, length, CHUNK):
        mask = mask_d[:, None] & (t0 + offs_t < length)[None, :]
        tl.store(rows_ptr[:, None] + t0 + offs_t[None, :], zeros, mask=mask)


@triton.jit
def _step(delta_ptrs, bias, live, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """One time step's delta (+ bias) before and after the softplus."""
    raw = tl.load(delta_ptrs, mask=live, other=0.0).to(tl.float32)
    if HAS_BIAS:
        raw += bias
    dt = softplus(raw) if SOFTPLUS else raw
    return raw, dt


@triton.jit
def _scan_fwd_kernel(
    u_ptr,
    delta_ptr,
    A_ptr,
    B_ptr,
    C_ptr,
    D_ptr,
    z_ptr,
    bias_ptr,
    alive_ptr,
    y_ptr,
    last_ptr,
    ckpt_ptr,
    d_inner,
    length,
    n_state,
    stride_u_b,
    stride_u_d,
    stride_u_l,
    stride_delta_b,
    stride_delta_d,
    stride_delta_l,
    stride_z_b,
    stride_z_d,
    stride_z_l,
    stride_B_b,
    stride_B_n,
    stride_B_l,
    stride_C_b,
    stride_C_n,
    stride_C_l,
    BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
    CHUNK: tl.constexpr,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    HAS_ALIVE: tl.constexpr,
):
    """y (batch, d, L) in u's dtype, last (batch, d, N) and ckpt (batch, n_chunks, d, N) in
    float32: the state before every chunk. Grid: (batch, cdiv(d_inner, BLOCK_D))."""
    pid_b = tl.program_id(0).to(tl.int64)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    mask_d = offs_d < d_inner
    mask_n = offs_n < n_state
    live = live_channels(alive_ptr, offs_d, d_inner, HAS_ALIVE)
    rows = pid_b * d_inner + offs_d
    state_offs = rows[:, None] * n_state + offs_n[None, :]
    mask_state = mask_d[:, None] & mask_n[None, :]
    if tl.max(live.to(tl.int32), axis=0) == 0:
        _zero_rows(y_ptr + rows * length, mask_d, length, BLOCK_D, CHUNK)
        tl.store(last_ptr + state_offs, tl.zeros((BLOCK_D, BLOCK_N), tl.float32), mask=mask_state)
        return

    mask_live = live[:, None] & mask_n[None, :]
    A = tl.load(A_ptr + offs_d[:, None] * n_state + offs_n[None, :], mask=mask_live, other=0.0)
    A = A.to(tl.float32)
    D = channel_vector(D_ptr, offs_d, live, HAS_D, BLOCK_D)
    bias = channel_vector(bias_ptr, offs_d, live, HAS_BIAS, BLOCK_D)
    u_rows = u_ptr + pid_b * stride_u_b + offs_d * stride_u_d
    delta_rows = delta_ptr + pid_b * stride_delta_b + offs_d * stride_delta_d
    if HAS_Z:
        z_rows = z_ptr + pid_b * stride_z_b + offs_d * stride_z_d
    B_cols = B_ptr + pid_b * stride_B_b + offs_n * stride_B_n
    C_cols = C_ptr + pid_b * stride_C_b + offs_n * stride_C_n
    n_chunks = tl.cdiv(length, CHUNK)
    h = tl.zeros((BLOCK_D, BLOCK_N), tl.float32)
    for t in range(length):
        if t % CHUNK == 0:
            chunk_offs = ((pid_b * n_chunks + t // CHUNK) * d_inner + offs_d[:, None]) * n_state
            tl.store(ckpt_ptr + chunk_offs + offs_n[None, :], h, mask=mask_state)
        u = tl.load(u_rows + t * stride_u_l, mask=live, other=0.0).to(tl.float32)
        _, dt = _step(delta_rows + t * stride_delta_l, bias, live, HAS_BIAS, SOFTPLUS)
        B = tl.load(B_cols + t * stride_B_l, mask=mask_n, other=0.0).to(tl.float32)
        C = tl.load(C_cols + t * stride_C_l, mask=mask_n, other=0.0).to(tl.float32)
        h = tl.exp(dt[:, None] * A) * h + (dt * u)[:, None] * B[None, :]
        y = tl.sum(h * C[None, :], axis=1)
        if HAS_D:
            y += D * u
        if HAS_Z:
            z = tl.load(z_rows + t * stride_z_l, mask=live, other=0.0).to(tl.float32)
            y *= z * tl.sigmoid(z)
        tl.store(y_ptr + rows * length + t, y, mask=mask_d)
    tl.store(last_ptr + state_offs, h, mask=mask_state)


@triton.jit
def _scan_bwd_kernel(
    u_ptr,
    delta_ptr,
    A_ptr,
    B_ptr,
    C_ptr,
    D_ptr,
    z_ptr,
    bias_ptr,
    alive_ptr,
    ckpt_ptr,
    grad_y_ptr,
    grad_last_ptr,
    scratch_ptr,
    du_ptr,
    ddelta_ptr,
    dz_ptr,
    dA_part_ptr,
    dB_part_ptr,
    dC_part_ptr,
    dD_part_ptr,
    dbias_part_ptr,
    d_inner,
    length,
    n_state,
    stride_u_b,
    stride_u_d,
    stride_u_l,
    stride_delta_b,
    stride_delta_d,
    stride_delta_l,
    stride_z_b,
    stride_z_d,
    stride_z_l,
    stride_B_b,
    stride_B_n,
    stride_B_l,
    stride_C_b,
    stride_C_n,
    stride_C_l,
    stride_gy_b,
    stride_gy_d,
    stride_gy_l,
    BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
    CHUNK: tl.constexpr,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    HAS_ALIVE: tl.constexpr,
    HAS_GRAD_LAST: tl.constexpr,
):
    """Gradients of _scan_fwd_kernel. du, ddelta, dz: (batch, d, L); partial sums the caller
    adds up (zero-initialised): dA_part (batch, d, N), dD_part and dbias_part (batch, d) over the
    batch, dB_part and dC_part (n_blocks, batch, L, N) over channel blocks. scratch holds
    CHUNK states of (BLOCK_D, BLOCK_N) per program."""
    pid_b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    mask_d = offs_d < d_inner
    mask_n = offs_n < n_state
    live = live_channels(alive_ptr, offs_d, d_inner, HAS_ALIVE)
    rows = pid_b * d_inner + offs_d
    mask_state = mask_d[:, None] & mask_n[None, :]
    if tl.max(live.to(tl.int32), axis=0) == 0:
        _zero_rows(du_ptr + rows * length, mask_d, length, BLOCK_D, CHUNK)
        _zero_rows(ddelta_ptr + rows * length, mask_d, length, BLOCK_D, CHUNK)
        if HAS_Z:
            _zero_rows(dz_ptr + rows * length, mask_d, length, BLOCK_D, CHUNK)
        return

    mask_live = live[:, None] & mask_n[None, :]
    state_offs = rows[:, None] * n_state + offs_n[None, :]
    A = tl.load(A_ptr + offs_d[:, None] * n_state + offs_n[None, :], mask=mask_live, other=0.0)
    A = A.to(tl.float32)
    D = channel_vector(D_ptr, offs_d, live, HAS_D, BLOCK_D)
    bias = channel_vector(bias_ptr, offs_d, live, HAS_BIAS, BLOCK_D)
    u_rows = u_ptr + pid_b * stride_u_b + offs_d * stride_u_d
    delta_rows = delta_ptr + pid_b * stride_delta_b + offs_d * stride_delta_d
    gy_rows = grad_y_ptr + pid_b * stride_gy_b + offs_d * stride_gy_d
    if HAS_Z:
        z_rows = z_ptr + pid_b * stride_z_b + offs_d * stride_z_d
    B_cols = B_ptr + pid_b * stride_B_b + offs_n * stride_B_n
    C_cols = C_ptr + pid_b * stride_C_b + offs_n * stride_C_n
    program = pid_b * tl.num_programs(1) + pid_d
    scratch = scratch_ptr + program * (CHUNK * BLOCK_D * BLOCK_N)
    scratch += tl.arange(0, BLOCK_D)[:, None] * BLOCK_N + offs_n[None, :]
    part_cols = (pid_d * tl.num_programs(0) + pid_b) * length * n_state + offs_n
    n_chunks = tl.cdiv(length, CHUNK)

    if HAS_GRAD_LAST:
        gh = tl.load(grad_last_ptr + state_offs, mask=mask_live, other=0.0).to(tl.float32)
    else:
        gh = tl.zeros((BLOCK_D, BLOCK_N), tl.float32)  # dL/dh_t, carried backwards
    dA = tl.zeros((BLOCK_D, BLOCK_N), tl.float32)
    dD = tl.zeros((BLOCK_D,), tl.float32)
    dbias = tl.zeros((BLOCK_D,), tl.float32)
    for k in range(n_chunks):
        chunk = n_chunks - 1 - k
        t0 = chunk * CHUNK
        span = tl.minimum(length - t0, CHUNK)
        chunk_offs = ((pid_b * n_chunks + chunk) * d_inner + offs_d[:, None]) * n_state
        h = tl.load(ckpt_ptr + chunk_offs + offs_n[None, :], mask=mask_live, other=0.0)
        tl.debug_barrier()  # the previous chunk's reads of scratch are done
        for i in range(span):  # recompute: scratch[i] = the state before step t0 + i
            t = t0 + i
            tl.store(scratch + i * (BLOCK_D * BLOCK_N), h)
            u = tl.load(u_rows + t * stride_u_l, mask=live, other=0.0).to(tl.float32)
            _, dt = _step(delta_rows + t * stride_delta_l, bias, live, HAS_BIAS, SOFTPLUS)
            B = tl.load(B_cols + t * stride_B_l, mask=mask_n, other=0.0).to(tl.float32)
            h = tl.exp(dt[:, None] * A) * h + (dt * u)[:, None] * B[None, :]
        tl.debug_barrier()  # this chunk's writes to scratch are visible
        for j in range(span):
            i = span - 1 - j
            t = t0 + i
            h_prev = tl.load(scratch + i * (BLOCK_D * BLOCK_N))
            u = tl.load(u_rows + t * stride_u_l, mask=live, other=0.0).to(tl.float32)
            raw, dt = _step(delta_rows + t * stride_delta_l, bias, live, HAS_BIAS, SOFTPLUS)
            B = tl.load(B_cols + t * stride_B_l, mask=mask_n, other=0.0).to(tl.float32)
            C = tl.load(C_cols + t * stride_C_l, mask=mask_n, other=0.0).to(tl.float32)
            g = tl.load(gy_rows + t * stride_gy_l, mask=live, other=0.0).to(tl.float32)
            decay = tl.exp(dt[:, None] * A)
            h = decay * h_prev + (dt * u)[:, None] * B[None, :]
            if HAS_Z:
                z = tl.load(z_rows + t * stride_z_l, mask=live, other=0.0).to(tl.float32)
                sig = tl.sigmoid(z)
                y = tl.sum(h * C[None, :], axis=1) + D * u  # before the gate
                dz = g * y * sig * (1.0 + z * (1.0 - sig))
                tl.store(dz_ptr + rows * length + t, dz, mask=mask_d)
                g *= z * sig  # now dL/dy before the gate
            gh += g[:, None] * C[None, :]
            tl.store(dC_part_ptr + part_cols + t * n_state, tl.sum(g[:, None] * h, 0), mask=mask_n)
            dB = tl.sum(gh * (dt * u)[:, None], 0)
            tl.store(dB_part_ptr + part_cols + t * n_state, dB, mask=mask_n)
            gh_B = tl.sum(gh * B[None, :], 1)
            g_decay = gh * decay * h_prev
            dA += g_decay * dt[:, None]
            ddt = tl.sum(g_decay * A, 1) + gh_B * u
            if SOFTPLUS:
                ddt *= tl.where(raw > 20.0, 1.0, tl.sigmoid(raw))
            dbias += ddt
            dD += g * u
            tl.store(du_ptr + rows * length + t, g * D + gh_B * dt, mask=mask_d)
            tl.store(ddelta_ptr + rows * length + t, ddt, mask=mask_d)
            gh *= decay
    tl.store(dA_part_ptr + state_offs, dA, mask=mask_state)
    if HAS_D:
        tl.store(dD_part_ptr + rows, dD, mask=mask_d)
    if HAS_BIAS:
        tl.store(dbias_part_ptr + rows, dbias, mask=mask_d)


def launch_shape(batch: int, d_inner: int, n_state: int) -> tuple[tuple[int, int], int, int]:
    """The grid (batch, channel blocks), the padded state size and num_warps for the kernels."""
    block_n = triton.next_power_of_2(max(n_state, 1))  # a compact layer may have no state
    num_warps = max(1, min(4, BLOCK_D * block_n // 128))
    return (batch, triton.cdiv(d_inner, BLOCK_D)), block_n, num_warps


def _strides(tensor: torch.Tensor | None, ndim: int) -> tuple[int, ...]:
    return (0,) * ndim if tensor is None else tensor.stride()


def alive_flags(alive: torch.Tensor | None) -> torch.Tensor | None:
    """alive as one byte per channel, as the kernels read it."""
    return None if alive is None else alive.to(torch.bool).contiguous().view(torch.uint8)


def _contiguous(tensor: torch.Tensor | None) -> torch.Tensor | None:
    return None if tensor is None else tensor.contiguous()


class _SelectiveScanTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, alive, softplus):
        batch, d_inner, length = u.shape
        n_state = A.shape[1]
        A, D, delta_bias, alive = map(_contiguous, (A, D, delta_bias, alive_flags(alive)))
        grid, block_n, num_warps = launch_shape(batch, d_inner, n_state)
        y = torch.empty(batch, d_inner, length, dtype=u.dtype, device=u.device)
        last = torch.empty(batch, d_inner, n_state, dtype=torch.float32, device=u.device)
        ckpt = torch.empty(
            batch,
            triton.cdiv(length, CHUNK),
            d_inner,
            n_state,
            dtype=torch.float32,
            device=u.device,
        )
        _scan_fwd_kernel[grid](
            u, delta, A, B, C, D, z, delta_bias, alive, y, last, ckpt,
            d_inner, length, n_state,
            *u.stride(), *delta.stride(), *_strides(z, 3), *B.stride(), *C.stride(),
            BLOCK_D=BLOCK_D, BLOCK_N=block_n, CHUNK=CHUNK,
            HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
            SOFTPLUS=softplus, HAS_ALIVE=alive is not None, num_warps=num_warps,
        )  # fmt: skip
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, alive, ckpt)
        ctx.softplus = softplus
        ctx.set_materialize_grads(False)
        return y, last

    @staticmethod
    def backward(ctx, grad_y, grad_last):
        u, delta, A, B, C, D, z, delta_bias, alive, ckpt = ctx.saved_tensors
        batch, d_inner, length = u.shape
        n_state = A.shape[1]
        grid, block_n, num_warps = launch_shape(batch, d_inner, n_state)
        if grad_y is None:  # only the last state was used
            grad_y = torch.zeros_like(u)
        grad_last = _contiguous(grad_last)
        device, f32 = u.device, torch.float32
        du = torch.empty(u.shape, dtype=u.dtype, device=device)
        ddelta = torch.empty(u.shape, dtype=delta.dtype, device=device)
        dz = None if z is None else torch.empty(u.shape, dtype=z.dtype, device=device)
        scratch = torch.empty(
            grid[0] * grid[1] * CHUNK * BLOCK_D * block_n, dtype=f32, device=device
        )
        dA_part = torch.zeros(batch, d_inner, n_state, dtype=f32, device=device)
        dB_part = torch.zeros(grid[1], batch, length, n_state, dtype=f32, device=device)
        dC_part = torch.zeros_like(dB_part)
        dD_part = torch.zeros(batch, d_inner, dtype=f32, device=device)
        dbias_part = torch.zeros_like(dD_part)
        _scan_bwd_kernel[grid](
            u, delta, A, B, C, D, z, delta_bias, alive, ckpt, grad_y, grad_last, scratch,
            du, ddelta, dz, dA_part, dB_part, dC_part, dD_part, dbias_part,
            d_inner, length, n_state,
            *u.stride(), *delta.stride(), *_strides(z, 3), *B.stride(), *C.stride(),
            *grad_y.stride(),
            BLOCK_D=BLOCK_D, BLOCK_N=block_n, CHUNK=CHUNK,
            HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
            SOFTPLUS=ctx.softplus, HAS_ALIVE=alive is not None,
            HAS_GRAD_LAST=grad_last is not None, num_warps=num_warps,
        )  # fmt: skip
        grads = (
            du,
            ddelta,
            dA_part.sum(0).to(A.dtype),
            dB_part.sum(0).transpose(1, 2).to(B.dtype),
            dC_part.sum(0).transpose(1, 2).to(C.dtype),
            None if D is None else dD_part.sum(0).to(D.dtype),
            dz,
            None if delta_bias is None else dbias_part.sum(0).to(delta_bias.dtype),
        )
        needed = ctx.needs_input_grad[: len(grads)]
        return (*(g if need else None for g, need in zip(grads, needed, strict=True)), None, None)


def selective_scan_triton(
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
    """The selective scan in Triton, differentiable, with selective_scan_reference's contract;
    blocks of BLOCK_D dead channels are skipped. Computes in float32; the last state is float32."""
    y, last = _SelectiveScanTriton.apply(u, delta, A, B, C, D, z, delta_bias, alive, delta_softplus)
    return (y, last) if return_last_state else y
