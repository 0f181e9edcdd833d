"""Numba kernels of the fused CPU selective scan: parallel over (batch, channel), sequential over
time, the state of one channel (d_state values) kept in a small local array.

Nothing of size (batch, d_inner, L, d_state) is ever allocated: the backward pass recomputes one
channel's states into a per-thread (L, d_state) scratch, then runs the reverse recurrence.
Layout: u, delta, z (batch, d_inner, L); A (d_inner, N); B, C (batch, L, N) — time-major, so
the N values of one step are contiguous and the inner loops vectorise.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

_JIT = dict(parallel=True, fastmath=True, cache=True, nogil=True)


@numba.njit(inline="always", fastmath=True)
def _step_size(raw, softplus):
    """softplus(raw) with torch's threshold of 20, or raw."""
    if softplus and raw <= 20.0:
        return math.log1p(math.exp(raw))
    return raw


@numba.njit(**_JIT)
def scan_forward(u, delta, A, B, C, D, z, bias, alive, softplus, has_z, out, last):
    """Fill out (batch, d_inner, L) and last (batch, d_inner, N), both zero-initialised; dead
    channels (alive false) are skipped and stay zero."""
    n_batch, n_chan, length = u.shape
    n_state = A.shape[1]
    for job in prange(n_batch * n_chan):
        b, d = job // n_chan, job % n_chan
        if not alive[d]:
            continue  # out and last are zero-initialised
        h = np.zeros(n_state, dtype=last.dtype)
        for t in range(length):
            dt = _step_size(delta[b, d, t] + bias[d], softplus)
            ut = u[b, d, t]
            drive = dt * ut
            y = 0.0
            for n in range(n_state):
                h[n] = math.exp(dt * A[d, n]) * h[n] + drive * B[b, t, n]
                y += h[n] * C[b, t, n]
            y += D[d] * ut
            if has_z:
                zt = z[b, d, t]
                y *= zt / (1.0 + math.exp(-zt))
            out[b, d, t] = y
        last[b, d, :] = h


@numba.njit(**_JIT)
def scan_backward(
    u, delta, A, B, C, D, z, bias, alive, softplus, has_z, grad_out, grad_last, n_chunks,
    du, ddelta, dz, dA_part, dB_part, dC_part, dD_part, dbias_part,
):
    """Gradients of every input. Reductions over channels (dB, dC) go to per-chunk partial sums
    (chunk, batch, L, N); over the batch (dA, dD, dbias) to per-batch partials (batch, ...)."""
    n_batch, n_chan, length = u.shape
    n_state = A.shape[1]
    per_chunk = (n_chan + n_chunks - 1) // n_chunks
    for job in prange(n_batch * n_chunks):
        b, chunk = job // n_chunks, job % n_chunks
        states = np.empty((length, n_state), dtype=dA_part.dtype)
        decays = np.empty((length, n_state), dtype=dA_part.dtype)
        steps = np.empty(length, dtype=dA_part.dtype)
        y_pre = np.empty(length, dtype=dA_part.dtype)
        gh = np.empty(n_state, dtype=dA_part.dtype)
        for d in range(chunk * per_chunk, min(n_chan, (chunk + 1) * per_chunk)):
            if not alive[d]:
                continue  # every gradient buffer is zero-initialised
            # forward again, keeping this channel's states, decays, step sizes and gate inputs
            for n in range(n_state):
                gh[n] = 0.0
            for t in range(length):
                dt = _step_size(delta[b, d, t] + bias[d], softplus)
                steps[t] = dt
                drive = dt * u[b, d, t]
                y = 0.0
                for n in range(n_state):
                    decay = math.exp(dt * A[d, n])
                    gh[n] = decay * gh[n] + drive * B[b, t, n]
                    decays[t, n] = decay
                    states[t, n] = gh[n]
                    y += gh[n] * C[b, t, n]
                y_pre[t] = y + D[d] * u[b, d, t]
            # reverse: gh holds dL/dh_t, accumulated from the future through the decays
            for n in range(n_state):
                gh[n] = grad_last[b, d, n]
            grad_D = 0.0
            grad_bias = 0.0
            for t in range(length - 1, -1, -1):
                g = grad_out[b, d, t]
                ut = u[b, d, t]
                dt = steps[t]
                if has_z:
                    zt = z[b, d, t]
                    sig = 1.0 / (1.0 + math.exp(-zt))
                    dz[b, d, t] = g * y_pre[t] * sig * (1.0 + zt * (1.0 - sig))
                    g = g * zt * sig
                grad_D += g * ut
                grad_u = g * D[d]
                grad_dt = 0.0
                for n in range(n_state):
                    gh[n] += g * C[b, t, n]
                    dC_part[chunk, b, t, n] += g * states[t, n]
                    h_prev = states[t - 1, n] if t > 0 else 0.0
                    grad_decay = gh[n] * decays[t, n] * h_prev  # d/d(dt*A) of exp(dt*A) h_prev
                    grad_dt += grad_decay * A[d, n] + gh[n] * B[b, t, n] * ut
                    dA_part[b, d, n] += grad_decay * dt
                    dB_part[chunk, b, t, n] += gh[n] * dt * ut
                    grad_u += gh[n] * dt * B[b, t, n]
                    gh[n] *= decays[t, n]
                if softplus:
                    raw = delta[b, d, t] + bias[d]
                    if raw <= 20.0:
                        grad_dt *= 1.0 / (1.0 + math.exp(-raw))
                du[b, d, t] = grad_u
                ddelta[b, d, t] = grad_dt
                grad_bias += grad_dt
            dD_part[b, d] = grad_D
            dbias_part[b, d] = grad_bias


def default_chunks(n_batch: int, n_chan: int) -> int:
    """Channel chunks per batch row for the backward: enough jobs to keep every thread busy."""
    jobs_wanted = 2 * numba.get_num_threads()
    return max(1, min(n_chan, -(-jobs_wanted // n_batch)))
