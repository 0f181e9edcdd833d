"""`autohm bench scan`: forward+backward time of each selective-scan backend, side by side in
one process (interleaved rounds, medians), with speed ratios against the sequential reference
and mambapy's parallel scan."""

from __future__ import annotations

import contextlib
import importlib.metadata
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from autohm.bench.baselines import mambapy_available, selective_scan_mambapy
from autohm.devices import describe_device
from autohm.errors import AutohmError
from autohm.ops import available_backends, selective_scan

DEFAULT_SHAPES = ((4, 256, 256, 16), (2, 1536, 512, 16))
DEAD_GROUP = 64  # channels per dead/alive stripe: a multiple of every kernel's block size
BLOCK_SKIPPING = ("cpu", "triton")  # backends whose kernels skip dead channel blocks


@dataclass
class Row:
    """One measurement: median and interquartile range of forward+backward in milliseconds."""

    shape: str
    variant: str
    median_ms: float
    iqr_ms: float
    vs_reference: float | None = None
    vs_mambapy: float | None = None


def parse_shapes(text: str) -> list[tuple[int, int, int, int]]:
    """ "4x256x256x16,2x1536x512x16" -> [(batch, d_inner, L, d_state), ...]."""
    shapes = []
    for item in text.split(","):
        parts = item.strip().lower().split("x")
        if len(parts) != 4 or not all(p.isdigit() and int(p) > 0 for p in parts):
            raise AutohmError(
                f"--shapes: {item.strip()!r} is not BATCHxD_INNERxLxD_STATE (positive integers)"
            )
        shapes.append(tuple(int(p) for p in parts))
    return shapes


def default_variants(device: torch.device) -> list[str]:
    """Every backend usable on the device, the mambapy baseline when installed, and the
    block-skipping backends again with half the channel blocks dead."""
    names = available_backends(device)
    if mambapy_available():
        names.append("mambapy")
    return names + [f"{name}:dead50" for name in names if name in BLOCK_SKIPPING]


def _dead_fraction_label(variant: str, d_inner: int) -> str:
    """The variant's name, with the fraction of channels actually dead when it kills some."""
    if not variant.endswith(":dead50"):
        return variant
    dead = ((torch.arange(d_inner) // DEAD_GROUP) % 2 == 1).float().mean().item()
    return f"{variant.removesuffix(':dead50')}, {dead:.0%} dead"


def _scan_for(variant: str, d_inner: int, device: torch.device) -> Callable:
    name, _, dead = variant.partition(":")
    if dead not in ("", "dead50"):
        raise AutohmError(f"--backends: unknown variant suffix {dead!r} in {variant!r}")
    alive = None
    if dead:
        alive = (torch.arange(d_inner, device=device) // DEAD_GROUP) % 2 == 0
    if name == "mambapy":
        return lambda **inputs: selective_scan_mambapy(**inputs, alive=alive)
    known = available_backends(device)
    if name not in known:
        raise AutohmError(
            f"--backends: {name!r} does not run on {device}; usable there: "
            f"{', '.join(known + ['mambapy'] * mambapy_available())}"
        )
    return lambda **inputs: selective_scan(**inputs, backend=name, alive=alive)


def random_scan_inputs(
    shape: tuple[int, int, int, int],
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    seed: int = 0,
    grad: bool = True,
) -> dict[str, torch.Tensor]:
    """Seeded selective-scan inputs of shape (batch, d_inner, L, d_state) with every optional
    argument present and A < 0, as in a trained Mamba."""
    batch, d_inner, length, d_state = shape
    g = torch.Generator().manual_seed(seed)

    def r(*size, scale=1.0):
        return torch.randn(*size, generator=g, dtype=torch.float64) * scale

    inputs = dict(
        u=r(batch, d_inner, length),
        delta=r(batch, d_inner, length, scale=0.5),
        A=-(torch.rand(d_inner, d_state, generator=g, dtype=torch.float64) * 2 + 0.1),
        B=r(batch, d_state, length),
        C=r(batch, d_state, length),
        D=r(d_inner),
        z=r(batch, d_inner, length),
        delta_bias=r(d_inner, scale=0.3),
    )
    return {k: v.to(device=device, dtype=dtype).requires_grad_(grad) for k, v in inputs.items()}


def _time_once(scan: Callable, inputs: dict, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    y = scan(**inputs, delta_softplus=True)
    torch.autograd.grad(y, list(inputs.values()), grad_outputs=torch.ones_like(y))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) * 1e3


def balanced_orders(count: int) -> list[list[int]]:
    """Orders of range(count) in which every item directly follows every other equally often
    (a Williams design: count orders for even counts, 2 * count for odd ones)."""
    first = [0] + [(j + 1) // 2 if j % 2 else count - j // 2 for j in range(1, count)]  # 0 1 n-1 2
    orders = [[(item + shift) % count for item in first] for shift in range(count)]
    return orders if count % 2 == 0 else orders + [order[::-1] for order in orders]


def run(
    shapes: list[tuple[int, int, int, int]],
    variants: list[str],
    device: torch.device,
    repeats: int = 5,
    progress: Callable[[str], None] = lambda message: None,
) -> list[Row]:
    """Time every variant on every shape: one warm-up call each (compilation), then `repeats`
    interleaved rounds so that drift of a shared machine hits all variants alike. The rounds
    cycle through balanced_orders, so that no variant always follows the same one: a call right
    after a memory-heavy one (mambapy materialises (batch, d_inner, L, N) tensors) runs on cold
    caches and can take twice as long."""
    rows = []
    for shape in shapes:
        label = "x".join(map(str, shape))
        inputs = random_scan_inputs(shape, device=device)
        scans = {v: _scan_for(v, shape[1], device) for v in variants}
        times: dict[str, list[float]] = {v: [] for v in variants}
        orders = balanced_orders(len(variants))
        for variant, scan in scans.items():
            progress(f"{label}: warming up {variant}")
            _time_once(scan, inputs, device)
        for round_index in range(repeats):
            progress(f"{label}: round {round_index + 1}/{repeats}")
            for index in orders[round_index % len(orders)]:
                variant = variants[index]
                times[variant].append(_time_once(scans[variant], inputs, device))
        medians = {v: statistics.median(t) for v, t in times.items()}
        for variant, samples in times.items():
            quartiles = statistics.quantiles(samples, n=4) if len(samples) > 1 else [0, 0, 0]
            rows.append(
                Row(
                    label,
                    _dead_fraction_label(variant, shape[1]),
                    medians[variant],
                    quartiles[2] - quartiles[0],
                    medians["reference"] / medians[variant] if "reference" in medians else None,
                    medians["mambapy"] / medians[variant] if "mambapy" in medians else None,
                )
            )
    return rows


def environment(device: torch.device) -> dict[str, str]:
    """What the numbers were measured on."""
    info = {"device": describe_device(device), "torch": torch.__version__}
    for package in ("numba", "triton", "mambapy", "mamba-ssm"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            info[package] = importlib.metadata.version(package)
    return info


def as_dicts(rows: list[Row]) -> list[dict]:
    return [asdict(row) for row in rows]
