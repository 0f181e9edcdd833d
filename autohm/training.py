"""The small training toolkit shared by pretraining, mask learning and fine-tuning: seeded
batches, one optimiser step that refuses non-finite losses, and batched evaluation."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn
from torch.utils.data import TensorDataset

from autohm.errors import TrialFailed
from autohm.model.mixer import MambaMixer


def batches(
    dataset: TensorDataset, batch_size: int, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, ...]]:
    """An endless stream of batches: epochs of a seeded shuffle (the last short batch dropped
    unless the data set is smaller than one batch)."""
    n = len(dataset)
    size = min(batch_size, n)
    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - size + 1, size):
            yield dataset[order[start : start + size]]


def optimiser_step(
    loss: torch.Tensor, optimizer: torch.optim.Optimizer, phase: str, step: int
) -> float:
    """Backward and step; a NaN or infinite loss raises TrialFailed naming the phase and step."""
    value = float(loss.detach())
    if not torch.isfinite(loss.detach()):
        raise TrialFailed(f"non-finite loss ({value}) at {phase} step {step}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return value


EVAL_BATCH = 256  # sequences per evaluation forward, at most
EVAL_ACTIVATION = 2**23  # elements of one layer's widest activation in an evaluation forward


def evaluation_batch(model: nn.Module, seq_len: int) -> int:
    """Sequences per evaluation forward: EVAL_BATCH, fewer where a layer's activations would
    pass EVAL_ACTIVATION elements (a wide model at batch 256 runs slower per token: its
    activations leave the caches)."""
    widest = max((m.d_inner for m in model.modules() if isinstance(m, MambaMixer)), default=1)
    return max(1, min(EVAL_BATCH, EVAL_ACTIVATION // max(seq_len * widest, 1)))


@torch.inference_mode()
def accuracy(model: nn.Module, dataset: TensorDataset, batch_size: int | None = None) -> float:
    """Classification accuracy of `model` (evaluation mode: hard masks) on a split, in batches
    of `batch_size` sequences (default: evaluation_batch)."""
    was_training = model.training
    model.eval()
    correct = 0
    ids, mask, labels = dataset.tensors
    batch_size = batch_size or evaluation_batch(model, ids.shape[1])
    for start in range(0, len(labels), batch_size):
        window = slice(start, start + batch_size)
        logits = model(ids[window], mask[window])
        correct += int((logits.argmax(-1) == labels[window]).sum())
    model.train(was_training)
    return correct / max(len(labels), 1)
