"""autohm.measure: FLOPs counted through fvcore equal the architecture's formulas and hand-computed
constants, torch's FlopCounterMode agrees (factor 2) on the matmuls and the conv, nothing is
dropped silently; the latency protocol (warm-up, repeats, median, IQR, environment)."""

import logging
from importlib import metadata

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import tiny_config
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from autohm.measure import (
    CONVENTION,
    DEFAULT_BATCH,
    analytic_flops,
    count_flops,
    default_batch,
    measure_latency,
    scan_flops,
)
from autohm.measure import latency as latency_module
from autohm.measure.deployment import FORWARD_WORK
from autohm.measure.environment import scan_backends_in_use
from autohm.model import MambaClassifier, MambaConfig, MambaMixer
from autohm.ops import available_backends, resolve_backend, selective_scan
from autohm.trial import Workload

# Tiny model (d_model=16, d_inner=32, N=4, dt_rank=1, d_conv=4, 3 labels), L=8, batch 1; T = 8.
PER_LAYER = {
    "norm": 4 * 8 * 16 + 2 * 8,  # RMSNorm: square, mean, scale, weight per element; eps, rsqrt
    "": 8 * 16,  # residual add
    "mixer.in_proj": 8 * 16 * 64,
    "mixer.conv1d": 32 * 4 * (8 + 3),  # nn.Conv1d computes L + d_conv - 1 outputs
    "mixer": 8 * 32 + 2 * 32 * 4,  # SiLU after the conv; A = -exp(A_log)
    "mixer.x_proj": 8 * 32 * (1 + 2 * 4),
    "mixer.dt_proj": 8 * 1 * 32,
    "mixer.selective_scan": 5 * 8 * 32 * 4 + 5 * 8 * 32,  # 5 per state entry, 5 per channel
    "mixer.out_proj": 8 * 32 * 16,
}
EXPECTED = {
    **{
        f"backbone.layers.{i}" + (f".{key}" if key else ""): value
        for i in range(2)
        for key, value in PER_LAYER.items()
    },
    "backbone.norm_f": 528,
    "score": 16 * 3,
}
EXPECTED_TOTAL = 48224
PROJECTIONS = ("in_proj", "conv1d", "x_proj", "dt_proj", "out_proj")


def test_count_flops_of_the_tiny_model_is_the_hand_computed_count(caplog):
    model = MambaClassifier(tiny_config(), num_labels=3)
    with caplog.at_level(logging.DEBUG, logger="fvcore"):
        count = count_flops(model, seq_len=8)
    assert not caplog.records  # fvcore's warnings silenced...
    assert count.uncounted == {}  # ...and no op in the trace went uncounted
    assert count.by_module == EXPECTED
    assert count.total == EXPECTED_TOTAL == sum(EXPECTED.values())
    assert analytic_flops(tiny_config(), 8, num_labels=3) == EXPECTED
    assert count.convention == CONVENTION == "fvcore: one multiply-add counts as one FLOP"
    assert count.to_dict()["by_module"] == EXPECTED


@pytest.mark.parametrize(
    "overrides, pooling, batch, seq_len",
    [
        (dict(rms_norm=False, bias=True, dt_rank=3, d_conv=3), "mean", 2, 5),
        (dict(d_model=40, n_layer=3, d_state=7, expand=3), "last", 3, 11),
    ],
)
def test_count_flops_equals_the_formulas(overrides, pooling, batch, seq_len):
    config = tiny_config(**overrides)
    model = MambaClassifier(config, num_labels=5, pooling=pooling)
    count = count_flops(model, seq_len, batch)
    assert count.uncounted == {}
    assert count.by_module == analytic_flops(config, seq_len, batch, num_labels=5, pooling=pooling)
    assert count.total == sum(count.by_module.values())


def test_scan_flops_terms():
    # 5 per state entry; per channel and step: delta*u, softplus, D skip, silu(z) and gate mul
    assert scan_flops(2, 3, 5, 4) == 2 * 3 * 5 * (5 * 4 + 5)
    bare = scan_flops(2, 3, 5, 4, has_D=False, has_z=False, delta_softplus=False)
    assert bare == 2 * 3 * 5 * (5 * 4 + 1)
    assert scan_flops(2, 3, 5, 4, has_delta_bias=True) - scan_flops(2, 3, 5, 4) == 2 * 3 * 5


class ScanOnly(nn.Module):
    """Calls selective_scan with chosen optional arguments (the mixer is here to be pinned)."""

    def __init__(self, tensors, softplus):
        super().__init__()
        self.mixer = MambaMixer(tiny_config())
        self.tensors, self.softplus = tensors, softplus

    def forward(self, input_ids):
        batch, length = input_ids.shape
        u = input_ids.float()[:, None, :].expand(batch, 6, length)
        bc = input_ids.float()[:, None, :].expand(batch, 3, length)
        channels = torch.ones(6)
        optional = {name: u if name == "z" else channels for name in self.tensors}
        return selective_scan(
            u, u, -torch.ones(6, 3), bc, bc, **optional,
            delta_softplus=self.softplus, backend=self.mixer.scan_backend,
        )  # fmt: skip


@pytest.mark.parametrize(
    "tensors, softplus",
    [((), False), (("D",), True), (("z", "delta_bias"), False), (("D", "z", "delta_bias"), True)],
)
def test_the_scan_handle_sees_which_optional_arguments_are_given(tensors, softplus):
    count = count_flops(ScanOnly(tensors=tensors, softplus=softplus), seq_len=7, batch=2)
    expected = scan_flops(
        2, 6, 7, 3, has_D="D" in tensors, has_z="z" in tensors,
        has_delta_bias="delta_bias" in tensors, delta_softplus=softplus,
    )  # fmt: skip
    assert count.by_module["selective_scan"] == expected


def test_flop_counter_mode_counts_two_per_multiply_add():
    model = MambaClassifier(tiny_config(), num_labels=3)
    ours = count_flops(model, seq_len=8).by_module
    model.set_scan_backend("reference")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 8, dtype=torch.long))
    theirs = {
        name.removeprefix("MambaClassifier."): sum(ops.values())
        for name, ops in counter.get_flop_counts().items()
    }
    layers = [f"backbone.layers.{i}.mixer" for i in range(2)]
    leaves = [f"{mixer}.{name}" for mixer in layers for name in PROJECTIONS] + ["score"]
    for name in leaves:
        assert theirs[name] == 2 * ours[name], name
    for mixer in layers:  # the reference scan's y = <h, C> contraction: 1 of our 5 per entry
        contraction = theirs[mixer] - sum(theirs[f"{mixer}.{name}"] for name in PROJECTIONS)
        assert contraction == 2 * 8 * 32 * 4


class MaskedLinear(nn.Module):
    """A projection wrapper of the kind masks and adapters use: F.linear on an effective weight."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.weight, self.bias = linear.weight, linear.bias
        self.mask = nn.Parameter(torch.ones_like(linear.weight))

    def forward(self, x):
        return F.linear(x, self.weight * self.mask, self.bias)


def test_count_flops_on_wrapped_projections():
    model = MambaClassifier(tiny_config(), num_labels=3)
    for name in ("in_proj", "x_proj", "dt_proj", "out_proj"):
        mixer = model.backbone.layers[0].mixer
        setattr(mixer, name, MaskedLinear(getattr(mixer, name)))
    count = count_flops(model, seq_len=8)
    assert count.uncounted == {}
    extra = {  # the mask multiply: one per weight entry
        f"backbone.layers.0.mixer.{name}": getattr(
            model.backbone.layers[0].mixer, name
        ).mask.numel()
        for name in ("in_proj", "x_proj", "dt_proj", "out_proj")
    }
    assert count.by_module == {key: n + extra.get(key, 0) for key, n in EXPECTED.items()}


def test_count_flops_leaves_the_model_and_the_registry_as_they_were():
    model = MambaClassifier(tiny_config(), num_labels=3).eval()
    model.set_scan_backend("reference")
    ids = torch.randint(0, 37, (2, 8))
    with torch.no_grad():
        before = model(ids)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    registered = available_backends()
    count_flops(model, seq_len=8)
    assert available_backends() == registered
    assert {layer.mixer.scan_backend for layer in model.backbone.layers} == {"reference"}
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    with torch.no_grad():
        assert torch.equal(model(ids), before)


class Cumsum(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1))

    def forward(self, input_ids):
        return torch.cumsum(self.weight * input_ids.float(), dim=-1)


def test_an_op_without_a_handle_is_reported_not_dropped():
    with pytest.warns(UserWarning, match="aten::cumsum"):
        count = count_flops(Cumsum(), seq_len=8, batch=2)
    assert count.uncounted == {"aten::cumsum": 1}
    assert count.total == 16  # the multiply


class FakeClockModel(nn.Module):
    """Each forward advances a fake clock by the next scripted duration and records the mode."""

    def __init__(self, durations_s, clock):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.durations, self.clock, self.calls = list(durations_s), clock, []

    def forward(self, input_ids, padding_mask=None):
        self.calls.append((torch.is_inference_mode_enabled(), self.training))
        self.clock[0] += self.durations.pop(0)
        return input_ids.float()


def test_latency_protocol_warmup_repeats_median_iqr(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(latency_module, "perf_counter", lambda: clock[0])
    model = FakeClockModel([9.0, 9.0, 0.004, 0.001, 0.003, 0.002, 0.010], clock).train()
    result = measure_latency(model, torch.zeros(3, 5, dtype=torch.long), warmup=2, repeats=5)
    assert len(model.calls) == 7 and not model.durations
    assert model.calls == [(True, False)] * 7  # inference mode, eval
    assert model.training  # restored
    times = [4.0, 1.0, 3.0, 2.0, 10.0]  # the warm-up runs (9 s each) are not timed
    assert result.median_ms == pytest.approx(np.median(times)) == pytest.approx(3.0)
    assert result.iqr_ms == pytest.approx(4.0 - 2.0)
    assert (result.repeats, result.warmup, result.batch, result.seq_len) == (5, 2, 3, 5)
    assert result.scan_backend == "none"  # no mixers


def test_latency_beside_a_reference_alternates_turns_and_compares_fast_runs(monkeypatch):
    """The model and the reference run in turns, the first of each round alternating (a fixed
    order lets the scheduler's time slices stall one of them); `relative` is the ratio of their
    10th percentiles (fast runs, which contention has not slowed)."""
    clock, order = [0.0], []
    monkeypatch.setattr(latency_module, "perf_counter", lambda: clock[0])
    model = FakeClockModel([9.0, 0.004, 0.010, 0.003], clock)
    reference = FakeClockModel([9.0, 0.002, 0.002, 0.001], clock).train()
    for name, fake in (("model", model), ("reference", reference)):
        fake.register_forward_hook(lambda *_, name=name: order.append(name))
    result = measure_latency(model, torch.zeros(1, 4), warmup=1, repeats=3, reference=reference)
    assert order == ["model", "reference"] * 2 + ["reference", "model"] + ["model", "reference"]
    assert result.median_ms == pytest.approx(4.0)
    assert result.reference_median_ms == pytest.approx(2.0)
    # 10th percentiles (linear interpolation): of 3, 4, 10 -> 3.2; of 1, 2, 2 -> 1.2
    assert result.relative == pytest.approx(3.2 / 1.2)
    assert reference.calls == [(True, False)] * 4 and reference.training  # eval, restored
    alone = measure_latency(FakeClockModel([0.0, 0.001], clock), torch.zeros(1, 4), warmup=1,
                            repeats=1)  # fmt: skip
    assert alone.relative is None and alone.reference_median_ms is None


@pytest.mark.parametrize(
    "run_s, warmup, repeats",
    [(0.001, 5, 30), (1.0, 1, 9), (60.0, 1, 5)],  # the full protocol fits; 10 rounds fit; none
)
def test_a_latency_budget_shrinks_the_runs_of_a_slow_model(monkeypatch, run_s, warmup, repeats):
    """The first warmup round (the model and its reference) is timed; the counts shrink so
    that the rounds fit the budget, keeping one warmup and MIN_REPEATS timed rounds."""
    clock = [0.0]
    monkeypatch.setattr(latency_module, "perf_counter", lambda: clock[0])
    model, reference = (FakeClockModel([run_s] * 70, clock) for _ in range(2))
    result = measure_latency(model, torch.zeros(1, 4), reference=reference, budget_s=20.0)
    assert (result.warmup, result.repeats) == (warmup, repeats)
    assert len(model.calls) == len(reference.calls) == warmup + repeats
    assert latency_module.MIN_REPEATS == 5


def test_latency_reports_its_environment():
    model = MambaClassifier(tiny_config(), num_labels=3)
    ids = torch.randint(0, 37, (2, 6))
    mask = torch.ones(2, 6, dtype=torch.long)
    result = measure_latency(model, ids, mask, warmup=1, repeats=3, scan_backend="reference")
    assert result.scan_backend == "reference"
    assert {layer.mixer.scan_backend for layer in model.backbone.layers} == {"auto"}
    assert result.median_ms > 0 and result.iqr_ms >= 0 and result.repeats == 3
    assert result.device == "cpu" and result.device_name.strip()
    assert result.torch_version == torch.__version__
    try:
        assert result.triton_version == metadata.version("triton")
    except metadata.PackageNotFoundError:
        assert result.triton_version is None
    assert result.num_threads == torch.get_num_threads() and result.numba_threads >= 1
    assert set(result.to_dict()) >= {"median_ms", "iqr_ms", "device_name", "scan_backend"}
    auto = resolve_backend("auto", "cpu").name
    assert scan_backends_in_use(model, torch.device("cpu")) == auto


def test_latency_rejects_an_empty_protocol():
    with pytest.raises(ValueError, match="repeats"):
        measure_latency(
            MambaClassifier(tiny_config(), 3), torch.zeros(1, 4, dtype=torch.long), repeats=0
        )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_events_triton_and_the_same_flops():
    model = MambaClassifier(tiny_config(), num_labels=3)
    ids = torch.randint(0, 37, (2, 64))
    result = measure_latency(model, ids, device="cuda", warmup=2, repeats=5, scan_backend="triton")
    assert result.device.startswith("cuda") and result.scan_backend == "triton"
    assert result.device_name == torch.cuda.get_device_name()
    assert result.median_ms > 0
    assert count_flops(model, seq_len=8).by_module == EXPECTED


def test_the_default_deployment_batch_gives_one_forward_enough_work():
    """The fewest sequences (a power of two, at most 32) that make FORWARD_WORK FLOPs: 32 for
    small models, 1 for a mamba-130m-sized one, in between for mid-sized ones."""
    assert default_batch(MambaConfig(d_model=768, n_layer=24, vocab_size=50280), 64) == 1
    assert default_batch(tiny_config(), 64) == DEFAULT_BATCH == 32
    mid = MambaConfig(d_model=256, n_layer=4, vocab_size=64)
    batch, per_sequence = (
        default_batch(mid, 256),
        sum(analytic_flops(mid, 256, num_labels=2).values()),
    )
    assert 1 < batch < DEFAULT_BATCH and batch & (batch - 1) == 0
    assert batch * per_sequence >= FORWARD_WORK > batch // 2 * per_sequence
    assert Workload.load("digits").latency_batch == 32  # the built-in model's default
