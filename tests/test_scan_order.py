"""Pillar 1 beyond the solvers: streaming statistics equal numpy on the concatenated data, the
cost matrix has no NaN, and permuting channels leaves the model's outputs unchanged."""

import numpy as np
import pytest
import torch
from helpers import randomise_, tiny_config

from autohm.errors import AutohmError
from autohm.model import MambaClassifier, MambaLM
from autohm.scan_order.permute import inverse_permutation, permute_channels, permute_state
from autohm.scan_order.statistics import (
    StreamingCovariance,
    collect_statistics,
    correlation_cost,
)


@pytest.mark.parametrize(
    "dtype, rtol, atol",
    [(torch.float64, 1e-10, 1e-12), (torch.float32, 1e-5, 1e-6)],  # float32: per-batch products
)
def test_streaming_covariance_equals_numpy_on_the_concatenation(dtype, rtol, atol):
    rng = np.random.default_rng(0)
    chunks = [rng.normal(size=(n, 6)) @ rng.normal(size=(6, 6)) + 3.0 for n in (1, 7, 50, 2)]
    chunks = [torch.from_numpy(chunk).to(dtype) for chunk in chunks]
    acc = StreamingCovariance(6)
    for chunk in chunks:
        acc.update(chunk)
    data = torch.cat(chunks).double().numpy()
    np.testing.assert_allclose(acc.mean.numpy(), data.mean(0), rtol=1e-12)
    np.testing.assert_allclose(acc.covariance().numpy(), np.cov(data.T), rtol=rtol)
    np.testing.assert_allclose(acc.correlation().numpy(), np.corrcoef(data.T), atol=atol)


def test_constant_channels_get_a_defined_cost():
    data = torch.randn(100, 4, dtype=torch.float64)
    data[:, 2] = 5.0
    acc = StreamingCovariance(4)
    acc.update(data)
    cost = correlation_cost(acc)
    assert np.isfinite(cost).all()
    assert np.allclose(np.diag(cost), 0) and np.allclose(cost, cost.T)
    assert np.allclose(np.delete(cost[2], 2), 1.0)
    with pytest.raises(AutohmError, match="need at least 2"):
        StreamingCovariance(3).correlation()


def scan_states_mean(mixer, hidden):
    """mean over d_state of h_t, from an explicit loop over time (independent of the kernels)."""
    s = mixer.scan_inputs(hidden)
    dt = torch.nn.functional.softplus(s.delta)
    h = torch.zeros(s.u.shape[0], s.u.shape[1], s.A.shape[1])
    means = []
    for t in range(s.u.shape[2]):
        h = (
            torch.exp(dt[:, :, t, None] * s.A) * h
            + (dt[:, :, t] * s.u[:, :, t])[..., None] * (s.B[:, None, :, t])
        )
        means.append(h.mean(-1))
    return torch.stack(means, -1)


@pytest.mark.parametrize("source", ["state", "input"])
def test_collect_statistics_matches_the_signal_of_every_layer(source):
    model = randomise_(MambaLM(tiny_config()), scale=0.2).eval()
    batches = [torch.randint(0, 37, (2, 9)), torch.randint(0, 37, (3, 5))]
    stats = collect_statistics(model, batches, source=source)
    assert len(stats) == 2
    signals = [[] for _ in model.backbone.layers]
    with torch.no_grad():
        for ids in batches:
            hidden = model.backbone.embedding(ids)
            for i, layer in enumerate(model.backbone.layers):
                mixer = layer.mixer
                normed = layer._normed(hidden)
                value = (
                    scan_states_mean(mixer, normed)
                    if source == "state"
                    else (mixer.scan_inputs(normed).u)
                )
                signals[i].append(value.transpose(1, 2).reshape(-1, mixer.d_inner))
                hidden = layer(hidden)
    for acc, parts in zip(stats, signals, strict=True):
        data = torch.cat(parts).double().numpy()
        assert acc.count == data.shape[0] == 2 * 9 + 3 * 5
        np.testing.assert_allclose(acc.correlation().numpy(), np.corrcoef(data.T), atol=1e-5)


def test_statistics_skip_padding():
    model = randomise_(MambaLM(tiny_config()), scale=0.2).eval()
    ids = torch.randint(1, 37, (1, 6))
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), ids], 1)
    mask = torch.cat([torch.zeros(1, 3), torch.ones(1, 6)], 1)
    plain = collect_statistics(model, [ids])[0]
    with_padding = collect_statistics(model, [(padded, mask)])[0]
    assert with_padding.count == plain.count == 6
    torch.testing.assert_close(with_padding.covariance(), plain.covariance())


def test_statistics_errors():
    with pytest.raises(AutohmError, match="unknown statistics source 'output'"):
        collect_statistics(MambaLM(tiny_config()), [], source="output")


def test_statistics_at_the_width_of_mamba_130m_stream():
    acc = StreamingCovariance(1536)
    for _ in range(3):
        acc.update(torch.randn(512, 1536))
    assert acc.count == 1536 and acc.m2.shape == (1536, 1536)  # 19 MB, however many batches
    assert torch.isfinite(acc.correlation()).all()


@pytest.mark.parametrize("dtype,tolerance", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_permuting_channels_leaves_the_outputs_unchanged(dtype, tolerance):
    model = randomise_(MambaLM(tiny_config(bias=True)), scale=0.3).to(dtype).eval()
    ids = torch.randint(0, 37, (2, 11))
    with torch.no_grad():
        before = model(ids)
        states = model.backbone.empty_states(2)
        _, states = model.prefill(ids[:, :6])
        step_before, _ = model.step(ids[:, 6], states)
        perms = [torch.randperm(layer.mixer.d_inner) for layer in model.backbone.layers]
        a_log = model.backbone.layers[0].mixer.A_log.clone()
        for layer, perm in zip(model.backbone.layers, perms, strict=True):
            permute_channels(layer.mixer, perm)
        after = model(ids)
        moved = [permute_state(s, p) for s, p in zip(states, perms, strict=True)]
        step_after, _ = model.step(ids[:, 6], moved)
    assert (after - before).abs().max().item() <= tolerance
    assert (step_after - step_before).abs().max().item() <= tolerance
    # the weights did move: new channel k is old channel perm[k]
    assert torch.equal(model.backbone.layers[0].mixer.A_log, a_log[perms[0]])


def test_permutation_round_trip_and_errors():
    model = randomise_(MambaClassifier(tiny_config(), num_labels=3))
    mixer = model.backbone.layers[0].mixer
    original = {k: v.clone() for k, v in mixer.state_dict().items()}
    perm = torch.randperm(mixer.d_inner)
    permute_channels(mixer, perm)
    assert not torch.equal(mixer.A_log, original["A_log"])
    permute_channels(mixer, inverse_permutation(perm))
    for key, value in mixer.state_dict().items():
        assert torch.equal(value, original[key]), key
    with pytest.raises(AutohmError, match="not a permutation of the 32 channels"):
        permute_channels(mixer, [0, 0, *range(2, 32)])
    with pytest.raises(AutohmError, match="not a permutation"):
        permute_channels(mixer, range(31))
