"""backend="cpu" (fused numba kernels) against the reference scan: outputs, last state and every
gradient, across shapes that are not multiples of the kernel's block sizes."""

import numpy as np
import pytest
import torch
from helpers import (
    assert_scan_close,
    randomise_,
    scan_inputs,
    scan_inputs_without,
    scan_with_grads,
    tiny_config,
)

from autohm.model import MambaLM
from autohm.ops import resolve_backend, selective_scan
from autohm.ops import scan_cpu_kernels as kernels

SHAPES = [  # (batch, d_inner, L, d_state): odd sizes, one and several blocks and chunks
    (1, 1, 1, 1),
    (2, 5, 7, 4),
    (3, kernels.BLOCK + 3, 2 * kernels.CHUNK + 5, 16),
    (2, 2 * kernels.BLOCK, kernels.CHUNK, 1),
    (2, 5, 7, 0),  # a compact layer whose every state was removed
]
OPTIONS = {
    "all": dict(delta_softplus=True),
    "bare": dict(drop=("D", "z", "delta_bias")),
}


def run_both(shape, dtype, drop=(), **options):
    inputs = scan_inputs_without(shape, drop, dtype)
    got = scan_with_grads(selective_scan, inputs, backend="cpu", **options)
    expected = scan_with_grads(selective_scan, inputs, backend="reference", **options)
    return got, expected


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype,rtol", [(torch.float32, 1e-4), (torch.float64, 1e-10)])
@pytest.mark.parametrize("variant", OPTIONS)
def test_cpu_matches_reference(shape, dtype, rtol, variant):
    got, expected = run_both(shape, dtype, **OPTIONS[variant])
    assert got[0].dtype == dtype
    assert_scan_close(got, expected, rtol)


def test_float32_exp_is_accurate_over_its_whole_range():
    """The kernels' polynomial exp: relative error below 5e-7 wherever expf is a normal
    number, exactly 1 at 0 (long runs of decays near 1 must not drift), 0 far below."""
    x = np.concatenate([np.linspace(-87.0, 88.0, 200_001), [0.0, -1e-8, 1e-8]])
    got = np.array([kernels._exp_float32(np.float32(v)) for v in x], dtype=np.float64)
    expected = np.exp(x.astype(np.float32).astype(np.float64))
    assert np.abs(got / expected - 1).max() < 5e-7
    assert kernels._exp_float32(np.float32(0.0)) == 1.0
    assert kernels._exp_float32(np.float32(-200.0)) == 0.0
    assert np.isfinite(kernels._exp_float32(np.float32(1e30)))


def test_long_sequence_with_decays_near_one():
    """L = 700 (not a multiple of the chunk) with tiny steps: a state carries almost all of its
    past, so any bias of the exp accumulates over the sequence."""
    inputs = scan_inputs(2, kernels.BLOCK + 5, 700, 4)
    with torch.no_grad():
        inputs["delta"].mul_(0.01).sub_(6.0)  # softplus(-6) ~ 2.5e-3: decays above 0.99
    assert_scan_close(
        *(
            scan_with_grads(selective_scan, inputs, backend=backend, delta_softplus=True)
            for backend in ("cpu", "reference")
        )
    )


def test_gradcheck_float64():
    inputs = scan_inputs(1, 3, 4, 2, dtype=torch.float64)

    def scan(*args):
        return selective_scan(*args, delta_softplus=True, return_last_state=True, backend="cpu")

    assert torch.autograd.gradcheck(scan, tuple(inputs.values()))


def test_dead_channels_are_exact_zeros_and_dead_blocks_are_never_read():
    d_inner = 3 * kernels.BLOCK
    inputs = scan_inputs(2, d_inner, 11, 4)
    alive = torch.ones(d_inner, dtype=torch.bool)
    alive[kernels.BLOCK : 2 * kernels.BLOCK] = False  # one whole block dead
    alive[3] = alive[2 * kernels.BLOCK + 7] = False  # and two single channels
    with torch.no_grad():  # poison what a skipped block must never read
        for name in ("u", "delta", "z"):
            inputs[name][:, kernels.BLOCK : 2 * kernels.BLOCK] = float("nan")
    y, last, grads = scan_with_grads(
        selective_scan, inputs, backend="cpu", delta_softplus=True, alive=alive
    )
    dead = ~alive
    assert torch.equal(y[:, dead], torch.zeros_like(y[:, dead]))
    assert torch.equal(last[:, dead], torch.zeros_like(last[:, dead]))
    for name in ("u", "delta", "z"):
        assert torch.equal(grads[name][:, dead], torch.zeros_like(grads[name][:, dead]))
    for name, grad in grads.items():
        assert torch.isfinite(grad).all(), name
    # alive channels are unchanged by the others' death
    clean = scan_inputs(2, d_inner, 11, 4)
    y_all = selective_scan(**clean, delta_softplus=True, backend="cpu")
    y_some = selective_scan(**clean, delta_softplus=True, backend="cpu", alive=alive)
    assert torch.equal(y_some[:, alive], y_all[:, alive])


@pytest.mark.parametrize("shape", SHAPES[1:], ids=str)
def test_every_output_is_written(shape, monkeypatch):
    """The outputs are allocated uninitialised: poisoned with NaN, none may survive, in dead
    single channels and skipped blocks included (both are written as zeros)."""

    def poisoned_empty(shape, dtype=float):
        return np.full(shape, np.nan, dtype)

    monkeypatch.setattr(np, "empty", poisoned_empty)
    alive = torch.ones(shape[1], dtype=torch.bool)
    alive[-1] = False
    if shape[1] > kernels.BLOCK:
        alive[: kernels.BLOCK] = False  # a skipped block
    inputs = scan_inputs(*shape)
    assert_scan_close(
        *(
            scan_with_grads(selective_scan, inputs, backend=b, delta_softplus=True, alive=alive)
            for b in ("cpu", "reference")
        )
    )


def test_an_input_changed_in_place_before_the_backward_is_an_error():
    """Like torch's own ops: the backward must not silently use values the forward never saw."""
    inputs = scan_inputs(1, 5, 7, 4)
    y = selective_scan(**inputs, backend="cpu")
    with torch.no_grad():
        inputs["D"].add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_half_precision_inputs_compute_in_float32():
    inputs = scan_inputs(2, 6, 9, 4, dtype=torch.bfloat16, grad=False)
    y = selective_scan(**inputs, delta_softplus=True, backend="cpu")
    expected = selective_scan(**inputs, delta_softplus=True, backend="reference")
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y, expected)


def test_auto_picks_cpu_for_cpu_tensors():
    assert resolve_backend("auto", "cpu").name == "cpu"


def test_model_trains_with_backend_auto():
    model = randomise_(MambaLM(tiny_config()), scale=0.1)
    reference = MambaLM(tiny_config())
    reference.load_state_dict(model.state_dict())
    reference.set_scan_backend("reference")
    ids = torch.randint(0, 37, (4, 12))
    torch.testing.assert_close(model(ids), reference(ids), rtol=1e-4, atol=1e-4)

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        logits = model(ids)[:, :-1, :37]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 37), ids[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
