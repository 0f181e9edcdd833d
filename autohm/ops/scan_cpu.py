"""backend="cpu": the fused selective scan on CPU tensors (numba kernels in scan_cpu_kernels),
with a custom autograd backward. Float32 and float64; other dtypes compute in float32."""

from __future__ import annotations

import numpy as np
import torch

from autohm.ops import scan_cpu_kernels as kernels
from autohm.ops.scan_reference import selective_state_update_reference


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _arrays(u, delta, A, B, C, D, z, delta_bias, alive):
    """Contiguous numpy views in the compute dtype, B and C time-major, defaults filled in."""
    dtype = _compute_dtype(u.dtype)
    d_inner = u.shape[1]

    def arr(t):
        return t.detach().to(dtype).contiguous().numpy()

    zeros = torch.zeros(d_inner, dtype=dtype)
    return dict(
        u=arr(u),
        delta=arr(delta),
        A=arr(A),
        B=arr(B.transpose(1, 2)),
        C=arr(C.transpose(1, 2)),
        D=arr(D if D is not None else zeros),
        z=arr(z) if z is not None else np.zeros((1, 1, 1), dtype=arr(zeros).dtype),
        bias=arr(delta_bias if delta_bias is not None else zeros),
        alive=(
            np.ones(d_inner, dtype=np.bool_)
            if alive is None
            else alive.detach().to(torch.bool).contiguous().numpy()
        ),
    )


class _SelectiveScanCPU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, alive, softplus):
        a = _arrays(u, delta, A, B, C, D, z, delta_bias, alive)
        out = np.zeros_like(a["u"])
        last = np.zeros((u.shape[0], u.shape[1], A.shape[1]), dtype=a["u"].dtype)
        kernels.scan_forward(**a, softplus=softplus, has_z=z is not None, out=out, last=last)
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, alive)
        ctx.softplus = softplus
        return torch.from_numpy(out).to(u.dtype), torch.from_numpy(last)

    @staticmethod
    def backward(ctx, grad_out, grad_last):
        u, delta, A, B, C, D, z, delta_bias, alive = ctx.saved_tensors
        a = _arrays(u, delta, A, B, C, D, z, delta_bias, alive)
        dtype = a["u"].dtype
        n_batch, n_chan, length = u.shape
        n_state = A.shape[1]
        n_chunks = kernels.default_chunks(n_batch, n_chan)
        grads = dict(
            du=np.zeros_like(a["u"]),
            ddelta=np.zeros_like(a["u"]),
            dz=np.zeros_like(a["u"]) if z is not None else np.zeros((1, 1, 1), dtype),
            dA_part=np.zeros((n_batch, n_chan, n_state), dtype),
            dB_part=np.zeros((n_chunks, n_batch, length, n_state), dtype),
            dC_part=np.zeros((n_chunks, n_batch, length, n_state), dtype),
            dD_part=np.zeros((n_batch, n_chan), dtype),
            dbias_part=np.zeros((n_batch, n_chan), dtype),
        )
        g_out = grad_out.to(_compute_dtype(u.dtype)).contiguous().numpy()
        g_last = (
            np.zeros((n_batch, n_chan, n_state), dtype)
            if grad_last is None
            else grad_last.to(_compute_dtype(u.dtype)).contiguous().numpy()
        )
        kernels.scan_backward(
            **a, softplus=ctx.softplus, has_z=z is not None, grad_out=g_out, grad_last=g_last,
            n_chunks=n_chunks, **grads,
        )
        g = {k: torch.from_numpy(v) for k, v in grads.items()}

        def like(tensor, grad):
            return None if tensor is None else grad.to(tensor.dtype)

        return (
            like(u, g["du"]),
            like(delta, g["ddelta"]),
            like(A, g["dA_part"].sum(0)),
            like(B, g["dB_part"].sum(0).transpose(1, 2)),
            like(C, g["dC_part"].sum(0).transpose(1, 2)),
            like(D, g["dD_part"].sum(0)),
            like(z, g["dz"]),
            like(delta_bias, g["dbias_part"].sum(0)),
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
    """The fused CPU scan; same contract as selective_scan_reference. `alive` (d_inner, bool):
    dead channels are skipped and their outputs and gradients are exactly zero."""
    y, last = _SelectiveScanCPU.apply(u, delta, A, B, C, D, z, delta_bias, alive, delta_softplus)
    return (y, last) if return_last_state else y


selective_state_update_cpu = selective_state_update_reference
