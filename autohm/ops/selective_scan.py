"""`selective_scan`, `selective_state_update` and the registry of backends that compute them.

Every backend has the semantics and shapes of mamba_ssm's selective_scan_fn and
selective_state_update and is differentiable; "auto" picks the highest-priority backend that can
run on the tensors' device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from autohm.errors import AutohmError


@dataclass(frozen=True)
class ScanBackend:
    """One implementation of the scan (full sequence) and the state update (one decoding step),
    and where it can run."""

    name: str
    scan: Callable[..., torch.Tensor | tuple[torch.Tensor, torch.Tensor]]
    step: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    supports: Callable[[torch.device], bool]
    priority: int


_BACKENDS: dict[str, ScanBackend] = {}


def register_backend(backend: ScanBackend) -> None:
    """Add a backend; "auto" prefers higher priority among those that support the device."""
    if backend.name == "auto":
        raise ValueError("'auto' is reserved for backend selection")
    _BACKENDS[backend.name] = backend


def unregister_backend(name: str) -> None:
    """Remove a backend added for a while (autohm.measure traces with one); no error if absent."""
    _BACKENDS.pop(name, None)


def available_backends(device: torch.device | str | None = None) -> list[str]:
    """Registered backend names, best first; only those that run on `device` when given."""
    ranked = sorted(_BACKENDS.values(), key=lambda b: -b.priority)
    if device is None:
        return [b.name for b in ranked]
    device = torch.device(device)
    return [b.name for b in ranked if b.supports(device)]


def check_backend_name(name: str) -> None:
    """A clear error listing the registered backends when `name` is none of them nor "auto"."""
    if name != "auto" and name not in _BACKENDS:
        known = ", ".join(["auto", *available_backends()])
        raise AutohmError(f"unknown scan backend {name!r}; available: {known}")


def resolve_backend(name: str, device: torch.device | str) -> ScanBackend:
    """The backend called `name` ("auto": the best one for `device`); a clear error otherwise."""
    device = torch.device(device)
    if name == "auto":
        usable = available_backends(device)
        if not usable:
            raise AutohmError(f"no selective-scan backend runs on device {device}")
        return _BACKENDS[usable[0]]
    check_backend_name(name)
    backend = _BACKENDS[name]
    if not backend.supports(device):
        usable = ", ".join(available_backends(device)) or "none"
        raise AutohmError(
            f"scan backend {name!r} cannot run on device {device}; usable there: {usable}"
        )
    return backend


def _check_shapes(u, delta, A, B, C, D, z, delta_bias, alive) -> None:
    if u.dim() != 3:
        raise ValueError(f"u must be (batch, d_inner, L), got shape {tuple(u.shape)}")
    batch, d_inner, length = u.shape
    expected = {
        "delta": (delta, (batch, d_inner, length)),
        "A": (A, (d_inner, A.shape[-1] if A.dim() == 2 else -1)),
        "B": (B, (batch, A.shape[-1], length)),
        "C": (C, (batch, A.shape[-1], length)),
        "D": (D, (d_inner,)),
        "z": (z, (batch, d_inner, length)),
        "delta_bias": (delta_bias, (d_inner,)),
        "alive": (alive, (d_inner,)),
    }
    for name, (tensor, shape) in expected.items():
        if tensor is not None and tuple(tensor.shape) != shape:
            raise ValueError(
                f"selective_scan: {name} has shape {tuple(tensor.shape)}, expected {shape} "
                f"for u of shape {tuple(u.shape)}"
            )


def selective_scan(
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
    backend: str = "auto",
    alive: torch.Tensor | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The Mamba v1 selective scan with mamba_ssm's selective_scan_fn semantics.

    u, delta, z: (batch, d_inner, L); A: (d_inner, N); B, C: (batch, N, L); D, delta_bias:
    (d_inner). Returns y (batch, d_inner, L), and the last state (batch, d_inner, N) when
    `return_last_state`. `backend` names a registered backend or "auto". `alive` (d_inner,
    bool): channels marked dead give exactly zero outputs, states and gradients; the fast
    backends skip them (whole blocks of dead channels are never loaded).
    """
    _check_shapes(u, delta, A, B, C, D, z, delta_bias, alive)
    impl = resolve_backend(backend, u.device)
    return impl.scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, alive)


def selective_state_update(
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
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """One decoding step of the scan; returns (y, new_state) and leaves `state` unchanged.

    state: (batch, d_inner, N); x, dt, z: (batch, d_inner); A: (d_inner, N); B, C: (batch, N).
    """
    impl = resolve_backend(backend, x.device)
    return impl.step(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus)
