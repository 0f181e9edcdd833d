"""backend="cpu": the fused selective scan on CPU tensors — numba kernels (scan_cpu_kernels)
under a custom autograd Function. Float32 and float64; other dtypes compute in float32."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from autohm.ops import scan_cpu_kernels as kernels
from autohm.ops.scan_reference import _compute_dtype


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().contiguous().numpy()


def _block_alive(alive: torch.Tensor, d_inner: int) -> torch.Tensor:
    """One flag per kernel block of channels: true when any channel in it is alive."""
    n_blocks = -(-d_inner // kernels.BLOCK)
    padded = F.pad(alive, (0, n_blocks * kernels.BLOCK - d_inner))
    return padded.view(n_blocks, kernels.BLOCK).any(dim=1)


class _SelectiveScanCPU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, bias, alive, softplus):
        n_batch, d_inner, length = u.shape
        n_state = A.shape[1]
        alive_block = _block_alive(alive, d_inner)
        # contiguous inputs: the tensors themselves (detach shares the version counter, so an
        # in-place change before the backward is still caught), the others copied once here
        tensors = [x.detach().contiguous() for x in (u, delta, A, B, C, D, z, bias, alive)]
        tensors.append(alive_block)
        inputs = [tensor.numpy() for tensor in tensors]
        # the kernels write every output (zeros for dead channels), so none is initialised
        out = np.empty((n_batch, d_inner, length), dtype=inputs[0].dtype)
        last = np.empty((n_batch, d_inner, n_state), dtype=out.dtype)
        checkpoints = np.empty(  # read back for alive blocks only
            (n_batch, -(-length // kernels.CHUNK), n_state, d_inner), dtype=out.dtype
        )
        kernels.scan_forward(*inputs, softplus, z.shape[-1] > 0, out, last, checkpoints)
        ctx.save_for_backward(*tensors, torch.from_numpy(checkpoints))
        ctx.softplus = softplus
        return torch.from_numpy(out), torch.from_numpy(last)

    @staticmethod
    def backward(ctx, grad_out, grad_last):
        u, delta, A, B, C, D, z, bias, alive, alive_block, checkpoints = ctx.saved_tensors
        n_batch, d_inner, length = u.shape
        n_state, n_blocks = A.shape[1], alive_block.shape[0]
        has_z = z.shape[-1] > 0
        dtype = _numpy(u).dtype
        du, ddelta, dz = (np.empty(x.shape, dtype) for x in (u, u, z))
        dA_part = np.empty((n_batch, d_inner, n_state), dtype)
        dB_part = np.empty((n_blocks, n_batch, n_state, length), dtype)
        dC_part = np.empty((n_blocks, n_batch, n_state, length), dtype)
        dD_part = np.empty((n_batch, d_inner), dtype)
        dbias_part = np.empty((n_batch, d_inner), dtype)
        if grad_last is None:
            grad_last = torch.zeros(n_batch, d_inner, n_state, dtype=u.dtype)
        kernels.scan_backward(
            *map(_numpy, (u, delta, A, B, C, D, z, bias, alive, alive_block)),
            ctx.softplus,
            has_z,
            _numpy(checkpoints),
            _numpy(grad_out.to(u.dtype)),
            _numpy(grad_last.to(u.dtype)),
            du,
            ddelta,
            dz,
            dA_part,
            dB_part,
            dC_part,
            dD_part,
            dbias_part,
        )
        grads = [
            du,
            ddelta,
            dA_part.sum(0),
            dB_part.sum(0),
            dC_part.sum(0),
            dD_part.sum(0),
            dz if has_z else None,
            dbias_part.sum(0),
        ]
        return (
            *(None if g is None else torch.from_numpy(np.ascontiguousarray(g)) for g in grads),
            None,
            None,
        )


def selective_scan_cpu(
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
    """The fused CPU scan, with selective_scan_reference's contract. Blocks of dead channels
    (alive false) are skipped; dead channels' outputs, states and gradients are exactly 0."""
    compute = _compute_dtype(u.dtype)
    d_inner = u.shape[1]
    zeros = u.new_zeros(d_inner, dtype=compute)
    y, last = _SelectiveScanCPU.apply(
        u.to(compute),
        delta.to(compute),
        A.to(compute),
        B.to(compute),
        C.to(compute),
        zeros if D is None else D.to(compute),
        u.new_zeros(0, 0, 0, dtype=compute) if z is None else z.to(compute),
        zeros if delta_bias is None else delta_bias.to(compute),
        torch.ones(d_inner, dtype=torch.bool) if alive is None else alive.to(torch.bool),
        delta_softplus,
    )
    y = y.to(u.dtype)
    return (y, last) if return_last_state else y
