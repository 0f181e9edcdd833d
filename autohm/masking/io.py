"""Hard masks as compact boolean tensors: save, load, and their sparsity per site and layer."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from autohm.files import write_tensors
from autohm.masking.masks import MaskingError, attach_masks, mask_modules, mixers


def hard_mask_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """{"layers.<i>.<logit key>": bool tensor} for every attached mask."""
    return {
        f"layers.{index}.{key}": mask
        for index, mixer in enumerate(mixers(model))
        if mixer.masks is not None
        for key, mask in mixer.masks.hard_masks().items()
    }


def mask_settings(model: nn.Module) -> dict:
    """How the masks were attached (sites, granularity, block size, distribution, layers)."""
    layers = [i for i, m in enumerate(mixers(model)) if m.masks is not None]
    if not layers:
        return {}
    first = mask_modules(model)[0]
    return {
        "sites": list(first.sites),
        "granularity": first.granularity,
        "block_size": first.block_size,
        "distribution": first.distribution,
        "layers": layers,
    }


def sparsity_report(model: nn.Module) -> dict[str, dict[str, float]]:
    """Fraction of masked-out weights per site ("all" layers and per layer "layers.i")."""
    report: dict[str, dict[str, float]] = {}
    totals: dict[str, list[float]] = {}
    for index, mixer in enumerate(mixers(model)):
        if mixer.masks is None:
            continue
        row = {}
        for name, site in mixer.masks.sites.items():
            weight = getattr(mixer, site.module).weight[site.start : site.stop]
            kept = _hard_site(mixer.masks, name, weight)
            zero, total = float((kept == 0).sum()), kept.numel()
            row[name] = zero / total
            totals.setdefault(name, [0.0, 0.0])
            totals[name][0] += zero
            totals[name][1] += total
        report[f"layers.{index}"] = row
    report["all"] = {name: zero / total for name, (zero, total) in totals.items()}
    return report


def _hard_site(masks, name: str, weight: torch.Tensor) -> torch.Tensor:
    """The evaluation multiplier of one site, expanded to its weight slice."""
    was_training = masks.training
    masks.eval()
    try:
        return masks.site_multiplier(name).expand_as(weight)
    finally:
        masks.train(was_training)


def save_masks(model: nn.Module, path: str | Path) -> None:
    """masks.safetensors: the hard masks (bool) with the attachment settings as metadata."""
    tensors = {k: v.contiguous() for k, v in hard_mask_tensors(model).items()}
    write_tensors(path, tensors, {"autohm_masks": json.dumps(mask_settings(model))})


def load_masks(model: nn.Module, path: str | Path) -> None:
    """Attach the saved hard masks to a model without masks (logits +-1: evaluation equals
    the saved masks exactly)."""
    path = Path(path)
    if not path.is_file():
        raise MaskingError(f"mask file not found: {path}")
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        meta = (handle.metadata() or {}).get("autohm_masks")
    if meta is None:
        raise MaskingError(f"{path}: not an autohm mask file (no 'autohm_masks' metadata)")
    settings = json.loads(meta)
    tensors = load_file(str(path))
    attach_masks(model, **settings)
    with torch.no_grad():
        for index, mixer in enumerate(mixers(model)):
            if mixer.masks is None:
                continue
            for key, logit in mixer.masks.logits.items():
                name = f"layers.{index}.{key}"
                if name not in tensors or tensors[name].shape != logit.shape:
                    raise MaskingError(f"{path}: tensor {name!r} missing or of the wrong shape")
                logit.copy_(torch.where(tensors[name], 1.0, -1.0))
