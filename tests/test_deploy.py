"""Compaction: the compact model computes what the masked model computes (left and right padding,
recurrent decoding, every granularity, adapters attached, permuted orders, float32 and float64),
removes exactly the channels and states the masks make removable, and round-trips through its
files."""

import subprocess
import sys

import pytest
import torch
from helpers import randomise_, tiny_config, tiny_config_for_trials, tiny_workload

from autohm.bench import deploy as bench_deploy
from autohm.config import TrialConfig
from autohm.deploy import compact, describe, plan_layer
from autohm.errors import AutohmError
from autohm.masking import attach_masks, mask_modules
from autohm.masking.masks import mixers
from autohm.measure import analytic_flops, count_flops, deployed_flops
from autohm.model import MambaClassifier, MambaLM
from autohm.peft import Allocation, apply_allocation
from autohm.runs import train_and_save
from autohm.scan_order import permute_channels

TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}
DEFAULT_SITES = ["in_proj.x", "in_proj.z", "out_proj"]


@torch.no_grad()
def set_logits(model, seed=0, closed=0.5, rows_closed=()):
    """Random hard masks: each entry closed with probability `closed`; element-mask rows
    (site, row) in `rows_closed` closed entirely."""
    generator = torch.Generator().manual_seed(seed)
    for masks in mask_modules(model):
        for key, logit in masks.logits.items():
            draw = torch.rand(logit.shape, generator=generator, dtype=torch.float64)
            logit.copy_(torch.where(draw < closed, -1.0, 1.0))
            for site, row in rows_closed:
                if key == site.replace(".", "_"):
                    logit[row] = -1.0
    return model


@torch.no_grad()
def padded_batch(vocab=37, seed=0):
    """Three sequences of 11 tokens: unpadded, left-padded by 4, right-padded by 3."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (3, 11), generator=generator)
    mask = torch.ones(3, 11)
    mask[1, :4] = 0
    mask[2, 8:] = 0
    return ids, mask


def assert_same(got, expected, dtype):
    torch.testing.assert_close(got, expected, rtol=0, atol=TOLERANCE[dtype])


def masked_model(kind, dtype, sites=DEFAULT_SITES, granularity="channel", seed=0, **options):
    torch.manual_seed(seed)
    config = tiny_config(**options.pop("config", {}))
    model = MambaLM(config) if kind == "lm" else MambaClassifier(config, num_labels=3)
    randomise_(model).to(dtype)
    attach_masks(model, sites, granularity=granularity, block_size=4)
    return set_logits(model, seed, **options).eval()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "sites, granularity",
    [
        (DEFAULT_SITES, "channel"),
        (DEFAULT_SITES, "block"),
        (["in_proj.x", "out_proj"], "channel"),
        (["in_proj.x", "in_proj.z", "x_proj.dt", "dt_proj", "out_proj"], "channel"),
        (["in_proj.x", "in_proj.z", "conv1d", "out_proj"], "channel"),
        (["in_proj.x", "in_proj.z", "x_proj.B", "x_proj.C", "out_proj"], "element"),
    ],
)
@torch.no_grad()
def test_the_compact_classifier_gives_the_masked_outputs(dtype, sites, granularity):
    model = masked_model("classifier", dtype, sites, granularity)
    small = compact(model)
    assert type(small) is MambaClassifier and not mask_modules(small)
    ids, mask = padded_batch()
    assert_same(small(ids, mask), model(ids, mask), dtype)
    assert_same(small(ids), model(ids), dtype)
    if granularity != "element":  # random element masks rarely zero a whole row or column
        assert sum(small.config.layer_d_inner) < 2 * model.config.d_inner


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@torch.no_grad()
def test_the_compact_language_model_decodes_as_the_masked_one(dtype):
    model = masked_model("lm", dtype)
    small = compact(model)
    assert type(small) is MambaLM
    ids, mask = padded_batch()
    assert_same(small(ids, mask), model(ids, mask), dtype)  # padded positions too
    prompt = ids[:, :5]
    assert torch.equal(small.generate(prompt, 6), model.generate(prompt, 6))
    logits, states = model.prefill(prompt)
    small_logits, small_states = small.prefill(prompt)
    assert_same(small_logits, logits, dtype)
    assert small_states[0].ssm.shape[1] == small.config.layer_inner(0) < model.config.d_inner
    for token in ids[:, 5:].T:
        logits, states = model.step(token, states)
        small_logits, small_states = small.step(token, small_states)
        assert_same(small_logits, logits, dtype)


@torch.no_grad()
def test_masked_state_rows_remove_states():
    """Element masks that close state 1's B row (layer 0) and state 3's C row (layer 1) remove
    those states: d_state shrinks per layer, outputs are unchanged."""
    sites = ["in_proj.x", "out_proj", "x_proj.B", "x_proj.C"]
    model = masked_model("lm", torch.float64, sites, "element", closed=0.0)
    masks = mask_modules(model)
    masks[0].logits["x_proj_B"][1] = -1.0
    masks[1].logits["x_proj_C"][3] = -1.0
    small = compact(model)
    assert small.config.layer_d_state == [3, 3]
    assert small.config.layer_d_inner is None  # no channel lost a whole row or column
    A = model.backbone.layers[0].mixer.A_log
    assert torch.equal(small.backbone.layers[0].mixer.A_log, A[:, [0, 2, 3]])
    ids, mask = padded_batch()
    assert_same(small(ids, mask), model(ids, mask), torch.float64)


@torch.no_grad()
def test_a_constant_channel_input_is_folded_into_an_x_proj_bias():
    """Masking x rows and out_proj columns (z rows open) leaves u = silu(conv bias) feeding
    x_proj; compaction folds it into x_proj's bias, applied at real tokens only."""
    model = masked_model("lm", torch.float64, ["in_proj.x", "out_proj"], "channel")
    dead = ~mask_modules(model)[0].logits["channel"].gt(0)
    plan = plan_layer(compact_input(model))
    assert plan.folded == int(dead.sum()) > 0 and plan.x_proj_bias.abs().sum() > 0
    small = compact(model)
    assert small.config.x_proj_bias and small.backbone.layers[0].mixer.x_proj.bias is not None
    ids, mask = padded_batch()
    assert_same(small(ids, mask), model(ids, mask), torch.float64)


def compact_input(model):
    """The first mixer of the model as compaction sees it (masks baked)."""
    from autohm.peft.export import merged_copy

    return next(iter(mixers(merged_copy(model))))


@torch.no_grad()
def test_with_an_in_proj_bias_a_masked_x_row_is_not_constant():
    """With in_proj's bias, a masked x row still feeds the conv (its bias, zero-padded at the
    start): the input is not constant and the channel stays; outputs are still exact."""
    options = {"config": {"bias": True}}
    model = masked_model("classifier", torch.float64, ["in_proj.x", "out_proj"], **options)
    small = compact(model)
    assert small.config.layer_d_inner is None and not small.config.x_proj_bias
    ids, mask = padded_batch()
    assert_same(small(ids, mask), model(ids, mask), torch.float64)


@pytest.mark.parametrize("mode", ["lora", "ia3", "hybrid"])
@torch.no_grad()
def test_adapters_are_merged_before_compaction(mode):
    model = masked_model("classifier", torch.float64)
    methods = {"lora": ("lora",) * 4, "ia3": ("ia3",) * 4, "hybrid": ("lora", "ia3") * 2}[mode]
    allocation = {
        f"layers.{i}.{name}": Allocation(method, 2 if method == "lora" else None)
        for i in range(2)
        for name, method in zip(("in_proj", "x_proj", "dt_proj", "out_proj"), methods, strict=True)
    }
    apply_allocation(model, allocation)
    generator = torch.Generator().manual_seed(1)
    for name, param in model.named_parameters():
        if ".lora." in name or ".ia3." in name:
            param.copy_(0.5 * torch.randn(param.shape, generator=generator, dtype=param.dtype))
    ids, mask = padded_batch()
    expected = model(ids, mask)
    small = compact(model)
    assert not any(".lora." in n or ".ia3." in n for n, _ in small.named_parameters())
    assert_same(small(ids, mask), expected, torch.float64)
    assert_same(model(ids, mask), expected, torch.float64)  # the model itself is unchanged


def test_a_model_compacts_straight_after_a_training_step():
    """The masks' samples of the last training pass belong to its autograd graph; a copy (and
    so compaction) must not try to carry them."""
    model = masked_model("classifier", torch.float32).train()
    ids, mask = padded_batch()
    model(ids, mask).sum().backward()
    model.eval()
    with torch.no_grad():
        assert_same(compact(model)(ids, mask), model(ids, mask), torch.float32)


@torch.no_grad()
def test_compaction_follows_a_permuted_channel_order():
    model = masked_model("classifier", torch.float64)
    generator = torch.Generator().manual_seed(3)
    for mixer in mixers(model):
        permute_channels(mixer, torch.randperm(mixer.d_inner, generator=generator))
    ids, mask = padded_batch()
    assert_same(compact(model)(ids, mask), model(ids, mask), torch.float64)


@torch.no_grad()
def test_a_model_with_nothing_removable_keeps_its_shapes():
    model = masked_model("classifier", torch.float32, closed=0.0)
    small = compact(model)
    assert small.config == model.config
    assert describe(small.config).startswith("not compacted")
    shapes = {k: v.shape for k, v in small.state_dict().items()}
    plain = MambaClassifier(model.config, num_labels=3)
    assert shapes == {k: v.shape for k, v in plain.state_dict().items()}
    ids, mask = padded_batch()
    assert_same(small(ids, mask), model(ids, mask), torch.float32)


@torch.no_grad()
def test_a_layer_without_channels_contributes_nothing_and_still_decodes():
    model = masked_model("lm", torch.float64)
    mask_modules(model)[0].logits["channel"].fill_(-1.0)  # layer 0: every channel closed
    small = compact(model)
    assert small.config.layer_inner(0) == 0 and small.config.layer_state(0) == 0
    assert "layer 0: 0/32 channels, 0/4 states" in describe(small.config)
    ids, mask = padded_batch()
    assert_same(small(ids, mask), model(ids, mask), torch.float64)
    prompt = ids[:, :5]
    assert torch.equal(small.generate(prompt, 4), model.generate(prompt, 4))
    count, sparse = deployed_flops(small, seq_len=8)
    assert not any(k.startswith("backbone.layers.0.mixer") for k in count.by_module)
    assert not any(k.startswith("backbone.layers.0.mixer") for k in sparse.by_module)


@torch.no_grad()
def test_compact_flops_equal_the_formulas_of_the_compact_shapes():
    model = masked_model("classifier", torch.float32, ["in_proj.x", "out_proj"])
    small = compact(model)
    count = count_flops(small, seq_len=8)
    assert count.uncounted == {}
    assert count.by_module == analytic_flops(small.config, 8, num_labels=3)
    assert count.total < count_flops(MambaClassifier(model.config, 3), seq_len=8).total


@pytest.mark.parametrize("pooling", ["last", "mean"])
@torch.no_grad()
def test_a_compact_classifier_round_trips_through_its_files(tmp_path, pooling):
    model = masked_model("classifier", torch.float32)
    model.pooling = pooling
    small = compact(model)
    small.save_pretrained(tmp_path)
    loaded = MambaClassifier.from_pretrained(tmp_path)
    assert loaded.pooling == pooling and loaded.config.layer_d_inner == small.config.layer_d_inner
    ids, mask = padded_batch()
    assert torch.equal(loaded(ids, mask), small(ids, mask))
    lm = MambaLM.from_pretrained(tmp_path)  # the backbone alone, as a language model
    assert lm.config.layer_d_inner == small.config.layer_d_inner


def test_autohm_train_writes_a_deploy_directory_with_the_trained_outputs(tmp_path):
    config = tiny_config_for_trials(
        masking={
            "granularity": "channel",
            "steps": 30,
            "lr": 0.5,
            "penalty": {"sparsity": 0.6, "weight": 20.0},
        }
    )
    result = train_and_save(config, tiny_workload(latency_batch=2), tmp_path)
    loaded = MambaClassifier.from_pretrained(tmp_path / "deploy")
    channels = [loaded.config.layer_inner(i) for i in range(2)]
    assert channels == result.outcome.stored()["channels"]
    assert sum(channels) < 2 * loaded.config.d_inner  # channels did go
    ids, mask, _ = tiny_workload().task.validation[:8]
    with torch.no_grad():
        assert_same(loaded(ids, mask), result.model.eval()(ids, mask), torch.float32)
    summary = (tmp_path / "deploy" / "COMPACTION.txt").read_text()
    assert summary.startswith("layer 0: ") and "channels" in summary


def test_bench_deploy_compares_compact_models_with_their_dense_base():
    rows = bench_deploy.run(["built-in"], [0.0, 0.5], repeats=2)
    assert [(row.removed, row.channels) for row in rows] == [(0.0, 256), (0.5, 128)]
    assert rows[0].flops_ratio == 1.0 and 0.45 < rows[1].flops_ratio < 0.55
    assert rows[1].shape == "32x64"  # the default deployment shape of the digits task
    for row in rows:
        assert row.median_ms > 0 and row.dense_median_ms > 0 and row.latency_ratio > 0
    with pytest.raises(AutohmError, match="--fractions: 1.0 is not in"):
        bench_deploy.run(["built-in"], [1.0])
    with pytest.raises(AutohmError, match="--models: 'big'"):
        bench_deploy.run(["big"])


@pytest.mark.parametrize(
    "arguments, message",
    [(["search", "--latency-batch", "0"], "error: --latency-batch must be a positive integer"),
     (["search", "--latency-seq-len", "-2"], "error: --latency-seq-len must be a positive"),
     (["search", "--latency-seq-len", "1.5"], "error: Invalid value for '--latency-seq-len'"),
     (["search", "--latency-batch", "1000000000"], "error: the latency shape 1000000000 x 64"),
     (["train", "--config", "c.yaml", "--latency-batch", "0"], "error: --latency-batch must")],
)  # fmt: skip
def test_a_bad_deployment_shape_is_one_error_line_and_no_study(tmp_path, arguments, message):
    TrialConfig().save(tmp_path / "c.yaml")
    command = [sys.executable, "-m", "autohm", *arguments, "--out", str(tmp_path / "out")]
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()  # progress lines of a model that loaded may come first
    assert lines[-1].startswith(message) and sum(line.startswith("error:") for line in lines) == 1
    assert not (tmp_path / "out").exists()
