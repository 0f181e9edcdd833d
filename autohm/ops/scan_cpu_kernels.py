"""Numba kernels of the fused CPU selective scan (forward and backward, everything fused:
delta_bias and softplus, the recurrence, the D skip, the SiLU(z) gate, dead channels).

Work is split into jobs of (batch row, block of BLOCK channels), run in parallel; inside a job
time runs sequentially, CHUNK steps at a time. Each chunk is copied (transposed) into small
time-major tiles, so the innermost loops run over the block's contiguous channels and compile
to SIMD code; exp and log1p are polynomials the compiler can vectorise (libm's cannot be).

Nothing of size (batch, d_inner, L, N) is allocated: the forward keeps one (N, BLOCK) state per
job and saves it at the start of every chunk; the backward recomputes one chunk at a time from
those checkpoints into a (CHUNK + 1, N, BLOCK) scratch, then runs the reverse recurrence.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.extending import intrinsic, overload

from autohm.cache import cached_njit

BLOCK = 64  # channels per job: four AVX-512 / eight AVX2 float32 vectors
CHUNK = 16  # time steps per tile and between saved states

_JIT = dict(parallel=True, fastmath=True, nogil=True, error_model="numpy")
_INLINE = dict(fastmath=True, error_model="numpy")


@intrinsic
def _int32_bits_as_float32(typingctx, bits):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float32))

    return types.float32(types.int32), codegen


@intrinsic
def _prefetch(typingctx, address):
    """Ask the cache for the line at an address (never faults; a hint, no result)."""

    def codegen(context, builder, signature, args):
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        prefetch = builder.module.declare_intrinsic("llvm.prefetch", fnty=fnty)
        # read, keep in all cache levels, data cache
        builder.call(prefetch, [builder.inttoptr(args[0], i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(types.intp), codegen


@numba.njit(fastmath=True, error_model="numpy")
def _exp_float32(x):
    """expf as 2^k e^r: k = round(x / ln 2), r = x - k ln 2 in two parts (Cody-Waite), e^r by a
    degree-5 minimax polynomial on [-ln2/2, ln2/2] (relative error < 3e-7, exactly 1 at 0);
    0 below -88, finite above 88."""
    xc = min(max(x, np.float32(-88.0)), np.float32(88.0))
    k = np.floor(xc * np.float32(1.4426950408889634) + np.float32(0.5))
    r = xc - k * np.float32(0.693359375) + k * np.float32(2.12194440e-4)
    p = np.float32(0.008290303871035576)
    p = p * r + np.float32(0.041897907853126526)
    p = p * r + np.float32(0.1666763573884964)
    p = p * r + np.float32(0.4999915063381195)
    p = p * r + np.float32(0.9999997019767761)
    p = p * r + np.float32(1.0)
    scale = _int32_bits_as_float32(np.int32((np.int32(k) + np.int32(127)) << np.int32(23)))
    return p * scale


@numba.njit(fastmath=True, error_model="numpy")
def _log1p_unit_float32(e):
    """log(1 + e) for e in [0, 1]: 2 atanh(s), s = e / (2 + e) <= 1/3, odd series to s^13."""
    s = e / (np.float32(2.0) + e)
    s2 = s * s
    p = np.float32(1.0 / 13.0)
    p = p * s2 + np.float32(1.0 / 11.0)
    p = p * s2 + np.float32(1.0 / 9.0)
    p = p * s2 + np.float32(1.0 / 7.0)
    p = p * s2 + np.float32(1.0 / 5.0)
    p = p * s2 + np.float32(1.0 / 3.0)
    p = p * s2 + np.float32(1.0)
    return np.float32(2.0) * s * p


def fast_exp(x):
    """exp in the kernels: the vectorisable polynomial for float32, libm's for float64."""
    return math.exp(x)


def log1p_unit(e):
    """log(1 + e) for e in [0, 1] in the kernels: a series for float32, libm's for float64."""
    return math.log1p(e)


@overload(fast_exp, fastmath=True, error_model="numpy")
def _fast_exp_typed(x):
    if x == types.float32:
        return lambda x: _exp_float32(x)
    return lambda x: math.exp(x)


@overload(log1p_unit, fastmath=True, error_model="numpy")
def _log1p_unit_typed(e):
    if e == types.float32:
        return lambda e: _log1p_unit_float32(e)
    return lambda e: math.log1p(e)


@numba.njit(fastmath=True, error_model="numpy")
def _softplus(x):
    """log(1 + e^x) = max(x, 0) + log1p(e^-|x|), stable everywhere and branch-free. (torch
    returns x itself above 20; the two differ by less than 2.1e-9 there.)"""
    return max(x, np.float32(0.0)) + log1p_unit(fast_exp(-abs(x)))


@numba.njit(fastmath=True, error_model="numpy")
def _sigmoid(x):
    # float32 literals keep float32 math in float32 and widen exactly in float64
    return np.float32(1.0) / (np.float32(1.0) + fast_exp(-x))


@numba.njit(**_INLINE)
def _tile(dtype):
    """A (CHUNK, BLOCK) time-major scratch tile."""
    return np.zeros((CHUNK, BLOCK), dtype)


@numba.njit(**_INLINE)
def _prefetch_rows(array, b, d0, w, t):
    """Prefetch array[b, d0 : d0 + w, t]: the next chunk's line of each of the block's rows.
    With several (batch, d, L) arrays walked a chunk at a time, the hardware prefetchers lose
    track of that many strided streams; asking one chunk ahead halves the cost of the copies."""
    if 0 <= t < array.shape[2]:
        row0 = array.ctypes.data + b * array.strides[0] + d0 * array.strides[1]
        for c in range(w):
            _prefetch(row0 + c * array.strides[1] + t * array.strides[2])


@numba.njit(**_INLINE)
def _load(src, b, d0, w, t0, span, tile, ahead):
    """tile[i, c] = src[b, d0 + c, t0 + i]: a (channel, time) slab made time-major; the chunk
    at `ahead` is prefetched."""
    _prefetch_rows(src, b, d0, w, ahead)
    if w == BLOCK and span == CHUNK:  # constant trip counts: unrolled and scheduled well
        for c in range(BLOCK):
            for i in range(CHUNK):
                tile[i, c] = src[b, d0 + c, t0 + i]
    else:
        for c in range(w):
            for i in range(span):
                tile[i, c] = src[b, d0 + c, t0 + i]


@numba.njit(**_INLINE)
def _store(tile, keep, b, d0, w, t0, span, dst, ahead):
    """dst[b, d0 + c, t0 + i] = tile[i, c] for the alive channels c, 0 for the dead ones (dst
    need not be initialised); the chunk at `ahead` is prefetched."""
    _prefetch_rows(dst, b, d0, w, ahead)
    if w == BLOCK and span == CHUNK:
        for c in range(BLOCK):
            for i in range(CHUNK):
                dst[b, d0 + c, t0 + i] = tile[i, c] if keep[c] != 0 else keep[c]  # 0 there
    else:
        for c in range(w):
            for i in range(span):
                dst[b, d0 + c, t0 + i] = tile[i, c] if keep[c] != 0 else keep[c]  # 0 there


@numba.njit(**_INLINE)
def _block_params(A, D, bias, alive, d0, w, dtype):
    """The block's A (transposed to (N, BLOCK)), D, delta_bias and alive flags; padding lanes
    stay zero, which makes them inert (zero step, zero input, zero gradient)."""
    a = np.zeros((A.shape[1], BLOCK), dtype)
    d_skip, bias_tile, keep = np.zeros(BLOCK, dtype), np.zeros(BLOCK, dtype), np.zeros(BLOCK, dtype)
    for c in range(w):
        for n in range(A.shape[1]):
            a[n, c] = A[d0 + c, n]
        d_skip[c] = D[d0 + c]
        bias_tile[c] = bias[d0 + c]
        keep[c] = 1 if alive[d0 + c] else 0
    return a, d_skip, bias_tile, keep


@numba.njit(**_INLINE)
def _load_raw_steps(delta, bias_tile, b, d0, w, t0, span, raw, ahead):
    """raw = delta + delta_bias for one chunk, time-major."""
    _load(delta, b, d0, w, t0, span, raw, ahead)
    for i in range(span):
        for c in range(BLOCK):
            raw[i, c] += bias_tile[c]


@numba.njit(**_INLINE)
def _softplus_tile(raw, span, step):
    for i in range(span):
        for c in range(BLOCK):
            step[i, c] = _softplus(raw[i, c])


@numba.njit(**_INLINE)
def _gate(y, z, b, d0, w, t0, span, zt, ahead):
    """y *= silu(z) over one chunk (z loaded into the tile zt)."""
    _load(z, b, d0, w, t0, span, zt, ahead)
    for i in range(span):
        for c in range(BLOCK):
            y[i, c] *= zt[i, c] * _sigmoid(zt[i, c])


@cached_njit(**_JIT)
def scan_forward(
    u, delta, A, B, C, D, z, bias, alive, alive_block, softplus, has_z, out, last, checkpoints
):
    """out = (C . h + D u) * silu(z), h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t, dt = softplus(
    delta + bias). u, delta, z, out: (batch, d, L); A: (d, N); B, C: (batch, N, L); D, bias,
    alive: (d,); alive_block: (n_blocks,); last: (batch, d, N); checkpoints: (batch, n_chunks,
    N, d), the state before each chunk. Dead blocks are skipped: out and last get zeros there
    (written by the job, in parallel); no output needs initialising."""
    n_batch, n_chan, length = u.shape
    n_state = A.shape[1]
    n_blocks = alive_block.shape[0]
    dtype = out.dtype
    for job in prange(n_batch * n_blocks):
        b, block = job // n_blocks, job % n_blocks
        d0 = block * BLOCK
        w = min(BLOCK, n_chan - d0)
        if not alive_block[block]:
            out[b, d0 : d0 + w] = 0
            last[b, d0 : d0 + w] = 0
            continue
        a, d_skip, bias_tile, keep = _block_params(A, D, bias, alive, d0, w, dtype)
        h = np.zeros((n_state, BLOCK), dtype)
        x, raw, step, y, zt = _tile(dtype), _tile(dtype), _tile(dtype), _tile(dtype), _tile(dtype)
        for t0 in range(0, length, CHUNK):
            span = min(CHUNK, length - t0)
            checkpoints[b, t0 // CHUNK, :, d0 : d0 + w] = h[:, :w]
            _load(u, b, d0, w, t0, span, x, t0 + CHUNK)
            _load_raw_steps(delta, bias_tile, b, d0, w, t0, span, raw, t0 + CHUNK)
            if softplus:
                _softplus_tile(raw, span, step)  # not in place: aliasing stops vectorisation
            else:
                step[:span] = raw[:span]
            for i in range(span):
                for c in range(BLOCK):
                    y[i, c] = d_skip[c] * x[i, c]
                for n in range(n_state):
                    b_tn, c_tn = B[b, n, t0 + i], C[b, n, t0 + i]
                    for c in range(BLOCK):
                        h_new = (
                            fast_exp(step[i, c] * a[n, c]) * h[n, c] + step[i, c] * x[i, c] * b_tn
                        )
                        h[n, c] = h_new
                        y[i, c] += h_new * c_tn
            if has_z:
                _gate(y, z, b, d0, w, t0, span, zt, t0 + CHUNK)
            _store(y, keep, b, d0, w, t0, span, out, t0 + CHUNK)
        for c in range(w):
            for n in range(n_state):
                last[b, d0 + c, n] = h[n, c] * keep[c]


@cached_njit(**_JIT)
def scan_backward(
    u,
    delta,
    A,
    B,
    C,
    D,
    z,
    bias,
    alive,
    alive_block,
    softplus,
    has_z,
    checkpoints,
    grad_out,
    grad_last,
    du,
    ddelta,
    dz,
    dA_part,
    dB_part,
    dC_part,
    dD_part,
    dbias_part,
):
    """Gradients of scan_forward. du, ddelta, dz: (batch, d, L); reductions go to partial sums
    the caller adds up: dA_part (batch, d, N), dD_part and dbias_part (batch, d) over the batch;
    dB_part, dC_part (n_blocks, batch, N, L) over channel blocks. As in scan_forward, a dead
    block's job writes zeros to its parts of the outputs; no output needs initialising."""
    n_batch, n_chan, length = u.shape
    n_state = A.shape[1]
    n_blocks = alive_block.shape[0]
    dtype = du.dtype
    for job in prange(n_batch * n_blocks):
        b, block = job // n_blocks, job % n_blocks
        d0 = block * BLOCK
        w = min(BLOCK, n_chan - d0)
        if not alive_block[block]:
            du[b, d0 : d0 + w] = 0
            ddelta[b, d0 : d0 + w] = 0
            if has_z:
                dz[b, d0 : d0 + w] = 0
            dA_part[b, d0 : d0 + w] = 0
            dB_part[block, b] = 0
            dC_part[block, b] = 0
            dD_part[b, d0 : d0 + w] = 0
            dbias_part[b, d0 : d0 + w] = 0
            continue
        a, d_skip, bias_tile, keep = _block_params(A, D, bias, alive, d0, w, dtype)
        gh, ga = np.zeros((n_state, BLOCK), dtype), np.zeros((n_state, BLOCK), dtype)
        x, raw, step, zt = _tile(dtype), _tile(dtype), _tile(dtype), _tile(dtype)
        g, sx, gu, gstep, gz = _tile(dtype), _tile(dtype), _tile(dtype), _tile(dtype), _tile(dtype)
        states = np.zeros((CHUNK + 1, n_state, BLOCK), dtype)
        decays = np.zeros((CHUNK, n_state, BLOCK), dtype)
        g_skip, g_bias = np.zeros(BLOCK, dtype), np.zeros(BLOCK, dtype)
        y_pre, g_gated = np.zeros(BLOCK, dtype), np.zeros(BLOCK, dtype)
        sum_a, sum_b = np.zeros(BLOCK, dtype), np.zeros(BLOCK, dtype)
        zero = y_pre[0]  # a zero of the compute dtype, for the accumulators
        for c in range(w):
            for n in range(n_state):
                gh[n, c] = grad_last[b, d0 + c, n] * keep[c]
        for t0 in range((length - 1) // CHUNK * CHUNK, -1, -CHUNK):
            span = min(CHUNK, length - t0)
            _load(u, b, d0, w, t0, span, x, t0 - CHUNK)
            _load_raw_steps(delta, bias_tile, b, d0, w, t0, span, raw, t0 - CHUNK)
            if softplus:
                _softplus_tile(raw, span, step)
            else:
                step[:span] = raw[:span]
            if has_z:
                _load(z, b, d0, w, t0, span, zt, t0 - CHUNK)
            _load(grad_out, b, d0, w, t0, span, g, t0 - CHUNK)
            states[0, :, :w] = checkpoints[b, t0 // CHUNK, :, d0 : d0 + w]
            for i in range(span):  # recompute the chunk's states; g becomes dL/dy before the gate
                for c in range(BLOCK):
                    g_gated[c] = g[i, c] * keep[c]
                    sx[i, c] = step[i, c] * x[i, c]
                    y_pre[c] = d_skip[c] * x[i, c]
                if has_z:
                    for c in range(BLOCK):
                        g[i, c] = g_gated[c] * zt[i, c] * _sigmoid(zt[i, c])
                else:
                    g[i, :] = g_gated
                for n in range(n_state):
                    b_tn, c_tn = B[b, n, t0 + i], C[b, n, t0 + i]
                    acc_c = zero
                    for c in range(BLOCK):
                        decay = fast_exp(step[i, c] * a[n, c])
                        decays[i, n, c] = decay
                        h_new = decay * states[i, n, c] + sx[i, c] * b_tn
                        states[i + 1, n, c] = h_new
                        y_pre[c] += h_new * c_tn
                        acc_c += g[i, c] * h_new
                    dC_part[block, b, n, t0 + i] = acc_c
                if has_z:
                    for c in range(BLOCK):
                        sig = _sigmoid(zt[i, c])
                        gz[i, c] = g_gated[c] * y_pre[c] * sig * (1 + zt[i, c] * (1 - sig))
                for c in range(BLOCK):
                    g_skip[c] += g[i, c] * x[i, c]
            for i in range(span - 1, -1, -1):
                sum_a[:] = 0  # sum over n of dL/d(decay argument) * A
                sum_b[:] = 0  # sum over n of dL/dh_t * B_t
                for n in range(n_state):
                    b_tn, c_tn = B[b, n, t0 + i], C[b, n, t0 + i]
                    acc_b = zero
                    for c in range(BLOCK):
                        gh_t = gh[n, c] + g[i, c] * c_tn  # dL/dh_t
                        g_decay = gh_t * decays[i, n, c] * states[i, n, c]
                        sum_a[c] += g_decay * a[n, c]
                        sum_b[c] += gh_t * b_tn
                        ga[n, c] += g_decay * step[i, c]
                        acc_b += gh_t * sx[i, c]
                        gh[n, c] = gh_t * decays[i, n, c]
                    dB_part[block, b, n, t0 + i] = acc_b
                for c in range(BLOCK):
                    gu[i, c] = g[i, c] * d_skip[c] + step[i, c] * sum_b[c]
                    gstep[i, c] = sum_a[c] + x[i, c] * sum_b[c]
                if softplus:
                    for c in range(BLOCK):
                        gstep[i, c] *= _sigmoid(raw[i, c])
                for c in range(BLOCK):
                    g_bias[c] += gstep[i, c]
            _store(gu, keep, b, d0, w, t0, span, du, t0 - CHUNK)
            _store(gstep, keep, b, d0, w, t0, span, ddelta, t0 - CHUNK)
            if has_z:
                _store(gz, keep, b, d0, w, t0, span, dz, t0 - CHUNK)
        for c in range(w):
            for n in range(n_state):
                dA_part[b, d0 + c, n] = ga[n, c]
            dD_part[b, d0 + c] = g_skip[c]
            dbias_part[b, d0 + c] = g_bias[c]
