"""Helpers for building tiny models offline."""

import torch

from autohm.bench.scan import random_scan_inputs
from autohm.config import TrialConfig
from autohm.model import MambaConfig, MambaLM
from autohm.tasks import load_task
from autohm.trial import Workload

TINY_TASK = "induction?seq_len=12,num_symbols=6,num_train=96,num_validation=32,num_test=32"


def tiny_config(**overrides) -> MambaConfig:
    """A 2-layer model small enough for the sequential reference scan."""
    values = dict(d_model=16, n_layer=2, vocab_size=37, d_state=4, d_conv=4, expand=2)
    return MambaConfig(**{**values, **overrides})


@torch.no_grad()
def randomise_(model: torch.nn.Module, scale: float = 0.3) -> torch.nn.Module:
    """Replace every parameter by random values, so no weight is left at a trivial init."""
    for name, param in model.named_parameters():
        if name.endswith("A_log"):
            param.copy_(torch.rand_like(param) * 2 - 1)
        elif "norm" in name and name.endswith("weight"):
            param.copy_(1 + scale * torch.randn_like(param))
        else:
            param.copy_(scale * torch.randn_like(param))
    return model


def scan_inputs(batch, d_inner, length, d_state, dtype=torch.float32, seed=0, grad=True):
    """Random selective-scan inputs with every optional argument present."""
    return random_scan_inputs((batch, d_inner, length, d_state), dtype, seed=seed, grad=grad)


def scan_inputs_without(shape, drop=(), dtype=torch.float32):
    """Random scan inputs less the `drop`ped optional ones; positive steps when delta is raw."""
    inputs = scan_inputs(*shape, dtype=dtype)
    for name in drop:
        del inputs[name]
    if "delta_bias" not in inputs:
        inputs["delta"] = inputs["delta"].detach().abs().requires_grad_()
    return inputs


def scan_with_grads(scan, inputs, seed=1, **options):
    """Outputs, last state and the gradients of a random projection of both."""
    y, last = scan(**inputs, return_last_state=True, **options)
    g = torch.Generator().manual_seed(seed)
    grad_y = torch.randn(y.shape, generator=g, dtype=torch.float64).to(y.dtype)
    grad_last = torch.randn(last.shape, generator=g, dtype=torch.float64).to(last.dtype)
    loss = (y * grad_y).sum() + (last * grad_last).sum()
    grads = torch.autograd.grad(loss, list(inputs.values()), allow_unused=True)
    return y, last, dict(zip(inputs, grads, strict=True))


def assert_close_relative(actual, expected, rtol, name=""):
    """max |actual - expected| <= rtol * max |expected| (elementwise relative error is
    meaningless where the expected value crosses zero); empty tensors agree in shape."""
    assert actual.shape == expected.shape, f"{name}: {actual.shape} != {expected.shape}"
    if expected.numel() == 0:
        return
    scale = expected.abs().max().item() or 1.0
    error = (actual.double() - expected.double()).abs().max().item()
    assert error <= rtol * scale, f"{name}: max error {error:.3e} > {rtol:.0e} * {scale:.3e}"


def assert_scan_close(got, expected, rtol=1e-4):
    """Two scan_with_grads results agree: outputs, last state and every gradient (same dtype)
    within `rtol` of the largest expected value."""
    (y, last, grads), (y_ref, last_ref, grads_ref) = got, expected
    assert_close_relative(y, y_ref, rtol, "y")
    assert_close_relative(last, last_ref, rtol, "last state")
    for name, grad in grads.items():
        assert grad.dtype == grads_ref[name].dtype, name
        assert_close_relative(grad, grads_ref[name], rtol, f"d{name}")


def tiny_workload(**latency_shape) -> Workload:
    """A tiny induction task on a random tiny base model."""
    task = load_task(TINY_TASK)
    torch.manual_seed(0)
    return Workload(task, MambaLM(tiny_config(vocab_size=task.vocab_size)), "tiny", **latency_shape)


def tiny_config_for_trials(**sections) -> TrialConfig:
    """A trial configuration that runs in a second on tiny_workload()."""
    values = {
        "scan_order": {"method": "two_opt", "calibration_batches": 1},
        "masking": {"steps": 4, "sites": ["in_proj.x", "out_proj"], "granularity": "block",
                    "block_size": 4},
        "peft": {"lora_quantile": 0.5, "ia3_quantile": 0.25, "rank": 2},
        "train": {"steps": 6, "batch_size": 16, "eval_every": 3},
    }  # fmt: skip
    for key, value in sections.items():
        values[key] = values.get(key, {}) | value
    return TrialConfig.from_dict(values)
