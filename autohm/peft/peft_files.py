"""The trained LoRA weights in Hugging Face PEFT's own files, for transformers' Mamba:
adapter_config.json (a LoraConfig) and adapter_model.safetensors (PEFT's key names), in the
base model's channel order, so that

    PeftModel.from_pretrained(MambaForCausalLM.from_pretrained(base), "DIR/peft/lora")

computes what autohm's backbone computes with those LoRA parts. What PEFT on transformers' Mamba
cannot hold is left out, and `left_out` says what and why (NOTE.md lists it).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import torch
from torch import nn

from autohm.files import write_tensors, write_text
from autohm.masking.masks import mixers
from autohm.peft.allocation import Allocation
from autohm.scan_order.permute import inverse_permutation

# module -> why a LoRA on it does not survive the trip to PEFT on transformers' Mamba
UNSUPPORTED = {
    "out_proj": "PEFT refuses a LoRA on out_proj of Mamba models",
    "dt_proj": "transformers 5 multiplies by dt_proj.weight directly, so a LoRA there does nothing",
}
WEIGHTS_FILE = "adapter_model.safetensors"


def peft_module_name(key: str) -> str:
    """Map layers.{i}.{module} to layers.{i}.mixer.{module}, the name PEFT matches."""
    layers, index, module = key.split(".")
    return f"{layers}.{index}.mixer.{module}"


def lora_parts(allocation: dict[str, Allocation]) -> tuple[list[str], dict[str, str]]:
    """(the LoRA modules PEFT can hold, {module left out: why})."""
    chosen = [k for k, e in allocation.items() if e.method == "lora"]
    modules = {k: k.rsplit(".", 1)[1] for k in chosen}
    left_out = {k: UNSUPPORTED[m] for k, m in modules.items() if m in UNSUPPORTED}
    return [k for k in chosen if k not in left_out], left_out


def _lora(model: nn.Module, key: str) -> nn.Module:
    _, index, module = key.split(".")
    return getattr(list(mixers(model))[int(index)], module).lora


def lora_config(model: nn.Module, allocation: dict[str, Allocation]) -> dict | None:
    """A LoraConfig dictionary for the LoRA modules PEFT can hold (None when there are none);
    the task is a causal LM, as transformers has no Mamba classification model."""
    kept, _ = lora_parts(allocation)
    if not kept:
        return None
    ranks = {peft_module_name(k): allocation[k].rank for k in kept}
    alphas = {peft_module_name(k): _lora(model, k).alpha for k in kept}
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": None,
        "inference_mode": False,  # get_peft_model trains it; PeftModel.from_pretrained infers
        "r": Counter(ranks.values()).most_common(1)[0][0],
        "lora_alpha": Counter(alphas.values()).most_common(1)[0][0],
        "target_modules": sorted(ranks),
        "rank_pattern": ranks,
        "alpha_pattern": alphas,
        "lora_dropout": 0.0,
        "bias": "none",
        "fan_in_fan_out": False,
        "init_lora_weights": True,
    }


@torch.no_grad()
def lora_weights(
    model: nn.Module, keys: list[str], orders: list[list[int]] | None
) -> dict[str, torch.Tensor]:
    """PEFT's tensors of the LoRA parts `keys`, moved back to the base model's channel order
    (autohm trains them on the permuted channels of pillar 1): in_proj's B rows (x and z),
    x_proj's A columns."""
    tensors = {}
    for key in keys:
        lora = _lora(model, key)
        index, module = int(key.split(".")[1]), key.rsplit(".", 1)[1]
        A, B = lora.A.detach(), lora.B.detach()
        if orders is not None:
            back = inverse_permutation(orders[index]).to(A.device)
            if module == "in_proj":
                B = B.index_select(0, torch.cat([back, back + len(back)]))
            elif module == "x_proj":
                A = A.index_select(1, back)
        name = f"base_model.model.backbone.{peft_module_name(key)}"
        tensors[f"{name}.lora_A.weight"] = A.contiguous()
        tensors[f"{name}.lora_B.weight"] = B.contiguous()
    return tensors


def write_peft_lora(
    model: nn.Module,
    allocation: dict[str, Allocation],
    directory: str | Path,
    orders: list[list[int]] | None = None,
) -> Path | None:
    """directory/adapter_config.json and adapter_model.safetensors (None: no LoRA to write)."""
    config = lora_config(model, allocation)
    if config is None:
        return None
    directory = Path(directory)
    kept, _ = lora_parts(allocation)
    write_tensors(directory / WEIGHTS_FILE, lora_weights(model, kept, orders))
    write_text(directory / "adapter_config.json", json.dumps(config, indent=2) + "\n")
    return directory
