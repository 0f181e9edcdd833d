"""Importance of the candidate modules and channels, from what the masks learned (pillar 2).

Two definitions per mask entry (IMPORTANCE_KINDS):
- "logit": |L|, how decided the gate is. Note that a strongly closed gate is as "important" as
  a strongly open one; closed entries are excluded from tuning by the hard mask anyway;
- "mean_gate": the mean of M over the mask-learning passes, a running sum the masks keep as they
  sample (no extra pass); P(gate on) before any training pass.

A module's importance is the mean over its mask entries: element masks, the entries of the sites
on that module; channel and block masks, the channel gates (blocks expanded to their channels),
shared by every masked module of the layer. A module without a mask gets the default below.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from autohm.masking.masks import MixerMasks, _key, mixers
from autohm.peft.errors import PeftError
from autohm.peft.targets import targets

IMPORTANCE_KINDS = ("logit", "mean_gate")


def entry_importance(masks: MixerMasks, kind: str) -> dict[str, torch.Tensor]:
    """Importance of every mask entry, keyed like the mask logits."""
    if kind not in IMPORTANCE_KINDS:
        raise PeftError(f"unknown importance kind {kind!r}; choose from {IMPORTANCE_KINDS}")
    if kind == "logit":
        return {key: logit.detach().abs() for key, logit in masks.logits.items()}
    return {key: value.detach() for key, value in masks.mean_gates().items()}


def _per_channel(masks: MixerMasks, values: torch.Tensor) -> torch.Tensor:
    """A channel or block mask's values as one value per d_inner channel."""
    if masks.granularity == "block":
        values = values.repeat_interleave(masks.block_size)[: masks.d_inner]
    return values


def _module_entries(
    masks: MixerMasks, values: dict[str, torch.Tensor], module: str
) -> torch.Tensor | None:
    """The importance entries of one projection's mask (flat), or None when it has none."""
    sites = [site for site in masks.sites.values() if site.module == module]
    if not sites:
        return None
    if masks.granularity == "element":
        return torch.cat([values[_key(site.name)].flatten() for site in sites])
    return _per_channel(masks, values[masks.granularity])


def weight_gain(weight: torch.Tensor) -> float:
    """||W||_F / sqrt(rows), the RMS of the row norms: the output scale for unit-variance inputs,
    comparable across fan-ins (the default importance of a module without a mask)."""
    weight = weight.detach().double().flatten(1)
    return float(weight.norm() / math.sqrt(weight.shape[0]))


def module_importance(model: nn.Module, kind: str) -> dict[str, float]:
    """{"layers.{i}.{module}": importance} for every candidate module of every layer.

    Modules without a mask get the weight_gain of their weight, rescaled so that the unmasked
    modules' mean equals the masked modules' mean (when any module is masked): they rank among
    themselves by weight magnitude and sit in the middle of the masked ones. The allocation uses
    quantiles, so only this order matters.
    """
    if kind not in IMPORTANCE_KINDS:
        raise PeftError(f"unknown importance kind {kind!r}; choose from {IMPORTANCE_KINDS}")
    masked: dict[str, float] = {}
    gains: dict[str, float] = {}
    cache: dict[int, dict[str, torch.Tensor]] = {}
    for key, mixer, name in targets(model):
        entries = None
        if mixer.masks is not None:
            values = cache.setdefault(id(mixer), entry_importance(mixer.masks, kind))
            entries = _module_entries(mixer.masks, values, name)
        if entries is None:
            gains[key] = weight_gain(getattr(mixer, name).weight)
        else:
            masked[key] = float(entries.double().mean())
    scale = 1.0
    if masked and gains and sum(gains.values()) > 0:
        scale = (sum(masked.values()) / len(masked)) / (sum(gains.values()) / len(gains))
    importance = {key: gain * scale for key, gain in gains.items()} | masked
    return {key: importance[key] for key, _, _ in targets(model)}


def channel_importance(model: nn.Module, kind: str) -> dict[int, torch.Tensor]:
    """{layer: importance (d_inner,)} for every layer with masks: the channel or block gates, or
    for element masks the mean over sites of each site's entries of that channel."""
    result = {}
    for index, mixer in enumerate(mixers(model)):
        masks = mixer.masks
        if masks is None:
            continue
        values = entry_importance(masks, kind)
        if masks.granularity != "element":
            result[index] = _per_channel(masks, values[masks.granularity]).clone()
            continue
        per_site = []
        for site in masks.sites.values():
            entries = values[_key(site.name)]
            per_site.append(
                entries.mean(0) if site.channel_dim == 1 else entries.flatten(1).mean(1)
            )
        result[index] = torch.stack(per_site).mean(0)
    return result
