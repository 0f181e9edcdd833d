"""Recurrent decoding equals the full forward; classification pooling honours padding."""

import pytest
import torch
from helpers import randomise_, tiny_config

from autohm.errors import AutohmError
from autohm.model import MambaClassifier, MambaLM


@pytest.fixture
def lm():
    return randomise_(MambaLM(tiny_config())).eval()


@torch.no_grad()
def test_step_decoding_equals_full_forward(lm):
    ids = torch.randint(0, 37, (3, 10))
    full = lm(ids)
    states = lm.backbone.empty_states(3)
    for t in range(ids.shape[1]):
        logits, states = lm.step(ids[:, t], states)
        torch.testing.assert_close(logits, full[:, t], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("prompt_length", [2, 7])  # shorter and longer than d_conv
@torch.no_grad()
def test_prefill_then_step_equals_full_forward(lm, prompt_length):
    ids = torch.randint(0, 37, (2, 10))
    full = lm(ids)
    logits, states = lm.prefill(ids[:, :prompt_length])
    torch.testing.assert_close(logits, full[:, :prompt_length])
    for t in range(prompt_length, ids.shape[1]):
        logits, states = lm.step(ids[:, t], states)
        torch.testing.assert_close(logits, full[:, t], rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_greedy_generate_follows_the_argmax_of_the_full_forward(lm):
    prompt = torch.randint(0, 37, (2, 4))
    out = lm.generate(prompt, max_new_tokens=5)
    assert out.shape == (2, 9) and torch.equal(out[:, :4], prompt)
    full = lm(out)[..., :37]
    torch.testing.assert_close(out[:, 4:], full[:, 3:-1].argmax(-1), rtol=0, atol=0)


@pytest.mark.parametrize("pooling", ["last", "mean"])
@torch.no_grad()
def test_classifier_padding_is_honoured_left_and_right(pooling):
    model = randomise_(MambaClassifier(tiny_config(), num_labels=3, pooling=pooling)).eval()
    tokens = torch.randint(1, 37, (1, 6))
    unpadded = model(tokens)
    pad = torch.zeros(1, 4, dtype=torch.long)
    ones, zeros = torch.ones(1, 6), torch.zeros(1, 4)
    right = model(torch.cat([tokens, pad], 1), torch.cat([ones, zeros], 1))
    left = model(torch.cat([pad, tokens], 1), torch.cat([zeros, ones], 1))
    torch.testing.assert_close(right, unpadded, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(left, unpadded, rtol=1e-5, atol=1e-6)
    # without the mask the padding does change the answer: the test can tell them apart
    assert not torch.allclose(model(torch.cat([pad, tokens], 1)), unpadded, atol=1e-3)


@torch.no_grad()
def test_classifier_batches_sequences_of_different_lengths():
    model = randomise_(MambaClassifier(tiny_config(), num_labels=4, pooling="mean")).eval()
    a, b = torch.randint(1, 37, (1, 5)), torch.randint(1, 37, (1, 8))
    batch = torch.zeros(2, 8, dtype=torch.long)
    batch[0, :5], batch[1] = a[0], b[0]
    mask = (torch.arange(8) < torch.tensor([[5], [8]])).float()
    torch.testing.assert_close(model(batch, mask), torch.cat([model(a), model(b)]))


def test_classifier_shares_a_pretrained_backbone(tmp_path, lm):
    lm.save_pretrained(tmp_path / "base")
    clf = MambaClassifier.from_pretrained(tmp_path / "base", num_labels=2)
    for key, value in lm.backbone.state_dict().items():
        torch.testing.assert_close(clf.backbone.state_dict()[key], value, rtol=0, atol=0)
    assert clf(torch.randint(0, 37, (3, 5))).shape == (3, 2)


def test_scan_backend_can_be_pinned_and_is_validated(lm):
    lm.set_scan_backend("reference")
    assert {layer.mixer.scan_backend for layer in lm.backbone.layers} == {"reference"}
    with pytest.raises(AutohmError, match="unknown scan backend 'fast'"):
        lm.set_scan_backend("fast")


def test_model_trains_through_every_parameter(lm):
    ids = torch.randint(0, 37, (2, 6))
    loss = torch.nn.functional.cross_entropy(lm(ids)[:, :-1].reshape(-1, 40), ids[:, 1:].flatten())
    loss.backward()
    no_grad = [n for n, p in lm.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert no_grad == []


@torch.no_grad()
def test_bfloat16_model_runs_forward_and_decoding():
    model = MambaLM(tiny_config()).to(torch.bfloat16).eval()
    ids = torch.randint(0, 37, (2, 5))
    assert model(ids).dtype == torch.bfloat16
    logits, _ = model.step(ids[:, 0], model.backbone.empty_states(2))
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()
