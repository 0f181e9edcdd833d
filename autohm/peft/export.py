"""Export for the wider ecosystem: the trained LoRA weights in Hugging Face PEFT's own files, an
IA3 config, a note of what PEFT cannot express, and a merged full-weight checkpoint (the
faithful, portable form).

    directory/lora/adapter_config.json        LoraConfig (targets, rank_pattern, alpha_pattern)
    directory/lora/adapter_model.safetensors  the trained LoRA A and B, in the base model's order
    directory/ia3/adapter_config.json         IA3Config: target_modules, feedforward_modules
    directory/NOTE.md                         exactly what PEFT does not get, and why
    directory/merged/                         config.json + model.safetensors (transformers'
                                              layout; masks, LoRA and IA3 folded in)
                                              [+ head.safetensors]

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
from autohm.peft.peft_files import lora_parts, peft_module_name, write_peft_lora
from autohm.peft.targets import IA3_ON_INPUT


def ia3_config(allocation: dict[str, Allocation]) -> dict | None:
    """An IA3Config dictionary for the IA3 modules (None when there are none)."""
    chosen = sorted(peft_module_name(k) for k, e in allocation.items() if e.method == "ia3")
    if not chosen:
        return None
    return {
        "peft_type": "IA3",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": None,
        "inference_mode": False,  # get_peft_model trains it; PeftModel.from_pretrained infers
        "target_modules": chosen,
        "feedforward_modules": [n for n in chosen if n.rsplit(".", 1)[-1] in IA3_ON_INPUT],
        "fan_in_fan_out": False,
        "init_ia3_weights": True,
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
    (transformers' MambaForCausalLM and MambaLM.from_pretrained read it) with its head in
    head.safetensors (MambaClassifier.from_pretrained reads both)."""
    return merged_copy(model).save_pretrained(directory)


def export_peft(
    model: nn.Module,
    allocation: dict[str, Allocation],
    directory: str | Path,
    orders: list[list[int]] | None = None,
) -> Path:
    """Write the PEFT files, NOTE.md and the merged checkpoint to `directory`; `orders` (the
    channel order of each layer, pillar 1) puts the LoRA weights back in the base order."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_peft_lora(model, allocation, directory / "lora", orders)
    config = ia3_config(allocation)
    if config is not None:
        write_text(directory / "ia3" / "adapter_config.json", json.dumps(config, indent=2) + "\n")
    write_text(directory / "NOTE.md", _note(model, allocation))
    save_merged(model, directory / "merged")
    return directory


def _note(model: nn.Module, allocation: dict[str, Allocation]) -> str:
    counts = Counter(entry.method for entry in allocation.values())
    kept, left_out = lora_parts(allocation)
    ia3 = sorted(peft_module_name(k) for k, e in allocation.items() if e.method == "ia3")
    masks = mask_settings(model)
    lines = [
        "# What the PEFT files hold, and what they leave out",
        "",
        f"Allocation: {counts['lora']} LoRA, {counts['ia3']} IA3, {counts['frozen']} frozen "
        "modules. `merged/` holds all of it, folded into the weights: the faithful form.",
        "",
        f"- **`lora/`**: the trained LoRA weights of {len(kept)} modules in PEFT's files, in the "
        "base model's channel order: `PeftModel.from_pretrained(MambaForCausalLM.from_pretrained"
        "(base), 'lora')` (the base in transformers' layout: `MambaLM.save_pretrained` writes "
        "it).",
    ]
    for key, why in sorted(left_out.items()):
        lines.append(f"- **Left out: the LoRA of {peft_module_name(key)}.** {why}.")
    if ia3:
        lines.append(
            f"- **IA3 ({len(ia3)} modules: {', '.join(ia3)}).** `ia3/` is a configuration only: "
            "PEFT cannot mix LoRA and IA3 in one model (PeftMixedModel takes no IA3), so the "
            "trained IA3 vectors are only in `merged/` (and autohm's adapter.safetensors); "
            "transformers 5 ignores an IA3 on dt_proj too."
        )
    if masks:
        lines.append(
            f"- **Masks ({masks['granularity']} masks on {', '.join(masks['sites'])}).** PEFT "
            "has no weight masks: with the LoRA alone on the unmasked base, outputs differ from "
            "autohm's masked model. `merged/` has them applied (masked weights are zero); "
            "autohm's masks.safetensors keeps them."
        )
    lines.append(
        "- **Fused kernels.** With mamba-ssm installed, transformers' fused path reads x_proj, "
        "dt_proj and out_proj weights directly; PEFT layers on them are bypassed."
    )
    if isinstance(getattr(model, "score", None), nn.Module):
        lines.append(
            "- **Classification head.** transformers has no Mamba sequence-classification "
            f"model; autohm's head is in `merged/{HEAD_FILE}` (MambaClassifier.from_pretrained "
            "reads merged/ with it)."
        )
    return "\n".join(lines) + "\n"
