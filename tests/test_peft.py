"""Pillar 3: importance from the masks, the quantile allocation, LoRA and IA3 parts (identity at
start, merge, masks, permutation, scan backends), parameter accounting, adapter files and the
export to Hugging Face PEFT."""

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from helpers import randomise_, tiny_config
from pydantic import ValidationError
from safetensors.torch import load_file

from autohm.config import PeftConfig
from autohm.masking import SITES, attach_masks, mask_modules
from autohm.masking.masks import mixers
from autohm.model import MambaClassifier, MambaLM
from autohm.model.checkpoint import normalise_keys
from autohm.ops import available_backends
from autohm.peft import (
    IA3,
    PEFT_MODULES,
    POLICIES,
    Allocation,
    LoRA,
    PeftError,
    allocate,
    apply_allocation,
    channel_importance,
    count_parameters,
    export_peft,
    load_adapter,
    merge_adapters,
    merged_copy,
    module_importance,
    save_adapter,
    unmerge_adapters,
)
from autohm.peft.importance import weight_gain
from autohm.peft.targets import ia3_held
from autohm.scan_order import permute_channels

D_INNER = 32  # tiny_config: d_model 16, expand 2; dt_rank 1, d_state 4 -> x_proj has 9 rows


def model_and_ids(dtype=torch.float64):
    """A random tiny classifier on the reference scan (every backend: see the backend test)."""
    torch.manual_seed(0)
    model = randomise_(MambaClassifier(tiny_config(), num_labels=3)).to(dtype)
    model.set_scan_backend("reference")
    return model, torch.randint(0, 37, (2, 9))


def mixer(model, layer):
    return model.backbone.layers[layer].mixer


def outputs(model, ids):
    model.eval()
    with torch.no_grad():
        return model(ids)


def every_module(methods=("lora", "ia3", "lora", "ia3"), rank=2, layers=2):
    """An allocation giving module j of PEFT_MODULES methods[j] in every layer."""
    return {
        f"layers.{i}.{name}": Allocation(method, rank if method == "lora" else None)
        for i in range(layers)
        for name, method in zip(PEFT_MODULES, methods, strict=True)
    }


@torch.no_grad()
def randomise_adapters_(model, scale=0.2):
    for module in model.modules():
        if isinstance(module, LoRA):
            module.B.copy_(scale * torch.randn_like(module.B))
        elif isinstance(module, IA3):
            module.alpha.copy_(1 + scale * torch.randn_like(module.alpha))


@torch.no_grad()
def mask_channels_(model, layer, channels):
    logits = mask_modules(model)[layer].logits["channel"]
    logits[list(channels)] = -2.0


def train_steps(model, ids, steps=3, lr=0.05):
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.1)  # decay moves all entries
    labels = torch.tensor([0, 2])
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(model(ids), labels).backward()
        optimizer.step()
    model.eval()


# importance


def test_importance_of_element_and_block_masks_from_hand_made_logits():
    model, _ = model_and_ids()
    element = attach_masks(model, ["in_proj.x", "x_proj.dt", "x_proj.B"], "element", layers=[0])
    block = attach_masks(model, ["dt_proj", "out_proj"], "block", block_size=12, layers=[1])
    with torch.no_grad():
        logits = element[0].logits
        logits["in_proj_x"].fill_(2.0)
        logits["in_proj_x"][0] = -4.0  # channel 0's row
        logits["x_proj_dt"].fill_(1.0)
        logits["x_proj_B"].fill_(-3.0)
        block[0].logits["block"].copy_(torch.tensor([1.0, -2.0, 4.0]))  # 12, 12, 8 channels
        element[0].gate_sum_in_proj_x.fill_(3.0)
        element[0].gate_sum_x_proj_dt.fill_(1.0)
        element[0].gate_sum_x_proj_B.fill_(2.0)
        element[0].gate_steps.fill_(4)
    logit = module_importance(model, "logit")
    assert list(logit) == [f"layers.{i}.{m}" for i in range(2) for m in PEFT_MODULES]
    assert logit["layers.0.in_proj"] == pytest.approx((31 * 16 * 2 + 16 * 4) / 512)
    assert logit["layers.0.x_proj"] == pytest.approx((32 * 1 + 128 * 3) / 160)
    assert logit["layers.1.dt_proj"] == logit["layers.1.out_proj"] == pytest.approx(68 / 32)
    gate = module_importance(model, "mean_gate")
    assert gate["layers.0.in_proj"] == pytest.approx(0.75)
    assert gate["layers.0.x_proj"] == pytest.approx((32 * 0.25 + 128 * 0.5) / 160)
    expected = torch.sigmoid(torch.tensor([1.0, -2.0, 4.0], dtype=torch.float64))  # no steps yet
    per_channel = expected.repeat_interleave(12)[:32]
    assert gate["layers.1.out_proj"] == pytest.approx(float(per_channel.mean()))

    channels = {k: v.double() for k, v in channel_importance(model, "logit").items()}
    assert set(channels) == {0, 1}
    assert torch.allclose(channels[0][0], torch.tensor(8 / 3, dtype=torch.float64))
    assert torch.allclose(channels[0][1:], torch.full((31,), 2.0, dtype=torch.float64))
    assert torch.equal(
        channels[1], torch.tensor([1.0, 2.0, 4.0]).repeat_interleave(12)[:32].double()
    )
    assert torch.allclose(channel_importance(model, "mean_gate")[1].double(), per_channel)

    unmasked = ["layers.0.dt_proj", "layers.0.out_proj", "layers.1.in_proj", "layers.1.x_proj"]
    masked = [k for k in logit if k not in unmasked]
    gains = {k: weight_gain(mixer(model, int(k[7])).get_submodule(k[9:]).weight) for k in unmasked}
    ratio = logit[unmasked[0]] / gains[unmasked[0]]
    for key in unmasked:  # ranked by weight magnitude, centred on the masked modules
        assert logit[key] == pytest.approx(ratio * gains[key])
    mean = sum(logit[k] for k in masked) / len(masked)
    assert sum(logit[k] for k in unmasked) / len(unmasked) == pytest.approx(mean)
    with pytest.raises(PeftError, match="unknown importance kind 'abs'"):
        module_importance(model, "abs")


def test_channel_masks_share_one_importance_per_layer_and_models_without_masks_still_rank():
    model, _ = model_and_ids()
    plain = module_importance(model, "logit")
    assert plain == {
        key: pytest.approx(weight_gain(mixer(model, int(key[7])).get_submodule(key[9:]).weight))
        for key in plain
    }
    masks = attach_masks(model, ["in_proj.z", "out_proj"], "channel")
    with torch.no_grad():
        masks[0].logits["channel"].copy_(torch.linspace(-3, 5, D_INNER))
    logit = module_importance(model, "logit")
    value = float(torch.linspace(-3, 5, D_INNER).abs().double().mean())
    assert logit["layers.0.in_proj"] == logit["layers.0.out_proj"] == pytest.approx(value)
    assert torch.equal(channel_importance(model, "logit")[0], torch.linspace(-3, 5, 32).abs())


# allocation


def test_allocation_by_quantiles_splits_as_expected():
    importance = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}
    split = allocate(importance, lora_quantile=0.5, ia3_quantile=0.25, rank=8)
    assert {k: a.method for k, a in split.items()} == {
        "a": "frozen", "b": "ia3", "c": "lora", "d": "lora",
    }  # fmt: skip
    assert split["c"] == Allocation("lora", 8, 3.0) and split["b"].rank is None
    assert all(a.method == "lora" for a in allocate(importance, 0.0, 0.0, 4).values())
    top = allocate(importance, 0.75, 0.75, 4)  # t = 3.25: only d, nothing in between
    assert [a.method for a in top.values()] == ["frozen", "frozen", "frozen", "lora"]


def test_allocation_never_splits_ties_and_handles_all_equal_importances():
    ties = {"a": 1.0, "b": 2.0, "c": 2.0, "d": 2.0, "e": 3.0}
    split = allocate(ties, 0.5, 0.0, 4)  # the median is 2: every tie at it gets LoRA
    assert [a.method for a in split.values()] == ["ia3", "lora", "lora", "lora", "lora"]
    split = allocate(ties, 0.9, 0.2, 4)  # t_ia3 = 1.8: all three tied modules get IA3
    assert [a.method for a in split.values()] == ["frozen", "ia3", "ia3", "ia3", "lora"]
    equal = dict.fromkeys("abc", 0.7)
    assert {a.method for a in allocate(equal, 0.99, 0.5, 4).values()} == {"lora"}
    assert {a.method for a in allocate(equal, 1.0, 0.5, 4).values()} == {"ia3"}
    assert {a.method for a in allocate(equal, 1.0, 1.0, 4).values()} == {"frozen"}


def test_allocation_ranks_per_module_and_clear_errors():
    importance = {"layers.0.in_proj": 3.0, "layers.0.out_proj": 2.0, "layers.1.x_proj": 1.0}
    split = allocate(importance, 0.0, 0.0, {"in_proj": 8, "out_proj": 4, "layers.1.x_proj": 2})
    assert [a.rank for a in split.values()] == [8, 4, 2]
    with pytest.raises(ValueError, match="0 <= ia3_quantile <= lora_quantile <= 1"):
        allocate(importance, 0.3, 0.5, 4)
    with pytest.raises(PeftError, match="lora_quantile=1.5"):
        allocate(importance, 1.5, 0.5, 4)
    with pytest.raises(PeftError, match=r"no LoRA rank for 'layers.1.x_proj'"):
        allocate(importance, 0.0, 0.0, {"in_proj": 8, "out_proj": 4})
    with pytest.raises(PeftError, match="'conv1d' is neither a module"):
        allocate(importance, 0.0, 0.0, {"conv1d": 8})
    with pytest.raises(PeftError, match="positive integer, got 0"):
        allocate(importance, 0.0, 0.0, 0)
    with pytest.raises(PeftError, match="not a finite number"):
        allocate({"a": float("nan")}, 0.5, 0.5, 4)
    with pytest.raises(PeftError, match="unknown PEFT method 'dora'"):
        Allocation("dora")


# LoRA and IA3 on the model


def test_adapters_start_as_the_identity_and_only_adapters_and_head_train():
    model, ids = model_and_ids()
    attach_masks(model, SITES, "channel")
    names = [n for n, _ in model.named_parameters()]
    before = outputs(model, ids)
    apply_allocation(model, every_module())
    assert torch.equal(outputs(model, ids), before)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {
        n
        for n, _ in model.named_parameters()
        if n.startswith("score.") or ".lora." in n or ".ia3." in n
    }
    assert [n for n in names if n in dict(model.named_parameters())] == names  # base names kept
    assert mixer(model, 0).out_proj.ia3.on_input and not mixer(model, 0).x_proj.ia3.on_input
    with pytest.raises(PeftError, match="already has adapters"):
        apply_allocation(model, every_module())
    with pytest.raises(PeftError, match="'layers.5.in_proj' is not a module"):
        apply_allocation(model_and_ids()[0], {"layers.5.in_proj": Allocation("ia3")})


def test_merged_equals_unmerged_and_unmerge_restores_the_weights():
    model, ids = model_and_ids()
    masks = attach_masks(model, SITES, "channel")
    mask_channels_(model, 0, [3, 4])
    apply_allocation(model, every_module(("lora", "lora", "ia3", "ia3"), rank=3))
    randomise_adapters_(model)
    weights = {n: p.clone() for n, p in model.named_parameters()}
    unmerged = outputs(model, ids)
    merge_adapters(model)
    torch.testing.assert_close(outputs(model, ids), unmerged, rtol=0, atol=1e-12)
    assert not torch.equal(model.backbone.layers[0].mixer.in_proj.weight, weights[
        "backbone.layers.0.mixer.in_proj.weight"
    ])  # fmt: skip
    unmerge_adapters(model)
    for name, param in model.named_parameters():
        torch.testing.assert_close(param, weights[name], rtol=0, atol=1e-12)
    torch.testing.assert_close(outputs(model, ids), unmerged, rtol=0, atol=1e-12)
    assert masks[0].logits["channel"][3] < 0


def test_masked_weights_stay_exactly_zero_after_training_steps():
    model, ids = model_and_ids()
    attach_masks(model, ["in_proj.x", "in_proj.z", "out_proj"], "channel", layers=[0])
    attach_masks(model, ["x_proj.B", "dt_proj"], "element", layers=[1])
    dead = [1, 5, 7]
    mask_channels_(model, 0, dead)
    element = mask_modules(model)[1]
    with torch.no_grad():
        element.logits["x_proj_B"][0] = -1.0  # x_proj row 1 (dt_rank + 0): removed entirely
        element.logits["x_proj_B"][2, :5] = -1.0  # a partial row: IA3 still trains there
        element.logits["dt_proj"][4] = -1.0
    apply_allocation(model, every_module(("lora", "ia3", "lora", "ia3")))
    lora0 = mixer(model, 0).in_proj.lora
    ia3_out, ia3_x = mixer(model, 0).out_proj.ia3, mixer(model, 1).x_proj.ia3
    assert ia3_out.frozen.nonzero().flatten().tolist() == dead
    assert ia3_x.frozen.nonzero().flatten().tolist() == [1]
    train_steps(model, ids)
    assert mask_modules(model)[0].training is False  # held hard while the model trained
    assert int(mask_modules(model)[0].gate_steps) == 0
    rows = dead + [32 + c for c in dead]
    assert torch.equal(lora0.B[rows], torch.zeros_like(lora0.B[rows]))
    assert lora0.B.abs().sum() > 0  # the other rows did learn
    assert torch.equal(ia3_out.vector()[dead], torch.ones(3, dtype=torch.float64))
    assert (ia3_out.vector() != 1).sum() == D_INNER - 3
    assert ia3_x.vector()[1] == 1 and ia3_x.vector()[3] != 1
    for layer in (0, 1):
        for name in PEFT_MODULES:
            module = getattr(mixer(model, layer), name)
            if module.mask is None:
                continue
            mask = module.mask().expand_as(module.weight)
            effective = module.effective_weight().detach()
            assert mask.eq(0).any() and torch.equal(effective[mask == 0], mask[mask == 0])
    plain = merged_copy(model)
    weight = mixer(plain, 0).out_proj.weight
    assert torch.equal(weight[:, dead], torch.zeros_like(weight[:, dead]))


def test_the_parameter_count_matches_a_hand_computation():
    model, _ = model_and_ids()
    attach_masks(model, ["in_proj.x", "out_proj"], "channel", layers=[0])
    attach_masks(model, ["x_proj.B", "dt_proj"], "element", layers=[1])
    mask_channels_(model, 0, [1, 5, 7])
    element = mask_modules(model)[1]
    with torch.no_grad():
        element.logits["x_proj_B"][0] = -1.0  # removes x_proj row 1 entirely
        element.logits["dt_proj"][4] = -1.0  # removes dt_proj row 4 (dt_rank 1: one entry)
    allocation = {
        "layers.0.in_proj": Allocation("lora", 2),  # A 2x16 + B 64x2 = 160; 3 x rows removed
        "layers.0.out_proj": Allocation("ia3"),  # 32 inputs; 3 columns removed
        "layers.1.x_proj": Allocation("ia3"),  # 9 outputs; row 1 removed, no bias
        "layers.1.dt_proj": Allocation("lora", 3),  # A 3x1 + B 32x3 = 99; row 4 removed
        "layers.1.in_proj": Allocation("frozen"),
    }
    apply_allocation(model, allocation)
    counts = count_parameters(model)
    head = 16 * 3 + 3
    masked = 3 * 2 + 3 + 1 + 1 * 3
    assert counts.params_masked == masked
    assert counts.params == 160 + 32 + 9 + 99 + head - masked
    assert counts.params_total == sum(p.numel() for p in model.parameters())
    assert not ia3_held(mixer(model, 1), "dt_proj").any()  # dt_proj has a bias to scale


def test_adapters_follow_the_channel_permutation_and_keep_the_outputs():
    model, ids = model_and_ids()
    attach_masks(model, SITES, "channel")
    mask_channels_(model, 0, [2, 9, 30])
    apply_allocation(model, every_module(("lora", "ia3", "lora", "ia3"), rank=3))
    randomise_adapters_(model)
    before, counts = outputs(model, ids), count_parameters(model)
    torch.manual_seed(3)
    for layer in model.backbone.layers:
        permute_channels(layer.mixer, torch.randperm(D_INNER))
    torch.testing.assert_close(outputs(model, ids), before, rtol=0, atol=1e-12)
    assert count_parameters(model) == counts
    ia3 = mixer(model, 0).out_proj.ia3
    assert torch.equal(ia3.frozen, ia3_held(mixer(model, 0), "out_proj"))
    merge_adapters(model)
    torch.testing.assert_close(outputs(model, ids), before, rtol=0, atol=1e-12)


@pytest.mark.parametrize("backend", available_backends("cpu"))
def test_every_scan_backend_computes_with_the_effective_weights(backend):
    model, ids = model_and_ids(torch.float32)
    attach_masks(model, SITES, "channel")
    mask_channels_(model, 1, [0, 31])
    apply_allocation(model, every_module(("lora", "lora", "ia3", "ia3"), rank=2))
    model.set_scan_backend(backend)
    at_start = outputs(model, ids)
    randomise_adapters_(model)
    plain = merged_copy(model)  # plain projections holding M * merged(W)
    plain.set_scan_backend("reference")
    adapted = outputs(model, ids)
    torch.testing.assert_close(adapted, outputs(plain, ids), rtol=1e-4, atol=1e-5)
    assert (adapted - at_start).abs().max() > 1e-2  # the adapters are not bypassed


# adapter files and export


def fine_tuned(train_masks=False):
    """(base copy, fine-tuned model with masks and adapters, ids, allocation)."""
    model, ids = model_and_ids()
    base = copy.deepcopy(model)
    attach_masks(model, SITES, "channel")
    mask_channels_(model, 0, [4, 6])
    mask_channels_(model, 1, [0])
    importance = module_importance(model, "logit")
    allocation = allocate(importance, 0.5, 0.25, {"in_proj": 4, "x_proj": 2, "dt_proj": 2,
                                                  "out_proj": 3})  # fmt: skip
    apply_allocation(model, allocation, lora_alpha=8.0, train_masks=train_masks)
    train_steps(model, ids)
    return base, model, ids, allocation


@pytest.mark.parametrize("train_masks", [False, True])
def test_saved_adapter_reloads_onto_the_base_model_with_identical_outputs(train_masks, tmp_path):
    base, model, ids, allocation = fine_tuned(train_masks)
    save_adapter(model, tmp_path, {"task": "demo"})
    tensors = load_file(str(tmp_path / "adapter.safetensors"))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(tensors) == trainable and "score.weight" in tensors
    assert any(".masks." in name for name in tensors) == train_masks
    counts = count_parameters(model)
    assert counts.params + counts.params_masked == sum(t.numel() for t in tensors.values())
    assert counts.params_masked > 0
    assert set(load_file(str(tmp_path / "masks.safetensors"))) == {
        "layers.0.channel", "layers.1.channel",
    }  # fmt: skip
    record = json.loads((tmp_path / "adapter_config.json").read_text())
    assert record["config"] == {"task": "demo"} and record["lora_alpha"] == 8.0
    settings = load_adapter(base, tmp_path)
    assert settings.allocation == allocation
    assert torch.equal(outputs(base, ids), outputs(model, ids))
    assert count_parameters(base) == counts

    wrong = MambaClassifier(tiny_config(), num_labels=4).double()
    with pytest.raises(PeftError, match=r"'score.weight' has shape \(3, 16\)"):
        load_adapter(wrong, tmp_path)
    (tmp_path / "adapter_config.json").write_text('{"format": "autohm-adapter"}')
    with pytest.raises(PeftError, match="adapter_config.json: missing key 'allocation'"):
        load_adapter(copy.deepcopy(base), tmp_path)
    with pytest.raises(PeftError, match="adapter config not found"):
        load_adapter(base, tmp_path / "nowhere")
    with pytest.raises(PeftError, match="no adapters"):
        save_adapter(MambaClassifier(tiny_config(), 3), tmp_path / "x")


def test_export_writes_peft_files_that_peft_loads_and_a_merged_checkpoint(tmp_path):
    peft = pytest.importorskip(
        "peft", reason="the test extra installs peft", exc_type=ModuleNotFoundError
    )
    transformers = pytest.importorskip("transformers", reason="the test extra installs it")
    base, model, ids, allocation = fine_tuned()
    export_peft(model, allocation, tmp_path)
    lora = peft.LoraConfig.from_pretrained(str(tmp_path / "lora"))
    ia3 = peft.IA3Config.from_pretrained(str(tmp_path / "ia3"))
    chosen = {m: [k for k, a in allocation.items() if a.method == m] for m in ("lora", "ia3")}
    kept = [k for k in chosen["lora"] if k.rsplit(".", 1)[1] in ("in_proj", "x_proj")]
    assert kept and chosen["ia3"] and len(kept) < len(chosen["lora"])  # some are left out
    names = {k: f"layers.{k.split('.')[1]}.mixer.{k.split('.')[2]}" for k in allocation}
    assert set(lora.target_modules) == {names[k] for k in kept}
    assert lora.rank_pattern == {names[k]: allocation[k].rank for k in kept}
    assert set(lora.alpha_pattern.values()) == {8.0} and lora.task_type == "CAUSAL_LM"
    assert set(ia3.target_modules) == {names[k] for k in chosen["ia3"]}
    assert set(ia3.feedforward_modules) == {n for n in ia3.target_modules if "out_proj" in n}
    note = (tmp_path / "NOTE.md").read_text()
    for key in set(chosen["lora"]) - set(kept):
        assert f"Left out: the LoRA of {names[key]}" in note

    # PEFT takes both configs on transformers' Mamba, with the ranks autohm trained
    hf_config = transformers.MambaConfig(vocab_size=40, hidden_size=16, state_size=4,
                                         num_hidden_layers=2, time_step_rank=1)  # fmt: skip
    fresh = peft.get_peft_model(transformers.MambaForCausalLM(hf_config), lora)
    assert fresh.get_nb_trainable_parameters()[0] == sum(
        p.numel() for k in kept for p in (_part(model, k).A, _part(model, k).B)
    )
    peft.get_peft_model(transformers.MambaForCausalLM(hf_config), ia3)
    base.float().save_pretrained(tmp_path / "base")  # the hybrid trial's LoRA loads onto it
    loaded = peft.PeftModel.from_pretrained(
        transformers.MambaForCausalLM.from_pretrained(tmp_path / "base"), tmp_path / "lora"
    )
    trained = {k: p for k, p in loaded.named_parameters() if "lora_B" in k}
    assert len(trained) == len(kept) and all(p.abs().sum() > 0 for p in trained.values())

    merged = MambaClassifier.from_pretrained(tmp_path / "merged").eval()
    theirs = transformers.MambaModel.from_pretrained(tmp_path / "merged").eval()
    with torch.no_grad():  # the merged checkpoint is transformers' too
        hidden = theirs(ids, use_cache=False).last_hidden_state
        torch.testing.assert_close(hidden.float(), merged.backbone(ids), rtol=0, atol=1e-5)
    merged = merged.double()  # it loads in float32: refill
    state = normalise_keys(load_file(str(tmp_path / "merged" / "model.safetensors")), True)
    merged.load_state_dict(state | load_file(str(tmp_path / "merged" / "head.safetensors")))
    torch.testing.assert_close(outputs(merged, ids), outputs(model, ids), rtol=0, atol=1e-10)
    weight = merged.backbone.layers[0].mixer.out_proj.weight
    assert torch.equal(weight[:, [4, 6]], torch.zeros_like(weight[:, [4, 6]]))


def _part(model, key):
    _, layer, name = key.split(".")
    return getattr(model.backbone.layers[int(layer)].mixer, name).lora


@torch.no_grad()
def test_peft_reproduces_the_lora_part_on_transformers_mamba_in_the_base_order(tmp_path):
    """The exported LoRA weights, loaded by PEFT onto transformers' Mamba with the base weights,
    give autohm's backbone outputs with the same LoRA parts, although autohm trained them on
    permuted channels."""
    peft = pytest.importorskip("peft", exc_type=ModuleNotFoundError)
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    base = randomise_(MambaLM(tiny_config())).eval()
    base.save_pretrained(tmp_path / "base")
    model = MambaClassifier(base.config, 3, backbone=copy.deepcopy(base.backbone)).eval()
    orders = [torch.randperm(32).tolist() for _ in range(2)]
    for mixer, order in zip(mixers(model), orders, strict=True):
        permute_channels(mixer, order)
    allocation = {
        "layers.0.in_proj": Allocation("lora", 2), "layers.0.x_proj": Allocation("lora", 3),
        "layers.1.x_proj": Allocation("lora", 2), "layers.1.in_proj": Allocation("lora", 4),
    }  # fmt: skip
    apply_allocation(model, allocation, lora_alpha=6.0)
    for name, param in model.named_parameters():
        if ".lora." in name:
            param.copy_(0.3 * torch.randn_like(param))
    export_peft(model, allocation, tmp_path / "peft", orders)
    theirs = transformers.MambaForCausalLM.from_pretrained(tmp_path / "base").eval()
    theirs = peft.PeftModel.from_pretrained(theirs, tmp_path / "peft" / "lora").eval()
    ids = torch.randint(0, 37, (2, 9))
    expected = model.backbone(ids)
    got = theirs.base_model.model.backbone(ids, use_cache=False).last_hidden_state
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    unadapted = transformers.MambaForCausalLM.from_pretrained(tmp_path / "base").eval()
    assert not torch.allclose(unadapted.backbone(ids).last_hidden_state, expected, atol=1e-3)


def test_each_mode_allocates_through_its_policy():
    importance = {f"layers.{i}.{m}": float(i) for i in range(2) for m in PEFT_MODULES}
    ranks = {"in_proj": 8, "x_proj": 4, "dt_proj": 2, "out_proj": 1}
    lora = POLICIES["lora"](importance, PeftConfig(mode="lora", rank=ranks))
    assert {key: (a.method, a.rank) for key, a in lora.items()} == {
        key: ("lora", ranks[key.rsplit(".", 1)[1]]) for key in importance
    }
    for mode, method in (("ia3", "ia3"), ("full", "frozen"), ("head", "frozen")):
        chosen = POLICIES[mode](importance, PeftConfig(mode=mode))
        assert {a.method for a in chosen.values()} == {method}
    hybrid = POLICIES["hybrid"](importance, PeftConfig(lora_quantile=0.5, ia3_quantile=0.0))
    assert hybrid == allocate(importance, 0.5, 0.0, 4)


def test_a_rank_per_module_must_name_every_module():
    with pytest.raises(ValidationError, match="missing: x_proj, dt_proj, out_proj"):
        PeftConfig(mode="lora", rank={"in_proj": 8})
    with pytest.raises(ValidationError, match="'nope' is not one of hybrid"):
        PeftConfig(mode="nope")
