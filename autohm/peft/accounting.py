"""Trainable-parameter accounting: exact counts of what fine-tuning changes.

params: trainable scalars that can change the outputs. params_masked: scalars stored in trainable
tensors but held fixed by the hard masks (their gradient is exactly zero): LoRA B rows of weight
rows the mask removes entirely, LoRA A columns of removed weight columns, and IA3 entries held at 1
(see targets.ia3_held). params + params_masked is the element count of the saved adapter file.
Masks that train jointly are counted with their hard masks at the time of counting.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from autohm.peft.targets import ia3_held, removed_lines, targets


@dataclass(frozen=True)
class ParamCount:
    """Trainable scalars, trainable-but-masked scalars, and all parameter elements of the model."""

    params: int
    params_masked: int
    params_total: int


def count_parameters(model: nn.Module) -> ParamCount:
    """The ParamCount of a model (shared parameters, e.g. tied embeddings, counted once)."""
    parameters = list(model.parameters())
    stored = sum(p.numel() for p in parameters if p.requires_grad)
    masked = 0
    for _, mixer, name in targets(model):
        module = getattr(mixer, name)
        lora, ia3 = getattr(module, "lora", None), getattr(module, "ia3", None)
        if lora is not None:
            rows, columns = removed_lines(mixer, name)
            if lora.B.requires_grad:
                masked += lora.rank * int(rows.sum())
            if lora.A.requires_grad:
                masked += lora.rank * int(columns.sum())
        if ia3 is not None and ia3.alpha.requires_grad:
            held = ia3.frozen | ia3_held(mixer, name).to(ia3.frozen.device)
            masked += int(held.sum())
    return ParamCount(stored - masked, masked, sum(p.numel() for p in parameters))
