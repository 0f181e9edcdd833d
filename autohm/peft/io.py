"""Adapter files: adapter.safetensors (exactly the trainable tensors: LoRA A/B, IA3 vectors, the
head, and the mask logits when they train), masks.safetensors (the hard masks, when attached)
and adapter_config.json (the allocation and settings). load_adapter rebuilds the fine-tuned model
from the base model: its outputs are identical."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from autohm.files import write_tensors, write_text
from autohm.masking import load_masks, mask_settings, save_masks
from autohm.peft.allocation import Allocation
from autohm.peft.apply import PeftSettings, apply_allocation
from autohm.peft.errors import PeftError
from autohm.peft.ia3 import IA3

ADAPTER_FILE = "adapter.safetensors"
MASKS_FILE = "masks.safetensors"
CONFIG_FILE = "adapter_config.json"
FORMAT = "autohm-adapter"


def peft_settings(model: nn.Module) -> PeftSettings:
    """The settings apply_allocation left on the model."""
    settings = getattr(model, "peft_settings", None)
    if settings is None:
        raise PeftError("the model has no adapters: call apply_allocation (or load_adapter) first")
    return settings


def trainable_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every trainable tensor by parameter name; IA3 vectors as applied (1 at held entries)."""
    tensors = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    for name, module in model.named_modules():
        if isinstance(module, IA3) and f"{name}.alpha" in tensors:
            tensors[f"{name}.alpha"] = module.vector().detach()
    return {name: tensor.contiguous().clone() for name, tensor in tensors.items()}


def save_adapter(model: nn.Module, directory: str | Path, config: dict | None = None) -> Path:
    """Write the adapter files to `directory` (created); `config` is stored alongside."""
    settings = peft_settings(model)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_tensors(directory / ADAPTER_FILE, trainable_tensors(model))
    has_masks = bool(mask_settings(model))
    if has_masks:
        save_masks(model, directory / MASKS_FILE)
    record = {
        "format": FORMAT,
        "allocation": {key: asdict(entry) for key, entry in settings.allocation.items()},
        "lora_alpha": settings.lora_alpha,
        "seed": settings.seed,
        "train_masks": settings.train_masks,
        "masks": has_masks,
        "config": config or {},
    }
    write_text(directory / CONFIG_FILE, json.dumps(record, indent=2) + "\n")
    return directory


def read_adapter_config(directory: str | Path) -> dict:
    """adapter_config.json, checked: the allocation entries become Allocation objects."""
    file = Path(directory) / CONFIG_FILE
    if not file.is_file():
        raise PeftError(f"{file}: adapter config not found")
    try:
        record = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PeftError(f"{file}: not valid JSON: {error}") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise PeftError(f'{file}: not an autohm adapter config (no "format": "{FORMAT}")')
    for key in ("allocation", "lora_alpha", "seed", "train_masks", "masks"):
        if key not in record:
            raise PeftError(f"{file}: missing key {key!r}")
    allocation = {}
    for key, entry in record["allocation"].items():
        try:
            allocation[key] = Allocation(**entry)
        except (TypeError, PeftError) as error:
            raise PeftError(f"{file}: allocation[{key!r}]: {error}") from None
    return record | {"allocation": allocation}


def load_adapter(model: nn.Module, directory: str | Path) -> PeftSettings:
    """Attach the saved masks and allocation to a base model and load the trained tensors."""
    directory = Path(directory)
    record = read_adapter_config(directory)
    if record["masks"]:
        load_masks(model, directory / MASKS_FILE)
    apply_allocation(
        model, record["allocation"], record["lora_alpha"], record["seed"], record["train_masks"]
    )
    file = directory / ADAPTER_FILE
    if not file.is_file():
        raise PeftError(f"{file}: adapter weights not found")
    try:
        tensors = load_file(str(file))
    except (SafetensorError, OSError) as error:
        raise PeftError(f"{file}: cannot read: {error}") from None
    expected = {n: p for n, p in model.named_parameters() if p.requires_grad}
    missing, unexpected = expected.keys() - tensors, tensors.keys() - expected
    for keys, what in ((missing, "missing"), (unexpected, "unexpected")):
        if keys:
            raise PeftError(f"{file}: {what} tensor {sorted(keys)[0]!r} ({len(keys)} in all)")
    with torch.no_grad():
        for name, param in expected.items():
            if tensors[name].shape != param.shape:
                raise PeftError(
                    f"{file}: tensor {name!r} has shape {tuple(tensors[name].shape)}, "
                    f"the model expects {tuple(param.shape)}"
                )
            param.copy_(tensors[name])
    return model.peft_settings
