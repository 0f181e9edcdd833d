"""MambaClassifier: sequence classification on the Mamba backbone (transformers has none).

Pooling is the last real token or the mean over real tokens; padding (left or right) is honoured
exactly, because the mixers ignore padded positions (see MambaMixer.forward).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from autohm.errors import CheckpointError
from autohm.model import checkpoint
from autohm.model.backbone import MambaBackbone
from autohm.model.config import MambaConfig
from autohm.model.lm import MambaLM

Pooling = Literal["last", "mean"]


def pool(hidden: torch.Tensor, padding_mask: torch.Tensor | None, pooling: Pooling) -> torch.Tensor:
    """(batch, L, d) -> (batch, d): the last real token or the mean over real tokens."""
    if padding_mask is None:
        return hidden[:, -1] if pooling == "last" else hidden.mean(dim=1)
    keep = padding_mask.to(hidden.dtype)
    if pooling == "mean":
        return (hidden * keep[..., None]).sum(1) / keep.sum(1, keepdim=True).clamp(min=1)
    positions = torch.arange(hidden.shape[1], device=hidden.device)
    last = (positions * padding_mask.long()).argmax(dim=1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


class MambaClassifier(nn.Module):
    """model(input_ids, padding_mask) -> class logits (batch, num_labels)."""

    def __init__(
        self,
        config: MambaConfig,
        num_labels: int,
        pooling: Pooling = "last",
        backbone: MambaBackbone | None = None,
    ) -> None:
        """A new head on `backbone` (shared, not copied), or on a freshly initialised one."""
        super().__init__()
        if pooling not in ("last", "mean"):
            raise ValueError(f"pooling must be 'last' or 'mean', got {pooling!r}")
        self.config = config
        self.pooling = pooling
        self.backbone = backbone if backbone is not None else MambaBackbone(config)
        self.score = nn.Linear(config.d_model, num_labels)

    @classmethod
    def from_pretrained(
        cls, path: str | Path, num_labels: int | None = None, pooling: Pooling | None = None
    ) -> MambaClassifier:
        """The backbone of a checkpoint with its saved head (head.safetensors, as
        save_pretrained writes it), or with a new head of `num_labels` classes. `pooling`
        defaults to the saved head's, else "last"; given, it must agree with a saved head."""
        directory = checkpoint.resolve_checkpoint(path)
        lm = MambaLM.from_pretrained(directory)
        saved = checkpoint.read_head(directory)
        if saved is None:
            if num_labels is None:
                raise CheckpointError(
                    f"{directory}: no {checkpoint.HEAD_FILE}; give num_labels for a new head"
                )
            return cls(lm.config, num_labels, pooling or "last", backbone=lm.backbone)
        tensors, saved_pooling = saved
        file = directory / checkpoint.HEAD_FILE
        rows = tensors["score.weight"].shape[0]
        if num_labels is not None and num_labels != rows:
            raise CheckpointError(f"{file}: the head has {rows} classes, not {num_labels}")
        if pooling is not None and saved_pooling is not None and pooling != saved_pooling:
            raise CheckpointError(f"{file}: the head pools {saved_pooling!r}, not {pooling!r}")
        model = cls(lm.config, rows, pooling or saved_pooling or "last", backbone=lm.backbone)
        checkpoint.load_weights_into(model.score, {k[6:]: v for k, v in tensors.items()}, file)
        return model

    def save_pretrained(self, path: str | Path, format: str | None = None) -> Path:
        """The backbone as a language-model checkpoint (config.json, model.safetensors; the
        unused LM head tied to the embedding; `format` as MambaLM.save_pretrained's) and the
        head in head.safetensors."""
        config = replace(self.config, tie_embeddings=True)
        state = {f"backbone.{k}": v for k, v in self.backbone.state_dict().items()}
        directory = checkpoint.write_checkpoint(config, state, path, format)
        checkpoint.write_head(self.score, self.pooling, directory)
        return directory

    def set_scan_backend(self, name: str) -> None:
        """Pin every layer to one scan backend; "auto" (the default) picks per device."""
        self.backbone.set_scan_backend(name)

    def forward(
        self, input_ids: torch.Tensor, padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        hidden = self.backbone(input_ids, padding_mask)
        return self.score(pool(hidden, padding_mask, self.pooling))
