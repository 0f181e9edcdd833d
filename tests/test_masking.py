"""Pillar 2: the binary concrete law, straight-through hard gates, schedules, mask sites and
granularities on a model, dead channels, permutation and save/load of masks."""

import copy
import math

import pytest
import torch
from helpers import randomise_, tiny_config

from autohm.masking import (
    SITES,
    MaskingError,
    SparsityPenalty,
    TemperatureSchedule,
    attach_masks,
    bake_masks_,
    gumbel_sigmoid,
    hard_concrete,
    hard_density,
    load_masks,
    mask_modules,
    open_probability,
    save_masks,
    set_temperature,
    sparsity_report,
)
from autohm.masking.concrete import logistic_noise
from autohm.model import MambaClassifier
from autohm.scan_order import permute_channels

SAMPLES = 400_000


def within_sampling_error(estimate: float, p: float, n: int = SAMPLES) -> bool:
    """|estimate - p| within 5 standard errors of a Bernoulli mean."""
    return abs(estimate - p) <= 5 * math.sqrt(p * (1 - p) / n) + 1e-9


@pytest.mark.parametrize("tau", [0.1, 0.5, 1.0, 3.0])
@pytest.mark.parametrize("logit", [-2.0, 0.0, 1.5])
def test_binary_concrete_opens_with_probability_sigmoid_of_the_logit(tau, logit):
    torch.manual_seed(0)
    sample = gumbel_sigmoid(torch.full((SAMPLES,), logit, dtype=torch.float64), tau)
    p = 1 / (1 + math.exp(-logit))
    assert within_sampling_error(float((sample > 0.5).double().mean()), p)
    if logit == 0.0:  # symmetric law: E[M] = 1/2
        assert abs(float(sample.mean()) - 0.5) < 5 * 0.5 / math.sqrt(SAMPLES)


def test_the_noise_is_logistic_not_a_single_gumbel():
    torch.manual_seed(0)
    noise = logistic_noise(torch.Size([SAMPLES]), torch.zeros((), dtype=torch.float64))
    assert abs(float(noise.mean())) < 0.02  # a single Gumbel(0, 1) sample has mean 0.577
    assert abs(float(noise.var()) - math.pi**2 / 3) < 0.05  # the logistic variance


def test_hard_gates_are_exactly_binary_with_straight_through_gradients():
    torch.manual_seed(0)
    logits = torch.randn(1000, requires_grad=True)
    for sample in (gumbel_sigmoid(logits, 0.5, hard=True), hard_concrete(logits, hard=True)):
        assert set(sample.unique().tolist()) <= {0.0, 1.0}
        (sample * torch.arange(1000.0)).sum().backward()
        assert logits.grad.abs().sum() > 0
        logits.grad = None


def test_extreme_logits_and_small_temperatures_stay_finite():
    logits = torch.tensor([-1e30, -80.0, 0.0, 80.0, 1e30], requires_grad=True)
    for tau in (1e-8, 1e-3, 10.0):
        sample = gumbel_sigmoid(logits, tau)
        sample.sum().backward()
        assert torch.isfinite(sample).all() and torch.isfinite(logits.grad).all()
        assert sample[0] == 0 and sample[-1] == 1
        logits.grad = None
    with pytest.raises(ValueError, match="temperature"):
        gumbel_sigmoid(logits, 0.0)


def test_hard_concrete_has_exact_zeros_and_its_expected_l0():
    torch.manual_seed(0)
    logits = torch.full((SAMPLES,), 0.7, dtype=torch.float64)
    sample = hard_concrete(logits)
    assert sample.min() == 0 and sample.max() == 1 and 0 < (sample == 0).double().mean() < 1
    p_open = float(open_probability(logits[:1], "hard_concrete")[0])
    assert within_sampling_error(float((sample > 0).double().mean()), p_open)


@pytest.mark.parametrize("kind", ["linear", "exponential", "cosine"])
def test_schedules_hit_their_endpoints_and_are_monotone(kind):
    schedule = TemperatureSchedule(kind, start=2.0, end=0.05)
    values = [schedule(step, 37) for step in range(37)]
    assert values[0] == 2.0 and values[-1] == 0.05
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))
    rising = TemperatureSchedule(kind, start=0.1, end=1.0)
    assert [rising(s, 5) for s in (0, 4)] == [0.1, 1.0]
    assert TemperatureSchedule("constant", 0.7, 0.1)(3, 10) == 0.7
    with pytest.raises(ValueError, match="unknown temperature schedule"):
        TemperatureSchedule("step")
    with pytest.raises(ValueError, match="positive"):
        TemperatureSchedule("linear", start=0.0)


def model_and_ids(dtype=torch.float64):
    torch.manual_seed(0)
    model = randomise_(MambaClassifier(tiny_config(), num_labels=3)).to(dtype)
    return model, torch.randint(0, 37, (2, 9))


@pytest.mark.parametrize("granularity", ["element", "channel", "block"])
def test_masks_at_one_leave_the_base_model_and_its_parameter_names(granularity):
    model, ids = model_and_ids()
    names = [n for n, _ in model.named_parameters()]
    with torch.no_grad():
        before = model(ids)
    attach_masks(model, SITES, granularity=granularity, block_size=8)
    model.eval()
    with torch.no_grad():  # W * 1 is W; only the matmul's blocking may differ
        torch.testing.assert_close(model(ids), before, rtol=0, atol=1e-13)
    new_names = [n for n, _ in model.named_parameters()]
    assert [n for n in new_names if ".masks." not in n] == names
    model.train()
    model(ids).sum().backward()
    grads = [p.grad for n, p in model.named_parameters() if ".masks." in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_a_channel_masked_everywhere_has_an_exactly_zero_output_path():
    model, ids = model_and_ids()
    masks = attach_masks(model, SITES, granularity="channel")
    with torch.no_grad():
        masks[0].logits["channel"][5] = -1.0
    model.eval()
    mixer = model.backbone.layers[0].mixer
    seen = {}
    mixer.out_proj.register_forward_hook(lambda m, args, out: seen.update(y=args[0]))
    with torch.no_grad():
        model(ids)
        weight = mixer.out_proj.effective_weight()
    assert torch.equal(seen["y"][..., 5], torch.zeros_like(seen["y"][..., 5]))  # scan skipped
    assert torch.equal(weight[:, 5], torch.zeros_like(weight[:, 5]))
    assert torch.equal(masks[0].alive(), torch.arange(32) != 5)
    assert sparsity_report(model)["layers.0"]["in_proj.x"] == 1 / 32
    assert sparsity_report(model)["layers.1"]["in_proj.x"] == 0.0


def test_baking_freezes_the_alive_channels_and_keeps_the_outputs():
    """A deployed copy computes its alive channels once (not on every forward): the same
    channels, the same outputs, and later logit changes no longer count."""
    model, ids = model_and_ids()
    masks = attach_masks(model, SITES, granularity="channel")
    with torch.no_grad():
        masks[0].logits["channel"][[2, 5]] = -1.0
    model.eval()
    with torch.no_grad():
        expected = model(ids)
    baked = copy.deepcopy(model)
    bake_masks_(baked)
    frozen = baked.backbone.layers[0].mixer.masks
    assert frozen.frozen and not frozen.training
    assert torch.equal(frozen.alive(), masks[0].alive())
    assert "frozen_alive" in dict(frozen.named_buffers())  # moves with .to(device)
    with torch.no_grad():
        torch.testing.assert_close(baked(ids), expected, rtol=0, atol=1e-13)
        frozen.logits["channel"].fill_(1.0)
    assert torch.equal(frozen.alive(), masks[0].alive())


def test_block_masks_share_one_logit_per_block_of_consecutive_channels():
    model, _ = model_and_ids()
    masks = attach_masks(model, ["in_proj.x"], granularity="block", block_size=12)[0]
    assert masks.logits["block"].shape == (3,)  # ceil(32 / 12)
    with torch.no_grad():
        masks.logits["block"][1] = -1.0
    masks.eval()
    gate = masks.channel_gate()
    assert torch.equal(gate, ((torch.arange(32) < 12) | (torch.arange(32) >= 24)).double())
    with pytest.raises(MaskingError, match="apply the scan order before"):
        permute_channels(model.backbone.layers[0].mixer, torch.randperm(32))


@pytest.mark.parametrize("granularity", ["element", "channel"])
def test_masks_follow_the_channel_permutation_and_round_trip_through_a_file(granularity, tmp_path):
    model, ids = model_and_ids()
    base = copy.deepcopy(model)
    masks = attach_masks(model, SITES, granularity=granularity)
    torch.manual_seed(1)
    with torch.no_grad():
        for m in masks:
            for logit in m.logits.values():
                logit.copy_(torch.randn_like(logit))
    model.eval()
    with torch.no_grad():
        before = model(ids)
        for layer in model.backbone.layers:
            permute_channels(layer.mixer, torch.randperm(32))
        assert (model(ids) - before).abs().max() < 1e-12
    save_masks(model, tmp_path / "masks.safetensors")
    for layer, moved in zip(base.backbone.layers, model.backbone.layers, strict=True):
        state = moved.mixer.state_dict()
        layer.mixer.load_state_dict({k: v for k, v in state.items() if not k.startswith("masks.")})
    load_masks(base, tmp_path / "masks.safetensors")
    base.eval()
    with torch.no_grad():
        assert torch.equal(base(ids), model(ids))


def test_bad_mask_settings_name_the_problem(tmp_path):
    model, _ = model_and_ids()
    with pytest.raises(ValueError, match="unknown mask site"):
        attach_masks(model, ["in_proj.y"])
    with pytest.raises(MaskingError, match="granularity"):
        attach_masks(copy.deepcopy(model), ["out_proj"], granularity="row")
    with pytest.raises(MaskingError, match="distribution"):
        attach_masks(copy.deepcopy(model), ["out_proj"], distribution="gumbel")
    with pytest.raises(MaskingError, match="mask file not found"):
        load_masks(model, tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="unknown sparsity penalty"):
        SparsityPenalty("l1")


@pytest.mark.parametrize("kind", ["target", "lagrangian"])
def test_masks_learn_a_requested_sparsity(kind):
    model, ids = model_and_ids(torch.float32)
    attach_masks(model, ["in_proj.x"], granularity="channel")
    for name, param in model.named_parameters():
        param.requires_grad_(".masks." in name)
    logits = [p for n, p in model.named_parameters() if ".masks." in n]
    optimizer = torch.optim.Adam(logits, lr=0.1)
    penalty = SparsityPenalty(kind, weight=5.0, sparsity=0.5)
    schedule = TemperatureSchedule("exponential", 1.0, 0.2)
    labels = torch.tensor([0, 2])
    for step in range(150):
        set_temperature(model, schedule(step, 150))
        loss = torch.nn.functional.cross_entropy(model(ids), labels) + penalty(model)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert abs((1 - hard_density(model)) - 0.5) <= 0.1
    assert all(int(m.gate_steps) == 150 for m in mask_modules(model))
