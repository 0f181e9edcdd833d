"""The reference scan against an independent scalar loop, gradcheck, and the backend registry."""

import math

import pytest
import torch

from autohm.errors import AutohmError
from autohm.ops import (
    available_backends,
    resolve_backend,
    selective_scan,
    selective_state_update,
)


def scalar_loop_scan(u, delta, A, B, C, D, z, delta_bias, softplus):
    """Element by element, straight from the recurrence, in Python floats."""
    batch, d_inner, length = u.shape
    n_state = A.shape[1]
    y = torch.zeros(batch, d_inner, length, dtype=torch.float64)
    last = torch.zeros(batch, d_inner, n_state, dtype=torch.float64)
    for b in range(batch):
        for d in range(d_inner):
            h = [0.0] * n_state
            for t in range(length):
                dt = float(delta[b, d, t]) + (float(delta_bias[d]) if delta_bias is not None else 0)
                if softplus:
                    dt = math.log1p(math.exp(dt))
                out = 0.0
                for n in range(n_state):
                    h[n] = math.exp(dt * float(A[d, n])) * h[n] + dt * float(B[b, n, t]) * float(
                        u[b, d, t]
                    )
                    out += float(C[b, n, t]) * h[n]
                if D is not None:
                    out += float(D[d]) * float(u[b, d, t])
                if z is not None:
                    zt = float(z[b, d, t])
                    out *= zt / (1 + math.exp(-zt))
                y[b, d, t] = out
            last[b, d] = torch.tensor(h, dtype=torch.float64)
    return y, last


def random_inputs(batch=2, d_inner=3, length=5, n_state=2, dtype=torch.float64):
    g = torch.Generator().manual_seed(1)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype)

    return dict(
        u=r(batch, d_inner, length),
        delta=r(batch, d_inner, length) * 0.5,
        A=-torch.rand(d_inner, n_state, generator=g, dtype=dtype) - 0.1,
        B=r(batch, n_state, length),
        C=r(batch, n_state, length),
        D=r(d_inner),
        z=r(batch, d_inner, length),
        delta_bias=r(d_inner) * 0.3,
    )


@pytest.mark.parametrize("use_D", [False, True])
@pytest.mark.parametrize("use_z", [False, True])
@pytest.mark.parametrize("use_bias_softplus", [False, True])
def test_reference_matches_scalar_loop(use_D, use_z, use_bias_softplus):
    x = random_inputs()
    if not use_bias_softplus:
        x["delta"] = x["delta"].abs()  # a positive step size, as softplus would give
    D = x["D"] if use_D else None
    z = x["z"] if use_z else None
    bias = x["delta_bias"] if use_bias_softplus else None
    y, last = selective_scan(
        x["u"],
        x["delta"],
        x["A"],
        x["B"],
        x["C"],
        D=D,
        z=z,
        delta_bias=bias,
        delta_softplus=use_bias_softplus,
        return_last_state=True,
        backend="reference",
    )
    y_loop, last_loop = scalar_loop_scan(
        x["u"], x["delta"], x["A"], x["B"], x["C"], D, z, bias, use_bias_softplus
    )
    torch.testing.assert_close(y, y_loop, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(last, last_loop, rtol=1e-10, atol=1e-12)


def test_reference_float32_keeps_dtype_and_matches_float64():
    x = random_inputs()
    y64 = selective_scan(**x, delta_softplus=True)
    y32 = selective_scan(**{k: v.float() for k, v in x.items()}, delta_softplus=True)
    assert y32.dtype == torch.float32
    torch.testing.assert_close(y32.double(), y64, rtol=1e-5, atol=1e-6)


def test_reference_gradcheck_all_inputs():
    x = {k: v.requires_grad_() for k, v in random_inputs(batch=1, d_inner=2, length=3).items()}

    def scan(u, delta, A, B, C, D, z, delta_bias):
        y, last = selective_scan(
            u,
            delta,
            A,
            B,
            C,
            D=D,
            z=z,
            delta_bias=delta_bias,
            delta_softplus=True,
            return_last_state=True,
            backend="reference",
        )
        return y, last

    assert torch.autograd.gradcheck(scan, tuple(x.values()))


def test_state_update_steps_through_the_scan():
    x = random_inputs(length=6)
    y_scan, last = selective_scan(**x, delta_softplus=True, return_last_state=True)
    state = torch.zeros(2, 3, 2, dtype=torch.float64)
    for t in range(6):
        y_t, state = selective_state_update(
            state,
            x["u"][:, :, t],
            x["delta"][:, :, t],
            x["A"],
            x["B"][:, :, t],
            x["C"][:, :, t],
            x["D"],
            x["z"][:, :, t],
            x["delta_bias"],
            dt_softplus=True,
        )
        torch.testing.assert_close(y_t, y_scan[:, :, t], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(state, last, rtol=1e-12, atol=1e-12)


def test_registry_and_errors():
    assert "reference" in available_backends()
    assert "reference" in available_backends("cpu")
    assert resolve_backend("auto", "cpu").name in available_backends("cpu")
    x = random_inputs()
    with pytest.raises(
        AutohmError, match="unknown scan backend 'nope'; available: auto, .*reference"
    ):
        selective_scan(**x, backend="nope")
    with pytest.raises(ValueError, match="B has shape"):
        selective_scan(**{**x, "B": x["B"][:, :, :-1]})
