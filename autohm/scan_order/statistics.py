"""Calibration statistics of pillar 1: per layer, the streaming mean and covariance of the
channels' states over the positions of a few batches (merged in float64), without keeping
activations.

"The channel's state" (`source`):
- "state": the mean over d_state of the scan state h_t of the channel, computed with the same
  scan kernels (a scan with C = 1/N, D = 0 and no gate returns exactly mean_n h_t), so no
  (batch, d_inner, L, N) tensor is built;
- "input": the scan input u_t of the channel (after the conv and SiLU).
Each token position (padding excluded) is one sample of the d_inner-dimensional vector.
Memory is O(d_inner^2) per layer: 19 MB in float64 for d_inner = 1536.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Literal

import numpy as np
import torch
from torch import nn

from autohm.errors import AutohmError
from autohm.model.mixer import MambaMixer, ScanInputs
from autohm.ops import selective_scan

Source = Literal["state", "input"]
SOURCES: tuple[str, ...] = ("state", "input")


class StreamingCovariance:
    """Mean and covariance of d-dimensional samples added in batches (Chan et al.'s pairwise
    merge of Welford accumulators), in float64."""

    def __init__(self, dim: int) -> None:
        self.count = 0
        self.mean = torch.zeros(dim, dtype=torch.float64)
        self.m2 = torch.zeros(dim, dim, dtype=torch.float64)  # sum of centred outer products
        self.seconds = 0.0  # time spent computing this layer's samples and adding them

    def update(self, samples: torch.Tensor) -> None:
        """Add samples (n, dim). One batch's centred products are summed in the samples' own
        precision (float32: relative error ~1e-6 on correlations, at half the cost of float64
        on a CPU and a fraction on a GPU); batches merge in float64."""
        samples = samples.detach()
        n = samples.shape[0]
        if n == 0:
            return
        if not samples.is_floating_point():
            samples = samples.double()
        batch_mean = samples.mean(0, dtype=torch.float64)
        centred = samples - batch_mean.to(samples.dtype)
        batch_m2 = (centred.T @ centred).to(device="cpu", dtype=torch.float64)
        batch_mean = batch_mean.cpu()
        total = self.count + n
        shift = batch_mean - self.mean
        self.m2 += batch_m2 + torch.outer(shift, shift) * (self.count * n / total)
        self.mean += shift * (n / total)
        self.count = total

    def covariance(self) -> torch.Tensor:
        """The sample covariance (ddof = 1)."""
        if self.count < 2:
            raise AutohmError(f"calibration saw {self.count} position(s); need at least 2")
        return self.m2 / (self.count - 1)

    def correlation(self) -> torch.Tensor:
        """Pearson correlation; a constant channel (zero variance) correlates 0 with every other
        channel and 1 with itself."""
        cov = self.covariance()
        std = cov.diagonal().clamp(min=0).sqrt()
        constant = std <= 1e-12 * max(std.max().item(), 1e-300)
        safe = torch.where(constant, torch.ones_like(std), std)
        rho = (cov / safe[:, None] / safe[None, :]).clamp(-1.0, 1.0)
        rho[constant, :] = 0.0
        rho[:, constant] = 0.0
        rho.fill_diagonal_(1.0)
        return rho


def channel_signal(s: ScanInputs, source: Source, backend: str = "auto") -> torch.Tensor:
    """(batch, d_inner, L) per-channel values of `source` from a mixer's scan inputs."""
    if source == "input":
        return s.u
    mean_over_state = torch.full_like(s.C, 1.0 / s.C.shape[1])
    return selective_scan(
        s.u, s.delta, s.A, s.B, mean_over_state, delta_softplus=True, backend=backend
    )


@torch.no_grad()
def collect_statistics(
    model: nn.Module,
    batches: Iterable[torch.Tensor | tuple[torch.Tensor, torch.Tensor]],
    source: Source = "state",
    max_batches: int | None = None,
) -> list[StreamingCovariance]:
    """One StreamingCovariance per Mamba layer of `model`, over the positions of `batches`
    (input_ids, or (input_ids, padding_mask) pairs), from the scan inputs each mixer computes in the
    forward (no work repeated: the extra cost is the state scan and the products)."""
    if source not in SOURCES:
        raise AutohmError(f"unknown statistics source {source!r}; choose from {', '.join(SOURCES)}")
    mixers = [m for m in model.modules() if isinstance(m, MambaMixer)]
    if not mixers:
        raise AutohmError("the model has no Mamba mixer to calibrate")
    stats = [StreamingCovariance(m.d_inner) for m in mixers]

    def record(mixer: MambaMixer, acc: StreamingCovariance):
        def scan_inputs(hidden: torch.Tensor, padding_mask: torch.Tensor | None = None):
            s = MambaMixer.scan_inputs(mixer, hidden, padding_mask)
            clock = time.perf_counter()
            signal = channel_signal(s, source, mixer.scan_backend)
            samples = signal.transpose(1, 2).reshape(-1, mixer.d_inner)
            if padding_mask is not None:
                samples = samples[padding_mask.reshape(-1).bool()]
            acc.update(samples)
            acc.seconds += time.perf_counter() - clock
            return s

        return scan_inputs

    for mixer, acc in zip(mixers, stats, strict=True):  # the forward's own scan inputs, reused
        mixer.scan_inputs = record(mixer, acc)
    was_training = model.training
    model.eval()
    try:
        for index, batch in enumerate(batches):
            if max_batches is not None and index >= max_batches:
                break
            ids, mask = batch if isinstance(batch, tuple | list) else (batch, None)
            model(ids, mask)
    finally:
        for mixer in mixers:
            del mixer.scan_inputs
        model.train(was_training)
    return stats


def correlation_cost(stats: StreamingCovariance) -> np.ndarray:
    """cost(i, j) = 1 - |rho_ij| (float64): 0 on the diagonal, 1 between a constant channel and
    any other (a constant channel carries no information about its neighbours)."""
    return (1.0 - stats.correlation().abs()).numpy()
