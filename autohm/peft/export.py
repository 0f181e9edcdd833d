"""Export for the wider ecosystem: Hugging Face PEFT configs for the LoRA and IA3 modules, a note
of what PEFT cannot express, and a merged full-weight checkpoint (the portable fallback).

    directory/lora/adapter_config.json   LoraConfig: target_modules, rank_pattern, alpha_pattern
    directory/ia3/adapter_config.json    IA3Config: target_modules, feedforward_modules (out_proj)
    directory/NOTE.md                    what the configs leave out
    directory/merged/                    config.json + model.safetensors (transformers' layout,
                                         masks, LoRA and IA3 folded in) [+ head.safetensors]

Module names are "layers.{i}.mixer.{module}", which PEFT matches as a suffix of both autohm's
and transformers' names ("backbone.layers.{i}.mixer.{module}").
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from pathlib import Path

import torch
from torch import nn

from autohm.files import write_text
from autohm.masking import bake_masks_, mask_settings
from autohm.masking.masks import mixers
from autohm.model.checkpoint import HEAD_FILE
from autohm.peft.allocation import Allocation
from autohm.peft.apply import adapted_modules, merge_adapters
from autohm.peft.targets import IA3_ON_INPUT


def peft_module_name(key: str) -> str:
    """Map layers.{i}.{module} to layers.{i}.mixer.{module}, the name PEFT matches."""
    layers, index, module = key.split(".")
    return f"{layers}.{index}.mixer.{module}"


def _lora_alpha(model: nn.Module, key: str, entry: Allocation) -> float:
    """The alpha of the attached LoRA part, or the default 2 r when none is attached."""
    _, index, module = key.split(".")
    mixer = list(mixers(model))[int(index)]
    lora = getattr(getattr(mixer, module), "lora", None)
    return lora.alpha if lora is not None else 2.0 * entry.rank


def lora_config(model: nn.Module, allocation: dict[str, Allocation]) -> dict | None:
    """A LoraConfig dictionary for the LoRA modules (None when there are none)."""
    chosen = {k: e for k, e in allocation.items() if e.method == "lora"}
    if not chosen:
        return None
    ranks = {peft_module_name(k): e.rank for k, e in chosen.items()}
    alphas = {peft_module_name(k): _lora_alpha(model, k, e) for k, e in chosen.items()}
    return _common(model) | {
        "peft_type": "LORA",
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


def ia3_config(model: nn.Module, allocation: dict[str, Allocation]) -> dict | None:
    """An IA3Config dictionary for the IA3 modules (None when there are none)."""
    chosen = sorted(peft_module_name(k) for k, e in allocation.items() if e.method == "ia3")
    if not chosen:
        return None
    return _common(model) | {
        "peft_type": "IA3",
        "target_modules": chosen,
        "feedforward_modules": [n for n in chosen if n.rsplit(".", 1)[-1] in IA3_ON_INPUT],
        "fan_in_fan_out": False,
        "init_ia3_weights": True,
    }


def _common(model: nn.Module) -> dict:
    head = isinstance(getattr(model, "score", None), nn.Module)
    return {
        "task_type": None if head else "CAUSAL_LM",
        "base_model_name_or_path": None,
        "inference_mode": False,
        "modules_to_save": ["score"] if head else None,
    }


@torch.no_grad()
def deployed(model: nn.Module) -> nn.Module:
    """A copy in evaluation mode with adapters merged and hard masks baked into the weights (what
    latency and FLOPs measure); the mixers keep their masks for the dead-channel skip."""
    plain = copy.deepcopy(model).eval()
    merge_adapters(plain)
    bake_masks_(plain)
    return plain


def merged_copy(model: nn.Module) -> nn.Module:
    """A copy of the model in evaluation mode whose weights are M * merged(W) and which has no
    masks, LoRA or IA3 left: plain projections, the same outputs (up to rounding)."""
    plain = deployed(model)
    for module in adapted_modules(plain):
        module.lora = module.ia3 = None  # folded into the weight by deployed()
        module.merged = False
    for mixer in mixers(plain):
        mixer.masks = None
    plain.__dict__.pop("peft_settings", None)
    return plain


def save_merged(model: nn.Module, directory: str | Path) -> Path:
    """The merged model: a language model's checkpoint, or a classifier's backbone as one
    (MambaLM.from_pretrained and mamba_ssm read it) with its head in head.safetensors
    (MambaClassifier.from_pretrained reads both)."""
    return merged_copy(model).save_pretrained(directory)


def export_peft(model: nn.Module, allocation: dict[str, Allocation], directory: str | Path) -> Path:
    """Write the PEFT configs, NOTE.md and the merged checkpoint to `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, config in (("lora", lora_config(model, allocation)),
                         ("ia3", ia3_config(model, allocation))):  # fmt: skip
        if config is not None:
            (directory / name).mkdir(exist_ok=True)
            text = json.dumps(config, indent=2) + "\n"
            write_text(directory / name / "adapter_config.json", text)
    write_text(directory / "NOTE.md", _note(model, allocation))
    save_merged(model, directory / "merged")
    return directory


def _note(model: nn.Module, allocation: dict[str, Allocation]) -> str:
    counts = Counter(entry.method for entry in allocation.values())
    affected = sorted(
        peft_module_name(k)
        for k, e in allocation.items()
        if e.method != "frozen" and k.endswith(".dt_proj")
    )
    masks = mask_settings(model)
    lines = [
        "# What the PEFT configs cannot express",
        "",
        f"Allocation: {counts['lora']} LoRA, {counts['ia3']} IA3, {counts['frozen']} frozen "
        "modules.",
        "",
        "- **LoRA and IA3 together.** PEFT cannot mix them in one model (PeftMixedModel takes "
        "LoRA, LoHa, LoKr, AdaLoRA, OFT, SHiRA; not IA3). `lora/` and `ia3/` hold one config "
        "each: load one of them, or use the merged checkpoint.",
        "- **dt_proj.** transformers 5's MambaMixer multiplies by `dt_proj.weight` directly, so "
        "a LoRA or IA3 layer on dt_proj has no effect there"
        + (f" (here: {', '.join(affected)})." if affected else " (none allocated here)."),
        "- **Fused kernels.** With mamba-ssm installed, transformers' fused path reads x_proj, "
        "dt_proj and out_proj weights directly; PEFT layers on them are bypassed.",
        "- **Masks.** PEFT has no weight masks"
        + (f" (here: {masks['granularity']} masks on {', '.join(masks['sites'])})" if masks else "")
        + ". The merged checkpoint has them applied (masked weights are zero); autohm's "
        "adapter files keep them in masks.safetensors. LoRA updates of masked entries, and IA3 "
        "entries of fully masked rows/columns (held at 1 in autohm), are not representable.",
        "- **Trained weights.** These are configurations: PEFT trains its own adapters from them. "
        "The trained weights are in the merged checkpoint (`merged/`, transformers' layout: "
        "transformers.MambaForCausalLM.from_pretrained and MambaLM.from_pretrained read it).",
    ]
    if isinstance(getattr(model, "score", None), nn.Module):
        lines.append(
            "- **Classification head.** transformers has no Mamba sequence-classification model; "
            f"`modules_to_save: [score]` names autohm's head, saved in `merged/{HEAD_FILE}`."
        )
    return "\n".join(lines) + "\n"
