"""`autohm bench deploy`: what compaction buys. For each model, channels are removed at random
(the same share in every layer, by channel masks on in_proj's x and z rows and out_proj's
columns), the masked model is compacted, and the compact model is timed in turns with its dense
base (autohm.measure's protocol) at a deployment shape; FLOPs are counted for the same shape.

Models: the built-in digits base model (pretrained weights) at the default deployment shape,
a d_model 256, 4-layer model with random weights at batch 8 x 256 tokens, and (on request:
`--models 130m`) a mamba-130m-shaped one with random weights at its default shape, 1 x 64.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from autohm.deploy import compact
from autohm.errors import AutohmError
from autohm.masking import attach_masks, mask_modules
from autohm.measure import DEFAULT_BATCH, count_flops, default_batch, measure_latency
from autohm.model import MambaClassifier, MambaConfig

FRACTIONS = (0.0, 0.25, 0.5, 0.75, 0.9)
MODELS = ("built-in", "d256x4")
DEFAULT_SITES = ("in_proj.x", "in_proj.z", "out_proj")


@dataclass
class Row:
    """One model at one share of channels removed, against its dense base."""

    model: str
    shape: str
    removed: float  # share of channels removed in every layer
    channels: int  # channels left, all layers
    flops: int
    flops_ratio: float  # compact / dense
    median_ms: float
    iqr_ms: float
    dense_median_ms: float
    dense_iqr_ms: float
    latency_ratio: float  # compact / dense, 10th percentiles of runs in turns


@dataclass
class Case:
    """A dense classifier and the deployment shape it is timed at."""

    name: str
    dense: MambaClassifier
    batch: int
    seq_len: int


def built_in_case() -> Case:
    """The digits base model with a two-class head, at the default deployment shape."""
    from autohm.pretrain import base_model
    from autohm.tasks import load_task

    task = load_task("digits")
    lm = base_model(task)
    dense = MambaClassifier(lm.config, task.num_labels, backbone=lm.backbone)
    return Case("built-in", dense.eval(), DEFAULT_BATCH, task.seq_len)


def random_case() -> Case:
    """A d_model 256, 4-layer model with random weights at batch 8 x 256."""
    config = MambaConfig(d_model=256, n_layer=4, vocab_size=256, d_state=16)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        dense = MambaClassifier(config, num_labels=2).eval()
    return Case("d256x4", dense, 8, 256)


def mamba_130m_case() -> Case:
    """A mamba-130m-shaped model (d_model 768, 24 layers, random weights) at its default
    deployment shape, 1 x 64."""
    from autohm.bench.train import size_config

    config = size_config("130m")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        dense = MambaClassifier(config, num_labels=2).eval()
    return Case("130m", dense, default_batch(config, 64), 64)


CASES: dict[str, Callable[[], Case]] = {
    "built-in": built_in_case,
    "d256x4": random_case,
    "130m": mamba_130m_case,
}


def with_channels_removed(dense: MambaClassifier, fraction: float, seed: int = 0) -> nn.Module:
    """A copy of `dense` whose channel masks close `fraction` of every layer's channels,
    chosen at random; compacted."""
    model = MambaClassifier(dense.config, dense.score.out_features, dense.pooling)
    model.load_state_dict(dense.state_dict())
    attach_masks(model, list(DEFAULT_SITES), granularity="channel")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for masks in mask_modules(model):
            logits = masks.logits["channel"]
            order = torch.randperm(len(logits), generator=generator)
            closed = order[: round(fraction * len(logits))]
            logits.fill_(1.0)
            logits[closed] = -1.0
    return compact(model.eval())


def run(
    models: Sequence[str] = MODELS,
    fractions: Sequence[float] = FRACTIONS,
    repeats: int = 30,
    device: torch.device | str = "cpu",
    progress: Callable[[str], None] | None = None,
    batch: int | None = None,
    seq_len: int | None = None,
) -> list[Row]:
    """Every model at every fraction: FLOPs and latency of the compact model beside the dense;
    `batch` and `seq_len` replace every model's own deployment shape."""
    unknown = [m for m in models if m not in CASES]
    if unknown:
        raise AutohmError(f"--models: {unknown[0]!r} is not one of {', '.join(CASES)}")
    bad = [f for f in fractions if not 0 <= f < 1]
    if bad:
        raise AutohmError(f"--fractions: {bad[0]} is not in [0, 1)")
    rows = []
    for name in models:
        case = CASES[name]()
        case.batch, case.seq_len = batch or case.batch, seq_len or case.seq_len
        ids = torch.randint(0, case.dense.config.vocab_size, (case.batch, case.seq_len),
                            generator=torch.Generator().manual_seed(0))  # fmt: skip
        dense_flops = count_flops(case.dense, case.seq_len, case.batch).total
        for fraction in fractions:
            if progress is not None:
                progress(f"{name}: {fraction:.0%} of the channels removed")
            small = with_channels_removed(case.dense, fraction)
            flops = count_flops(small, case.seq_len, case.batch).total
            timing = measure_latency(small, ids, repeats=repeats, device=device,
                                     reference=case.dense)  # fmt: skip
            rows.append(Row(
                name, f"{case.batch}x{case.seq_len}", fraction,
                sum(small.config.layer_inner(i) for i in range(small.config.n_layer)),
                flops, flops / dense_flops, timing.median_ms, timing.iqr_ms,
                timing.reference_median_ms, timing.reference_iqr_ms, timing.relative,
            ))  # fmt: skip
    return rows


def as_dicts(rows: Sequence[Row]) -> list[dict]:
    return [asdict(row) for row in rows]
