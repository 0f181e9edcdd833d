"""Pillar 2, learned masks: binary / hard concrete gates, temperature schedules, mask sites and
granularities on the mixers' projections, the sparsity objective, saving hard masks."""

from autohm.masking.concrete import gumbel_sigmoid, hard_concrete, hard_gate, open_probability
from autohm.masking.io import load_masks, mask_settings, save_masks, sparsity_report
from autohm.masking.masks import (
    DISTRIBUTIONS,
    MaskingError,
    MixerMasks,
    attach_masks,
    bake_masks_,
    mask_modules,
    set_temperature,
)
from autohm.masking.objective import PENALTIES, SparsityPenalty, expected_density, hard_density
from autohm.masking.schedules import SCHEDULES, TemperatureSchedule
from autohm.masking.sites import GRANULARITIES, SITES

__all__ = [
    "DISTRIBUTIONS",
    "GRANULARITIES",
    "PENALTIES",
    "SCHEDULES",
    "SITES",
    "MaskingError",
    "MixerMasks",
    "SparsityPenalty",
    "TemperatureSchedule",
    "attach_masks",
    "bake_masks_",
    "expected_density",
    "gumbel_sigmoid",
    "hard_concrete",
    "hard_density",
    "hard_gate",
    "load_masks",
    "mask_modules",
    "mask_settings",
    "open_probability",
    "save_masks",
    "set_temperature",
    "sparsity_report",
]
