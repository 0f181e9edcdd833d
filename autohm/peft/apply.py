"""Attaching an allocation to a model: freeze the base, add LoRA and IA3 parts to the adapted
projections (so every scan backend computes with the effective weight), keep the masks fixed,
train the classification head; and merging the parts into the weights for measurement.

Masks are attached before the adapters (the IA3 entries of dead rows and columns are fixed from
the hard masks at this point). Unless `train_masks`, the masks are held in evaluation mode, also
while the model trains: fine-tuning sees exactly the hard masks 1(L > 0) that are saved, so the
masked weights (the LoRA update included) stay exactly zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from autohm.masking.masks import MixerMasks, mask_modules
from autohm.model.adapted import AdaptedMixin, adapt
from autohm.peft.allocation import Allocation
from autohm.peft.errors import PeftError
from autohm.peft.ia3 import IA3
from autohm.peft.lora import LoRA
from autohm.peft.targets import IA3_ON_INPUT, ia3_held, targets


@dataclass(frozen=True)
class PeftSettings:
    """What apply_allocation was given; kept on the model as `model.peft_settings`."""

    allocation: dict[str, Allocation]
    lora_alpha: float | None = None  # None: 2 * rank per module
    seed: int = 0
    train_masks: bool = False


def apply_allocation(
    model: nn.Module,
    allocation: dict[str, Allocation],
    lora_alpha: float | None = None,
    seed: int = 0,
    train_masks: bool = False,
) -> None:
    """Freeze every base parameter, attach the allocated LoRA (scaling lora_alpha / r, default
    alpha 2 r; A drawn from `seed`) and IA3 parts, and make `model.score` (if any) trainable."""
    if getattr(model, "peft_settings", None) is not None:
        raise PeftError("the model already has adapters attached (apply_allocation ran before)")
    known = {key for key, _, _ in targets(model)}
    unknown = sorted(set(allocation) - known)
    if unknown:
        raise PeftError(f"allocation key {unknown[0]!r} is not a module of this model")
    if lora_alpha is not None and not lora_alpha > 0:
        raise PeftError(f"lora_alpha must be positive, got {lora_alpha!r}")
    model.requires_grad_(False)
    generator = torch.Generator().manual_seed(seed)
    for key, mixer, name in targets(model):
        entry = allocation.get(key)
        if entry is None or entry.method == "frozen":
            continue
        module = adapt(mixer)[name]
        like = {"device": module.weight.device, "dtype": module.weight.dtype}
        if entry.method == "lora":
            alpha = 2.0 * entry.rank if lora_alpha is None else float(lora_alpha)
            module.lora = LoRA(
                module.in_features, module.out_features, entry.rank, alpha, generator, **like
            )
        else:
            on_input = name in IA3_ON_INPUT
            size = module.in_features if on_input else module.out_features
            module.ia3 = IA3(size, on_input, ia3_held(mixer, name), **like)
    for masks in mask_modules(model):
        masks.logits.requires_grad_(train_masks)
        if not train_masks:
            hold_in_evaluation(masks)
    score = getattr(model, "score", None)
    if isinstance(score, nn.Module):
        score.requires_grad_(True)
    model.peft_settings = PeftSettings(dict(allocation), lora_alpha, seed, train_masks)


def hold_in_evaluation(masks: MixerMasks) -> None:
    """Keep fixed masks at their hard value 1(L > 0) even when model.train() is called."""
    masks.train = partial(_evaluation_only, masks)
    masks.eval()


def _evaluation_only(masks: MixerMasks, mode: bool = True) -> MixerMasks:
    return nn.Module.train(masks, False)


def adapted_modules(model: nn.Module) -> list[AdaptedMixin]:
    """Every adapted projection of a model."""
    return [module for module in model.modules() if isinstance(module, AdaptedMixin)]


def merge_adapters(model: nn.Module) -> None:
    """Fold LoRA and IA3 into the base weights (for latency and FLOPs: plain projections)."""
    for module in adapted_modules(model):
        module.merge_()


def unmerge_adapters(model: nn.Module) -> None:
    """Undo merge_adapters (up to rounding, which IA3's division can introduce)."""
    for module in adapted_modules(model):
        module.unmerge_()
