"""MambaLM against transformers' MambaForCausalLM: the same weights give the same logits, read
from the transformers layout and from the state-spaces layout."""

import json

import pytest
import torch
from helpers import randomise_, tiny_config

from autohm.errors import CheckpointError
from autohm.model import MambaClassifier, MambaLM

transformers = pytest.importorskip("transformers", reason="the test extra installs transformers")


def hf_model(tmp_path, **overrides):
    """A tiny random transformers Mamba saved with save_pretrained; returns (model, directory)."""
    config = transformers.MambaConfig(
        vocab_size=53,
        hidden_size=24,
        state_size=5,
        num_hidden_layers=3,
        conv_kernel=4,
        expand=2,
        time_step_rank=3,
        **overrides,
    )
    model = randomise_(transformers.MambaForCausalLM(config)).eval()
    directory = tmp_path / "hf"
    model.save_pretrained(directory)
    return model, directory


def hf_logits(model, ids):
    with torch.no_grad():
        return model(ids, use_cache=False).logits


@pytest.mark.parametrize(
    "overrides",
    [{}, {"tie_word_embeddings": False}, {"use_bias": True, "use_conv_bias": False}],
    ids=["tied", "untied", "biases"],
)
def test_logits_match_transformers(tmp_path, overrides):
    reference, directory = hf_model(tmp_path, **overrides)
    ours = MambaLM.from_pretrained(directory).eval()
    ids = torch.randint(0, 53, (2, 11))
    with torch.no_grad():
        got = ours(ids)
    expected = hf_logits(reference, ids)
    diff = (got - expected).abs().max().item()
    print(f"max |logit difference| vs transformers ({overrides or 'tied'}): {diff:.3e}")
    assert got.shape == expected.shape
    assert diff < 1e-4


def write_state_spaces(model, directory):
    """The same weights in mamba_ssm's layout: nested ssm_cfg, backbone.embedding, a .bin file."""
    directory.mkdir()
    c = model.config
    config = {
        "d_model": c.hidden_size,
        "d_intermediate": 0,
        "n_layer": c.num_hidden_layers,
        "vocab_size": c.vocab_size,
        "rms_norm": True,
        "residual_in_fp32": True,
        "fused_add_norm": True,
        "pad_vocab_size_multiple": 1,
        "tie_embeddings": True,
        "attn_layer_idx": [],
        "attn_cfg": {},
        "ssm_cfg": {
            "layer": "Mamba1",
            "d_state": c.state_size,
            "d_conv": c.conv_kernel,
            "expand": c.expand,
            "dt_rank": c.time_step_rank,
        },
    }
    (directory / "config.json").write_text(json.dumps(config))
    state = {
        k.replace("backbone.embeddings.", "backbone.embedding."): v.clone()
        for k, v in model.state_dict().items()
    }
    torch.save(state, directory / "pytorch_model.bin")  # includes the tied lm_head, as mamba_ssm


def test_state_spaces_layout_gives_the_same_logits(tmp_path):
    reference, _ = hf_model(tmp_path)
    write_state_spaces(reference, tmp_path / "ss")
    ours = MambaLM.from_pretrained(tmp_path / "ss").eval()
    ids = torch.randint(0, 53, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), hf_logits(reference, ids), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("format", ["state-spaces", "transformers"])
def test_save_pretrained_round_trip(tmp_path, format):
    reference, directory = hf_model(tmp_path)
    ours = MambaLM.from_pretrained(directory).eval()
    saved = ours.save_pretrained(tmp_path / "ours", format=format)
    assert sorted(p.name for p in saved.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((saved / "config.json").read_text())
    if format == "state-spaces":
        assert config["d_model"] == 24 and config["ssm_cfg"]["d_state"] == 5
    else:
        assert config["model_type"] == "mamba" and config["hidden_size"] == 24
    again = MambaLM.from_pretrained(saved).eval()
    ids = torch.randint(0, 53, (1, 7))
    with torch.no_grad():
        torch.testing.assert_close(again(ids), ours(ids), rtol=0, atol=0)


@pytest.mark.parametrize(
    "overrides",
    [{}, {"tie_embeddings": False}, {"bias": True, "conv_bias": False}],
    ids=["tied", "untied", "biases"],
)
def test_what_autohm_saves_loads_in_transformers_with_the_same_logits(tmp_path, overrides):
    ours = randomise_(MambaLM(tiny_config(**overrides))).eval()
    ours.save_pretrained(tmp_path / "ours")  # transformers' layout by default
    theirs = transformers.MambaForCausalLM.from_pretrained(tmp_path / "ours").eval()
    ids = torch.randint(0, 37, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(hf_logits(theirs, ids), ours(ids), rtol=0, atol=1e-5)


def test_a_saved_classifier_backbone_loads_in_transformers(tmp_path):
    classifier = randomise_(MambaClassifier(tiny_config(), num_labels=3)).eval()
    classifier.save_pretrained(tmp_path / "clf")
    theirs = transformers.MambaModel.from_pretrained(tmp_path / "clf").eval()
    ids = torch.randint(0, 37, (2, 9))
    with torch.no_grad():
        expected = classifier.backbone(ids)
        got = theirs(ids, use_cache=False).last_hidden_state
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_what_transformers_cannot_hold_is_saved_in_the_state_spaces_layout(tmp_path):
    compact = MambaLM(tiny_config(layer_d_inner=[20, 32], x_proj_bias=True))
    with pytest.raises(CheckpointError, match="widths of their own .* format='state-spaces'"):
        compact.save_pretrained(tmp_path / "a", format="transformers")
    assert "layer_d_inner" in json.loads(compact.save_pretrained(tmp_path / "b").joinpath(
        "config.json").read_text())  # fmt: skip
    layer_norm = MambaLM(tiny_config(rms_norm=False))
    assert "ssm_cfg" in json.loads(layer_norm.save_pretrained(tmp_path / "c").joinpath(
        "config.json").read_text())  # fmt: skip
    with pytest.raises(CheckpointError, match="format 'onnx' is not one of"):
        layer_norm.save_pretrained(tmp_path / "d", format="onnx")


def test_bare_transformers_backbone_loads(tmp_path):
    """A MambaModel checkpoint (no backbone. prefix, no head) gives the same hidden states."""
    config = transformers.MambaConfig(
        vocab_size=40, hidden_size=16, state_size=4, num_hidden_layers=2, time_step_rank=2
    )
    reference = randomise_(transformers.MambaModel(config)).eval()
    reference.save_pretrained(tmp_path / "bare")
    ours = MambaLM.from_pretrained(tmp_path / "bare").eval()
    ids = torch.randint(0, 40, (2, 6))
    with torch.no_grad():
        expected = reference(ids, use_cache=False).last_hidden_state
        torch.testing.assert_close(ours.backbone(ids), expected, rtol=1e-4, atol=1e-4)
