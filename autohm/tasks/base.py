"""The Task every data set becomes: fixed train / validation / test TensorDatasets of
(input_ids, padding_mask, labels), with the sizes a model needs (vocab_size, num_labels,
seq_len) and a describe() for reports."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import TensorDataset

from autohm.errors import AutohmError

SPLITS = ("train", "validation", "test")


class TaskError(AutohmError):
    """A task name, file, column or option that cannot be used; the message names it."""


def require(ok: bool, task: str, option: str, value: object, rule: str) -> None:
    """Raise a TaskError naming the task, the option and its value unless `ok`."""
    if not ok:
        raise TaskError(f"task {task}: option {option}={value!r} is invalid: {rule}")


def make_split(
    input_ids: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    padding_mask: torch.Tensor | None = None,
) -> TensorDataset:
    """A split as TensorDataset(input_ids, padding_mask, labels), all int64; no mask means no
    padding (all ones)."""
    ids = torch.as_tensor(input_ids, dtype=torch.long)
    mask = torch.ones_like(ids) if padding_mask is None else padding_mask.long()
    return TensorDataset(ids, mask, torch.as_tensor(labels, dtype=torch.long))


@dataclass(frozen=True)
class Task:
    """A classification data set with fixed, disjoint splits.

    Every split is a TensorDataset of (input_ids (n, seq_len) int64, padding_mask (n, seq_len)
    int64 with 1 = token and 0 = padding, labels (n,) int64). All ids are below vocab_size and all
    labels below num_labels; label_names[k] is what label k stood for. pad_id is the id at padded
    positions (None: the task never pads, every mask is all ones). `options` holds every option
    the task was built with, defaults included (filled in by load_task)."""

    name: str
    vocab_size: int
    num_labels: int
    seq_len: int
    train: TensorDataset
    validation: TensorDataset
    test: TensorDataset
    label_names: tuple[str, ...]
    seed: int
    pad_id: int | None = None
    options: dict[str, object] = field(default_factory=dict)

    def split(self, name: str) -> TensorDataset:
        """The split called `name` (train, validation or test)."""
        if name not in SPLITS:
            raise TaskError(f"unknown split {name!r}; choose from {', '.join(SPLITS)}")
        return getattr(self, name)

    def unlabeled_sequences(self, split: str = "train") -> torch.Tensor:
        """The split's input_ids (n, seq_len), labels dropped, for next-token pretraining of a base
        model. On a padded task (pad_id not None) padded positions hold pad_id; their mask is
        task.split(split).tensors[1], and a loss should skip targets where it is 0."""
        return self.split(split).tensors[0]

    def describe(self) -> dict[str, object]:
        """Sizes, seed and options as plain JSON-ready values, for metrics and reports."""
        return {
            "task": self.name,
            "seed": self.seed,
            "vocab_size": self.vocab_size,
            "num_labels": self.num_labels,
            "seq_len": self.seq_len,
            "pad_id": self.pad_id,
            **{f"{name}_size": len(self.split(name)) for name in SPLITS},
            "label_names": list(self.label_names),
            "options": dict(self.options),
        }
