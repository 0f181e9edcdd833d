"""The Triton kernels (autohm.kernels) against the reference scan, in Triton's interpreter on
machines without CUDA: outputs, last state and every gradient; dead channels and skipped blocks
(a spy on the interpreter's loads proves that no dead channel is read and that a dead block's
programs read nothing but their alive flags); the single-step update."""

import numpy as np
import pytest
import torch
from helpers import (
    assert_close_relative,
    assert_scan_close,
    randomise_,
    scan_inputs,
    scan_inputs_without,
    scan_with_grads,
    tiny_config,
)

pytest.importorskip("triton", reason="the Triton kernels need the triton package")

from autohm.kernels.selective_scan import BLOCK_D, CHUNK, selective_scan_triton  # noqa: E402
from autohm.kernels.state_update import selective_state_update_triton  # noqa: E402
from autohm.model import MambaLM  # noqa: E402
from autohm.ops import available_backends, selective_scan  # noqa: E402
from autohm.ops.scan_reference import (  # noqa: E402
    selective_scan_reference,
    selective_state_update_reference,
)

SHAPES = [  # (batch, d_inner, L, d_state): L off the chunk size, exactly one chunk, two blocks
    (2, 5, 7, 4),
    (2, 12, 2 * CHUNK + 5, 16),
    (1, 3, CHUNK, 1),
    (2, BLOCK_D + 3, 20, 4),
    (2, 5, 7, 0),  # a compact layer whose every state was removed
]
VARIANTS = {
    "all": dict(delta_softplus=True),
    "bare": dict(drop=("D", "z", "delta_bias")),
    "no_z": dict(drop=("z",)),
}
RTOL = 1e-4


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("variant", VARIANTS)
def test_scan_matches_reference(shape, variant):
    options = dict(VARIANTS[variant])
    inputs = scan_inputs_without(shape, options.pop("drop", ()))
    got = scan_with_grads(selective_scan_triton, inputs, **options)
    assert got[0].dtype == torch.float32 and got[1].dtype == torch.float32
    assert_scan_close(got, scan_with_grads(selective_scan_reference, inputs, **options))


def test_float64_inputs_compute_in_float32_and_keep_their_dtype():
    inputs = scan_inputs_without((1, 4, 9, 4), dtype=torch.float64)
    got = scan_with_grads(selective_scan_triton, inputs, delta_softplus=True)
    assert got[0].dtype == torch.float64 and got[1].dtype == torch.float32
    expected = scan_with_grads(selective_scan_reference, inputs, delta_softplus=True)
    assert_scan_close(got, expected)


def test_strided_inputs_and_an_expanded_output_gradient():
    inputs = scan_inputs_without((2, 7, 13, 4))
    for name in ("delta", "B", "C", "z"):  # time-major storage, as x_proj's output is
        time_major = inputs[name].detach().transpose(1, 2).contiguous()
        inputs[name] = time_major.transpose(1, 2).requires_grad_()
    outputs, grads = {}, {}
    for scan in (selective_scan_triton, selective_scan_reference):
        outputs[scan] = scan(**inputs, delta_softplus=True)
        grads[scan] = torch.autograd.grad(outputs[scan].sum(), list(inputs.values()))  # stride 0
    assert_close_relative(*outputs.values(), RTOL, "y")
    for name, got, expected in zip(inputs, *grads.values(), strict=True):
        assert_close_relative(got, expected, RTOL, f"d{name}")


@pytest.mark.parametrize("used", ["y", "last state"])
def test_gradient_of_one_output_alone(used):
    inputs = scan_inputs_without((2, 6, 19, 4))
    grads = {}
    for scan in (selective_scan_triton, selective_scan_reference):
        y, last = scan(**inputs, delta_softplus=True, return_last_state=True)
        out = y if used == "y" else last
        weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(2))
        loss = (out * weight).sum()
        grads[scan] = torch.autograd.grad(loss, list(inputs.values()), allow_unused=True)
    for name, got, expected in zip(inputs, *grads.values(), strict=True):
        expected = torch.zeros_like(got) if expected is None else expected  # unused: C, D, z
        assert_close_relative(got, expected, RTOL, f"d{name}")


def spy_on_loads(monkeypatch) -> list[tuple[tuple[int, int, int], np.ndarray]]:
    """Record every load the interpreter makes: (program id, addresses of the unmasked lanes)."""
    from triton.runtime import interpreter

    builder = interpreter.interpreter_builder
    original = builder.create_masked_load
    loads = []

    def spy(ptrs, mask, *args):
        lanes = np.broadcast_to(mask.data, ptrs.data.shape)
        loads.append((tuple(builder.grid_idx), ptrs.data[lanes]))
        return original(ptrs, mask, *args)

    monkeypatch.setattr(builder, "create_masked_load", spy)
    return loads


def assert_skipped(loads, block: int, alive: torch.Tensor) -> np.ndarray:
    """The programs of channel block `block` read nothing but the alive flags; returns every
    address the other programs read."""
    flags = alive.data_ptr() + np.arange(alive.numel())
    skipped = [addrs for (_, pid_d, _), addrs in loads if pid_d == block]
    assert skipped, "no program of the dead block ran"
    assert np.isin(np.concatenate(skipped), flags).all(), "a dead block read more than its flags"
    return np.concatenate([addrs for (_, pid_d, _), addrs in loads if pid_d != block])


def addresses(tensor: torch.Tensor, channels: torch.Tensor) -> np.ndarray:
    """The byte addresses of the given channels (dim 1) of a contiguous tensor."""
    index = torch.arange(tensor.numel()).view(tensor.shape)[:, channels]
    return tensor.data_ptr() + index.numpy().ravel() * tensor.element_size()


def test_dead_channels_are_exact_zeros_never_read_and_dead_blocks_skipped(monkeypatch):
    d_inner = 2 * BLOCK_D + 5
    alive = torch.ones(d_inner, dtype=torch.bool)
    alive[BLOCK_D : 2 * BLOCK_D] = False  # one whole block dead
    alive[3] = alive[2 * BLOCK_D + 2] = False  # and one channel in each of the other two
    dead = ~alive
    clean = scan_inputs_without((2, d_inner, 11, 4))
    poisoned = {name: value.detach().clone() for name, value in clean.items()}
    for name in ("u", "delta", "z"):  # NaN * 0 is NaN: computing then zeroing would show
        poisoned[name][:, dead] = float("nan")
    poisoned = {name: value.requires_grad_() for name, value in poisoned.items()}

    loads = spy_on_loads(monkeypatch)
    y, last, grads = scan_with_grads(
        selective_scan_triton, poisoned, delta_softplus=True, alive=alive
    )
    monkeypatch.undo()
    loaded = assert_skipped(loads, 1, alive)
    for name in ("u", "delta", "z"):
        assert not np.isin(addresses(poisoned[name], dead), loaded).any(), f"read dead {name}"
        assert np.isin(addresses(poisoned[name], alive), loaded).all(), f"unread live {name}"

    assert torch.equal(y[:, dead], torch.zeros_like(y[:, dead]))
    assert torch.equal(last[:, dead], torch.zeros_like(last[:, dead]))
    for name in ("u", "delta", "z"):
        assert torch.equal(grads[name][:, dead], torch.zeros_like(grads[name][:, dead])), name
    for name, grad in grads.items():
        assert torch.isfinite(grad).all(), name
    expected = scan_with_grads(selective_scan_reference, clean, delta_softplus=True, alive=alive)
    assert_scan_close((y, last, grads), expected)

    # alive channels are exactly what they are when every channel lives
    y_all, last_all, grads_all = scan_with_grads(selective_scan_triton, clean, delta_softplus=True)
    assert torch.equal(y[:, alive], y_all[:, alive])
    assert torch.equal(last[:, alive], last_all[:, alive])
    for name in ("u", "delta", "z"):
        assert torch.equal(grads[name][:, alive], grads_all[name][:, alive]), name
    for name in ("A", "D", "delta_bias"):
        assert torch.equal(grads[name][alive], grads_all[name][alive]), name


def step_inputs(batch, d_inner, d_state, drop=()):
    g = torch.Generator().manual_seed(3)
    inputs = dict(
        state=torch.randn(batch, d_inner, d_state, generator=g),
        x=torch.randn(batch, d_inner, generator=g),
        dt=torch.randn(batch, d_inner, generator=g) * 0.5,
        A=-(torch.rand(d_inner, d_state, generator=g) * 2 + 0.1),
        B=torch.randn(batch, d_state, generator=g),
        C=torch.randn(batch, d_state, generator=g),
        D=torch.randn(d_inner, generator=g),
        z=torch.randn(batch, d_inner, generator=g),
        dt_bias=torch.randn(d_inner, generator=g) * 0.3,
    )
    return {name: value for name, value in inputs.items() if name not in drop}


@pytest.mark.parametrize("shape", [(2, 5, 4), (2, BLOCK_D + 3, 16), (1, 3, 1), (2, 5, 0)], ids=str)
@pytest.mark.parametrize("drop,softplus", [((), True), (("D", "z", "dt_bias"), False)])
def test_state_update_matches_reference(shape, drop, softplus):
    inputs = step_inputs(*shape, drop=drop)
    state_before = inputs["state"].clone()
    y, new_state = selective_state_update_triton(**inputs, dt_softplus=softplus)
    y_ref, new_state_ref = selective_state_update_reference(**inputs, dt_softplus=softplus)
    assert torch.equal(inputs["state"], state_before)
    assert y.dtype == y_ref.dtype and new_state.dtype == new_state_ref.dtype
    assert_close_relative(y, y_ref, 1e-5, "y")
    assert_close_relative(new_state, new_state_ref, 1e-5, "new state")


def test_state_update_dead_channels_and_blocks(monkeypatch):
    d_inner = 2 * BLOCK_D + 5
    alive = torch.ones(d_inner, dtype=torch.bool)
    alive[BLOCK_D : 2 * BLOCK_D] = alive[3] = False
    inputs = step_inputs(2, d_inner, 4)
    y_ref, new_state_ref = selective_state_update_reference(**inputs, dt_softplus=True)
    for name in ("state", "x", "dt", "z"):
        inputs[name][:, ~alive] = float("nan")
    loads = spy_on_loads(monkeypatch)
    y, new_state = selective_state_update_triton(**inputs, dt_softplus=True, alive=alive)
    monkeypatch.undo()
    loaded = assert_skipped(loads, 1, alive)
    for name in ("state", "x", "dt", "z"):
        assert not np.isin(addresses(inputs[name], ~alive), loaded).any(), f"read dead {name}"
    assert torch.equal(y[:, ~alive], torch.zeros_like(y[:, ~alive]))
    assert torch.equal(new_state[:, ~alive], torch.zeros_like(new_state[:, ~alive]))
    assert_close_relative(y[:, alive], y_ref[:, alive], 1e-5, "y")
    assert_close_relative(new_state[:, alive], new_state_ref[:, alive], 1e-5, "new state")


def test_state_update_refuses_to_build_a_graph():
    inputs = step_inputs(1, 3, 4)
    inputs["A"].requires_grad_()
    with pytest.raises(RuntimeError, match="forward only"):
        selective_state_update_triton(**inputs)
    with torch.no_grad():
        selective_state_update_triton(**inputs)


def test_registry_dispatches_to_triton_and_a_model_runs_on_it():
    assert "triton" in available_backends("cpu")  # only because the interpreter is on
    inputs = scan_inputs(1, 4, 6, 2, grad=False)
    torch.testing.assert_close(
        selective_scan(**inputs, backend="triton"), selective_scan_triton(**inputs)
    )
    model = randomise_(MambaLM(tiny_config(n_layer=1)), scale=0.2).eval()
    ids = torch.randint(0, 37, (1, 5))
    with torch.no_grad():
        expected = model(ids)
        model.set_scan_backend("triton")
        torch.testing.assert_close(model(ids), expected, rtol=1e-4, atol=1e-4)
        states = model.backbone.empty_states(1)
        for t in range(ids.shape[1]):
            logits, states = model.step(ids[:, t], states)
            torch.testing.assert_close(logits, expected[:, t], rtol=1e-4, atol=1e-4)
