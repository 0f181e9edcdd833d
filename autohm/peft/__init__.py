"""Pillar 3, importance-driven hybrid PEFT: module and channel importance from the learned masks,
a quantile allocation of LoRA / IA3 / frozen per module, LoRA and IA3 parts of the adapted
projections, parameter accounting, adapter files and export to Hugging Face PEFT."""

from autohm.peft.accounting import ParamCount, count_parameters
from autohm.peft.allocation import MODULE_METHODS, POLICIES, Allocation, AllocationPolicy, allocate
from autohm.peft.apply import PeftSettings, apply_allocation, merge_adapters, unmerge_adapters
from autohm.peft.errors import PeftError
from autohm.peft.export import deployed, export_peft, merged_copy
from autohm.peft.ia3 import IA3
from autohm.peft.importance import IMPORTANCE_KINDS, channel_importance, module_importance
from autohm.peft.io import load_adapter, save_adapter, save_order
from autohm.peft.lora import LoRA
from autohm.peft.targets import PEFT_MODULES

__all__ = [
    "IA3",
    "IMPORTANCE_KINDS",
    "MODULE_METHODS",
    "PEFT_MODULES",
    "Allocation",
    "AllocationPolicy",
    "POLICIES",
    "LoRA",
    "ParamCount",
    "PeftError",
    "PeftSettings",
    "allocate",
    "apply_allocation",
    "channel_importance",
    "count_parameters",
    "deployed",
    "export_peft",
    "load_adapter",
    "merge_adapters",
    "merged_copy",
    "module_importance",
    "save_adapter",
    "save_order",
    "unmerge_adapters",
]
