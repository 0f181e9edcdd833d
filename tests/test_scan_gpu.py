"""On a CUDA machine: the Triton kernels and mamba_ssm's against the reference, block skipping,
and the model on the GPU. Skipped, with the reason, where there is no CUDA device."""

import pytest
import torch
from helpers import (
    assert_close_relative,
    randomise_,
    scan_inputs_without,
    scan_with_grads,
    tiny_config,
)

from autohm.model import MambaLM
from autohm.ops import available_backends, resolve_backend, selective_scan

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device (GPU-only kernels)"
)
SHAPES = [(2, 64, 100, 1), (3, 96, 257, 4), (2, 200, 513, 16), (4, 256, 256, 16)]


def on_cuda(inputs):
    return {k: v.detach().cuda().requires_grad_() for k, v in inputs.items()}


@pytest.mark.parametrize("backend", ["triton", "mamba_ssm"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_gpu_backend_matches_reference(backend, shape):
    if backend not in available_backends("cuda"):
        pytest.skip(f"{backend} is not installed")
    inputs = scan_inputs_without(shape)
    expected = scan_with_grads(selective_scan, inputs, backend="reference", delta_softplus=True)
    got = scan_with_grads(selective_scan, on_cuda(inputs), backend=backend, delta_softplus=True)
    assert_close_relative(got[0].cpu(), expected[0], 1e-4, "y")
    assert_close_relative(got[1].cpu(), expected[1], 1e-4, "last")
    for name, grad in got[2].items():
        assert_close_relative(grad.cpu(), expected[2][name], 1e-4, f"d{name}")


def test_triton_dead_blocks_are_zero_and_alive_channels_unchanged():
    inputs = on_cuda(scan_inputs_without((2, 256, 300, 16)))
    alive = (torch.arange(256, device="cuda") // 64) % 2 == 0
    y_all = selective_scan(**inputs, backend="triton", delta_softplus=True)
    y, last = selective_scan(
        **inputs, backend="triton", delta_softplus=True, alive=alive, return_last_state=True
    )
    assert torch.equal(y[:, ~alive], torch.zeros_like(y[:, ~alive]))
    assert torch.equal(last[:, ~alive], torch.zeros_like(last[:, ~alive]))
    assert torch.equal(y[:, alive], y_all[:, alive])


def test_auto_picks_triton_and_the_model_matches_the_cpu():
    assert resolve_backend("auto", "cuda").name == "triton"
    model = randomise_(MambaLM(tiny_config()), scale=0.2).eval()
    ids = torch.randint(0, 37, (2, 40))
    with torch.no_grad():
        expected = model(ids)
        got = model.cuda()(ids.cuda()).cpu()
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
