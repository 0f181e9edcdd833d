"""Names of the devices measurements run on, recorded next to every timing."""

from __future__ import annotations

import platform
from pathlib import Path

import torch

from autohm.errors import AutohmError


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def describe_device(device: torch.device | str) -> str:
    """ "NVIDIA H200" for a GPU; "AMD EPYC ... (2 threads)" for the CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()} ({torch.get_num_threads()} threads)"


def parse_device(text: str | None) -> torch.device:
    """--device: cpu, cuda or cuda:N (None: the default device); an AutohmError for anything
    else, or for cuda without a CUDA device."""
    if text is None:
        return default_device()
    try:
        device = torch.device(text)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise AutohmError(f"--device {text!r} is not cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AutohmError(f"--device {text}: no CUDA device is available")
    return device


def default_device() -> torch.device:
    """The GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
