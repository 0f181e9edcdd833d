"""MambaConfig: the Mamba v1 hyper-parameters, with mamba_ssm's (state-spaces) field names."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass
class MambaConfig:
    """A Mamba v1 language model. Field names and defaults follow mamba_ssm's MambaConfig and
    Mamba mixer (flattened: the ssm_cfg entries are top-level fields here)."""

    d_model: int = 768
    n_layer: int = 24
    vocab_size: int = 50277
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int | str = "auto"
    dt_min: float = 0.001
    dt_max: float = 0.1
    dt_init: str = "random"
    dt_scale: float = 1.0
    dt_init_floor: float = 1e-4
    conv_bias: bool = True
    bias: bool = False
    rms_norm: bool = True
    norm_epsilon: float = 1e-5
    residual_in_fp32: bool = True
    fused_add_norm: bool = True
    pad_vocab_size_multiple: int = 8
    tie_embeddings: bool = True
    # A compact model (autohm.deploy.compact) has widths of its own per layer, and x_proj may
    # carry a bias (the folded input of removed channels). None: d_inner and d_state everywhere.
    layer_d_inner: list[int] | None = None
    layer_d_state: list[int] | None = None
    x_proj_bias: bool = False

    def __post_init__(self) -> None:
        for name in ("d_model", "n_layer", "vocab_size", "d_state", "d_conv", "expand"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.dt_rank != "auto" and (not isinstance(self.dt_rank, int) or self.dt_rank < 1):
            raise ValueError(f"dt_rank must be 'auto' or a positive integer, got {self.dt_rank!r}")
        if self.dt_init not in ("random", "constant"):
            raise ValueError(f"dt_init must be 'random' or 'constant', got {self.dt_init!r}")
        if self.pad_vocab_size_multiple < 1:
            raise ValueError("pad_vocab_size_multiple must be >= 1")
        for name in ("layer_d_inner", "layer_d_state"):
            widths = getattr(self, name)
            if widths is None:
                continue
            if not isinstance(widths, list | tuple) or len(widths) != self.n_layer:
                raise ValueError(f"{name} must list one width per layer ({self.n_layer})")
            if any(not isinstance(w, int) or isinstance(w, bool) or w < 0 for w in widths):
                raise ValueError(f"{name} must hold non-negative integers, got {widths!r}")
            setattr(self, name, list(widths))

    @property
    def d_inner(self) -> int:
        """Channels of the scan: expand * d_model."""
        return self.expand * self.d_model

    def layer_inner(self, layer: int) -> int:
        """Channels of layer `layer`'s scan (fewer than d_inner after compaction)."""
        return self.d_inner if self.layer_d_inner is None else self.layer_d_inner[layer]

    def layer_state(self, layer: int) -> int:
        """States of layer `layer`'s scan (fewer than d_state after compaction)."""
        return self.d_state if self.layer_d_state is None else self.layer_d_state[layer]

    @property
    def is_compact(self) -> bool:
        """Whether any layer has its own widths or x_proj a bias (not a plain Mamba v1)."""
        return self.layer_d_inner is not None or self.layer_d_state is not None or self.x_proj_bias

    @property
    def resolved_dt_rank(self) -> int:
        """dt_rank, with "auto" meaning ceil(d_model / 16) as in mamba_ssm."""
        return math.ceil(self.d_model / 16) if self.dt_rank == "auto" else int(self.dt_rank)

    @property
    def padded_vocab_size(self) -> int:
        """Rows of the embedding: vocab_size rounded up to pad_vocab_size_multiple."""
        multiple = self.pad_vocab_size_multiple
        return -(-self.vocab_size // multiple) * multiple

    def to_dict(self) -> dict:
        return asdict(self)
