"""Functional math without module state: the selective scan and its backends."""

from autohm.ops import backends as _backends  # noqa: F401  (registers the backends)
from autohm.ops.scan_cpu import selective_scan_cpu
from autohm.ops.scan_reference import (
    selective_scan_reference,
    selective_state_update_reference,
)
from autohm.ops.selective_scan import (
    ScanBackend,
    available_backends,
    check_backend_name,
    register_backend,
    resolve_backend,
    selective_scan,
    selective_state_update,
)

__all__ = [
    "ScanBackend",
    "available_backends",
    "check_backend_name",
    "register_backend",
    "resolve_backend",
    "selective_scan",
    "selective_scan_cpu",
    "selective_scan_reference",
    "selective_state_update",
    "selective_state_update_reference",
]
