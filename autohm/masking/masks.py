"""Learned masks on a mixer's projections (pillar 2).

`attach_masks` gives every mixer a `MixerMasks` module (parameters `...mixer.masks.*`; the base
model's parameter names are unchanged) and routes the covered projections through it: their
effective weight is M * W. Granularities:
- element: one logit per weight entry of each site;
- channel: one logit per d_inner channel, shared by every chosen site (see sites.py for how each
  site maps onto channels). A channel whose out_proj column is masked is dead: in evaluation the
  scan skips it (its output is exactly zero, as out_proj would have made it);
- block: one logit per block of `block_size` consecutive channels, in the channel order of the
  moment of attaching: apply the scan order (pillar 1) first, it decides which channels share a
  block.

Training samples M from the relaxed distribution once per forward pass (shared by all sites
of a mixer); evaluation uses M = 1(L > 0). Logits start at `init_logit` > 0, so the evaluated
model equals the base model exactly at the start, and P(M > 1/2) = sigmoid(init_logit)
(0.95 for the default 3) in training.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import torch
from torch import nn

from autohm.errors import AutohmError
from autohm.masking.concrete import gumbel_sigmoid, hard_concrete, hard_gate, open_probability
from autohm.masking.sites import GRANULARITIES, SITES, check_sites, site_layout
from autohm.model.adapted import adapt
from autohm.model.mixer import MambaMixer

DISTRIBUTIONS = ("concrete", "hard_concrete")
DEFAULT_INIT_LOGIT = 3.0


class MaskingError(AutohmError):
    """Masks that cannot be attached, permuted or loaded as asked."""


class MixerMasks(nn.Module):
    """The mask logits of one mixer, their sampling, and the running mean of M (importance)."""

    def __init__(
        self,
        mixer: MambaMixer,
        sites: tuple[str, ...],
        granularity: str = "channel",
        block_size: int = 16,
        distribution: str = "concrete",
        init_logit: float = DEFAULT_INIT_LOGIT,
    ) -> None:
        super().__init__()
        if granularity not in GRANULARITIES:
            raise MaskingError(f"unknown granularity {granularity!r}; choose from {GRANULARITIES}")
        if distribution not in DISTRIBUTIONS:
            raise MaskingError(
                f"unknown mask distribution {distribution!r}; choose from {DISTRIBUTIONS}"
            )
        if granularity == "block" and block_size < 1:
            raise MaskingError(f"block_size must be a positive integer, got {block_size!r}")
        self.sites = {name: site_layout(mixer, name) for name in check_sites(sites)}
        self.granularity, self.block_size, self.distribution = granularity, block_size, distribution
        self.d_inner = mixer.d_inner
        self.tau = 1.0
        self.logits = nn.ParameterDict()
        weights = {name: getattr(mixer, name).weight for name in ("in_proj", "x_proj", "dt_proj")}
        weights |= {"out_proj": mixer.out_proj.weight, "conv1d": mixer.conv1d.weight}
        if granularity == "element":
            for name, site in self.sites.items():
                shape = weights[site.module][site.start : site.stop].shape
                self.logits[_key(name)] = _init(shape, init_logit, mixer)
        else:
            count = -(-self.d_inner // block_size) if granularity == "block" else self.d_inner
            self.logits[granularity] = _init((count,), init_logit, mixer)
        for key, logit in self.logits.items():
            self.register_buffer(f"gate_sum_{key}", torch.zeros_like(logit), persistent=False)
        self.register_buffer("gate_steps", torch.zeros((), dtype=torch.long), persistent=False)
        self._gates: dict[str, torch.Tensor] = {}
        self.frozen = False  # see freeze

    def __getstate__(self) -> dict:
        """Copies (deepcopy, pickle) start without the current pass's samples: they are part of
        an autograd graph, which cannot be copied, and the next pass draws afresh anyway."""
        return {**self.__dict__, "_gates": {}}

    def begin_forward(self) -> None:
        """Forget the previous pass's samples: the next gates are drawn afresh."""
        self._gates = {}

    def gate(self, key: str) -> torch.Tensor:
        """M for one logit tensor: sampled once per forward in training, 1(L > 0) in evaluation."""
        if not self.training:
            return hard_gate(self.logits[key])
        if key not in self._gates:
            sample = (
                gumbel_sigmoid(self.logits[key], self.tau)
                if self.distribution == "concrete"
                else hard_concrete(self.logits[key], self.tau)
            )
            self._gates[key] = sample
            getattr(self, f"gate_sum_{key}").add_(sample.detach())
            if len(self._gates) == 1:
                self.gate_steps += 1
        return self._gates[key]

    def channel_gate(self) -> torch.Tensor:
        """The per-channel gate (d_inner,) of a channel or block mask."""
        gate = self.gate(self.granularity)
        if self.granularity == "block":
            gate = gate.repeat_interleave(self.block_size)[: self.d_inner]
        return gate

    def site_multiplier(self, name: str) -> torch.Tensor:
        """The multiplier of site `name`, broadcasting against its weight slice."""
        if self.granularity == "element":
            return self.gate(_key(name))
        site = self.sites[name]
        gate = self.channel_gate()
        if site.channel_dim == 1:
            return gate[None, :]
        return gate.view(-1, *([1] * (2 if site.module == "conv1d" else 1)))

    def weight_multiplier(self, module: str, weight: torch.Tensor) -> torch.Tensor | None:
        """The full multiplier of one projection's weight (ones outside its sites), or None."""
        covered = [site for site in self.sites.values() if site.module == module]
        if not covered:
            return None
        parts, row = [], 0
        for site in sorted(covered, key=lambda s: s.start):
            if site.start > row:
                parts.append(weight.new_ones(site.start - row, *weight.shape[1:]))
            parts.append(self.site_multiplier(site.name).expand_as(weight[site.start : site.stop]))
            row = site.stop
        if row < weight.shape[0]:
            parts.append(weight.new_ones(weight.shape[0] - row, *weight.shape[1:]))
        return torch.cat(parts) if len(parts) > 1 else parts[0]

    def alive(self) -> torch.Tensor | None:
        """Evaluation only: False for channels whose out_proj column is fully masked (the scan
        may skip them); None in training, without an out_proj mask, or when all are alive."""
        if self.training or "out_proj" not in self.sites:
            return None
        if self.frozen:
            return self.frozen_alive
        multiplier = self.site_multiplier("out_proj")
        alive = multiplier.expand(-1, self.d_inner).ne(0).any(dim=0)
        return None if bool(alive.all()) else alive

    def freeze(self) -> None:
        """For deployed copies, whose logits never change again: evaluation mode and the alive
        channels computed once (a buffer, moved with the model), not on every forward."""
        self.eval()
        self.register_buffer("frozen_alive", self.alive(), persistent=False)
        self.frozen = True

    def open_probabilities(self) -> dict[str, torch.Tensor]:
        """P(gate on) per logit tensor, differentiable (the expected-L0 terms)."""
        return {
            key: open_probability(logit, self.distribution, self.tau)
            for key, logit in self.logits.items()
        }

    def mean_gates(self) -> dict[str, torch.Tensor]:
        """The running mean of M over the training passes so far (P(gate on) before any)."""
        steps = int(self.gate_steps)
        if steps == 0:
            return {k: p.detach() for k, p in self.open_probabilities().items()}
        return {key: getattr(self, f"gate_sum_{key}") / steps for key in self.logits}

    def hard_masks(self) -> dict[str, torch.Tensor]:
        """1(L > 0) per logit tensor, as booleans (the compact form that is saved)."""
        return {key: logit.detach() > 0 for key, logit in self.logits.items()}

    @torch.no_grad()
    def permute_(self, perm: torch.Tensor) -> None:
        """Reorder element and channel logits (and their running sums) to a new channel order."""
        if self.granularity == "block":
            raise MaskingError(
                "block masks fix which channels share a block: apply the scan order before "
                "attaching them"
            )
        for key, logit in self.logits.items():
            dim = 0 if self.granularity == "channel" else self.sites[_site(key)].channel_dim
            for tensor in (logit, getattr(self, f"gate_sum_{key}")):
                tensor.copy_(tensor.index_select(dim, perm))


def _key(site: str) -> str:
    return site.replace(".", "_")


def _site(key: str) -> str:
    return {_key(site): site for site in SITES}[key]


def _init(shape, init_logit: float, mixer: MambaMixer) -> nn.Parameter:
    reference = mixer.A_log
    return nn.Parameter(torch.full(shape, float(init_logit), device=reference.device))


def mixers(model: nn.Module) -> Iterator[MambaMixer]:
    """Every Mamba mixer of a model, in order."""
    return (m for m in model.modules() if isinstance(m, MambaMixer))


def attach_masks(
    model: nn.Module,
    sites: list[str] | tuple[str, ...],
    granularity: str = "channel",
    block_size: int = 16,
    distribution: str = "concrete",
    init_logit: float = DEFAULT_INIT_LOGIT,
    layers: list[int] | None = None,
) -> list[MixerMasks]:
    """Mask `sites` of every mixer (or of the mixers numbered in `layers`); returns the masks."""
    attached = []
    for index, mixer in enumerate(mixers(model)):
        if layers is not None and index not in layers:
            continue
        if mixer.masks is not None:
            raise MaskingError(f"layer {index} already has masks")
        masks = MixerMasks(mixer, tuple(sites), granularity, block_size, distribution, init_logit)
        mixer.masks = masks
        for name, module in adapt(mixer).items():
            if any(site.module == name for site in masks.sites.values()):
                module.mask = partial(_multiplier_of, masks, name, module)
        attached.append(masks)
    return attached


def _multiplier_of(masks: MixerMasks, name: str, module: nn.Module) -> torch.Tensor | None:
    return masks.weight_multiplier(name, module.weight)


def mask_modules(model: nn.Module) -> list[MixerMasks]:
    """The attached MixerMasks of a model, layer by layer."""
    return [m.masks for m in mixers(model) if m.masks is not None]


def set_temperature(model: nn.Module, tau: float) -> None:
    """The relaxation temperature (beta for the hard concrete) of every mask of a model."""
    for masks in mask_modules(model):
        masks.tau = float(tau)


@torch.no_grad()
def bake_masks_(model: nn.Module) -> None:
    """Multiply the hard masks into the weights and detach them from the projections (the
    mixers keep their masks, frozen in evaluation mode, for the dead-channel skip). For
    deployment and measurement copies: run merge first when adapters are attached."""
    for mixer in mixers(model):
        if mixer.masks is None:
            continue
        mixer.masks.freeze()
        for module in adapt(mixer).values():
            multiplier = module.mask() if module.mask is not None else None
            if multiplier is not None:
                module.weight.mul_(multiplier.to(module.weight.dtype))
            module.mask = None
