"""Where a measurement ran (device, library versions, threads, scan backend), and pinning the
scan backend of a model for the duration of a measurement."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata

import torch
from torch import nn

from autohm.devices import cpu_model
from autohm.model import MambaMixer
from autohm.ops import check_backend_name, resolve_backend


def _mixers(model: nn.Module) -> list[MambaMixer]:
    return [module for module in model.modules() if isinstance(module, MambaMixer)]


@contextmanager
def pinned_scan_backend(model: nn.Module, name: str | None) -> Iterator[None]:
    """Run every mixer of `model` on backend `name` inside the block (None: leave them), then
    restore each mixer's own choice, so measuring never changes the model."""
    if name is not None:
        check_backend_name(name)
    mixers = _mixers(model) if name is not None else []
    saved = [mixer.scan_backend for mixer in mixers]
    try:
        for mixer in mixers:
            mixer.scan_backend = name
        yield
    finally:
        for mixer, backend in zip(mixers, saved, strict=True):
            mixer.scan_backend = backend


def scan_backends_in_use(model: nn.Module, device: torch.device) -> str:
    """The registered backends the mixers run on `device` ("auto" resolved), comma-separated;
    "none" for a model without mixers."""
    names = {resolve_backend(mixer.scan_backend, device).name for mixer in _mixers(model)}
    return ",".join(sorted(names)) or "none"


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name (from /proc/cpuinfo where there is one)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model()


def package_version(package: str) -> str | None:
    """The installed version of `package` without importing it (triton's import reads
    TRITON_INTERPRET); None when it is not installed."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def numba_threads() -> int:
    """Threads of the numba kernels (backend "cpu" runs its jobs in parallel on them)."""
    import numba

    return numba.get_num_threads()
