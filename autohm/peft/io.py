"""Adapter files: adapter.safetensors (exactly the trainable tensors: LoRA A/B, IA3 vectors, the
head, and the mask logits when they train), masks.safetensors (the hard masks, when attached),
order.json (the channel order of every layer, pillar 1, when one was applied) and
adapter_config.json (the allocation and settings). load_adapter rebuilds the fine-tuned model
from the base model (the order applied first): its outputs are identical."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from autohm.errors import AutohmError
from autohm.files import write_tensors, write_text
from autohm.masking import load_masks, mask_settings, save_masks
from autohm.masking.masks import mixers
from autohm.peft.allocation import Allocation
from autohm.peft.apply import PeftSettings, apply_allocation
from autohm.peft.errors import PeftError
from autohm.peft.ia3 import IA3
from autohm.scan_order.permute import permute_channels

ADAPTER_FILE = "adapter.safetensors"
ORDER_FILE = "order.json"
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


def save_order(directory: str | Path, orders: list[list[int]]) -> Path:
    """order.json: new channel k of layer i is base channel orders[i][k]."""
    return write_text(Path(directory) / ORDER_FILE, json.dumps(orders))


def save_adapter(
    model: nn.Module,
    directory: str | Path,
    config: dict | None = None,
    orders: list[list[int]] | None = None,
) -> Path:
    """Write the adapter files to `directory` (created); `config` is stored alongside, and
    `orders` (new channel k of layer i is base channel orders[i][k]) as order.json."""
    settings = peft_settings(model)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if orders is not None:
        save_order(directory, orders)
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


def apply_saved_order(model: nn.Module, file: Path) -> None:
    """Permute every mixer of `model` to the order in `file` (nothing when there is no file)."""
    if not file.is_file():
        return
    try:
        orders = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PeftError(f"{file}: not valid JSON: {error}") from None
    layers = list(mixers(model))
    if not isinstance(orders, list) or len(orders) != len(layers):
        raise PeftError(f"{file}: expected one channel order per layer ({len(layers)})")
    for index, (mixer, order) in enumerate(zip(layers, orders, strict=True)):
        try:
            permute_channels(mixer, order)
        except (AutohmError, TypeError, ValueError) as error:
            raise PeftError(f"{file}: layer {index}: {error}") from None


def load_adapter(model: nn.Module, directory: str | Path) -> PeftSettings:
    """Apply the saved channel order (order.json, when there is one) to a base model, attach the
    saved masks and allocation, and load the trained tensors."""
    directory = Path(directory)
    record = read_adapter_config(directory)
    apply_saved_order(model, directory / ORDER_FILE)
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
