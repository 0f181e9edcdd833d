"""The registered selective-scan backends and where each runs.

reference: plain PyTorch, anywhere (the oracle). cpu: fused numba kernels, CPU tensors.
triton: autohm.kernels, CUDA tensors (and CPU tensors under TRITON_INTERPRET=1, for tests).
mamba_ssm: mamba_ssm's CUDA kernels when that package is installed, CUDA tensors only.
"auto" takes the highest priority that runs on the device: cpu on CPU tensors, triton on CUDA.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import torch

from autohm.ops.scan_cpu import selective_scan_cpu
from autohm.ops.scan_reference import selective_scan_reference, selective_state_update_reference
from autohm.ops.selective_scan import ScanBackend, register_backend


@functools.cache
def _installed(package: str) -> bool:
    """Whether `package` can be imported (also false when tests block it in sys.modules)."""
    try:
        return importlib.util.find_spec(package) is not None
    except (ValueError, ImportError):
        return False


def _triton_runs_on(device: torch.device) -> bool:
    if not _installed("triton"):
        return False
    return device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"


def _wants_grad(*tensors: torch.Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _triton_scan(*args, **kwargs):
    from autohm.kernels.selective_scan import selective_scan_triton

    return selective_scan_triton(*args, **kwargs)


def _triton_step(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False):
    """The Triton decoding step (inference only); with gradients required, the reference."""
    if _wants_grad(state, x, dt, A, B, C, D, z, dt_bias):
        return selective_state_update_reference(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus)
    from autohm.kernels.state_update import selective_state_update_triton

    return selective_state_update_triton(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus)


def _zero_dead(y, last, alive):
    if alive is None:
        return y, last
    keep = alive.to(torch.bool)[:, None]
    return torch.where(keep, y, 0.0), None if last is None else torch.where(keep, last, 0.0)


def _mamba_ssm_scan(
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
    """mamba_ssm's CUDA selective_scan_fn; dead channels are zeroed afterwards, not skipped."""
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    out = selective_scan_fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus, True)
    y, last = _zero_dead(*out, alive)
    return (y, last) if return_last_state else y


def _mamba_ssm_step(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False):
    """mamba_ssm's Triton state update (it updates in place, so on a copy)."""
    if _wants_grad(state, x, dt, A, B, C, D, z, dt_bias):
        return selective_state_update_reference(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus)
    from mamba_ssm.ops.triton.selective_state_update import selective_state_update

    new_state = state.clone()
    y = selective_state_update(new_state, x, dt, A, B, C, D, z, dt_bias, dt_softplus)
    return y, new_state


BACKENDS = (
    ScanBackend(
        "reference",
        selective_scan_reference,
        selective_state_update_reference,
        supports=lambda device: True,
        priority=0,
    ),
    ScanBackend(
        "cpu",
        selective_scan_cpu,
        selective_state_update_reference,  # one step is small: plain torch is enough
        supports=lambda device: device.type == "cpu",
        priority=20,
    ),
    ScanBackend("triton", _triton_scan, _triton_step, supports=_triton_runs_on, priority=15),
    ScanBackend(
        "mamba_ssm",
        _mamba_ssm_scan,
        _mamba_ssm_step,
        supports=lambda device: device.type == "cuda" and _installed("mamba_ssm"),
        priority=10,
    ),
)
for _backend in BACKENDS:
    register_backend(_backend)
