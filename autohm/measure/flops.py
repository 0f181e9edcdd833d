"""Forward FLOPs of a Mamba classifier, in fvcore's convention (one multiply-add is one FLOP).

count_flops traces the model with fvcore. fvcore cannot see inside the selective scan (a custom
autograd Function, or a Python loop unrolled into thousands of ops), so during the trace every
mixer runs a counting backend whose scan is one node, counted by formula (scan_flops); fvcore
also skips elementwise ops, which are counted here at one FLOP per output element (per input
element for mean/sum). Counted: linears and matmuls, convolutions (fvcore's handles: bias adds
free, as the accumulator starts from the bias), the scan, and every elementwise op on
activations — norms, SiLU, residual adds, A = -exp(A_log). Not counted: index lookups
(embedding), casts and shape ops. Any op in the trace that is neither counted nor known to be
free is reported in FlopCount.uncounted and warned about in one line.

analytic_flops gives the same numbers from the architecture's formulas (see its docstring).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from autohm.measure.environment import pinned_scan_backend
from autohm.model import MambaConfig
from autohm.ops import ScanBackend, register_backend, selective_state_update_reference
from autohm.ops.selective_scan import unregister_backend

with warnings.catch_warnings():  # fvcore.nn scripts its losses on import: torch deprecates that
    warnings.simplefilter("ignore", DeprecationWarning)
    warnings.filterwarnings("ignore", r"`?torch\.jit\.script`? is deprecated", FutureWarning)
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn.jit_handles import get_shape

CONVENTION = "fvcore: one multiply-add counts as one FLOP"
SCAN_KEY = "selective_scan"  # by_module entry of a mixer's scan: '<mixer>.selective_scan'
ROOT_KEY = "(model)"  # by_module entry of ops run by the top-level module itself (pooling)

_PER_OUTPUT_ELEMENT = (
    "aten::add", "aten::add_", "aten::sub", "aten::sub_", "aten::rsub", "aten::mul", "aten::mul_",
    "aten::div", "aten::div_", "aten::neg", "aten::exp", "aten::log", "aten::pow", "aten::sqrt",
    "aten::rsqrt", "aten::reciprocal", "aten::silu", "aten::silu_", "aten::softplus",
    "aten::sigmoid", "aten::tanh", "aten::gelu",
)  # fmt: skip
_PER_INPUT_ELEMENT = ("aten::mean", "aten::sum")  # a reduction: one add per input element
_FREE = ("aten::embedding",)  # a table lookup; fvcore already skips casts and shape ops


@dataclass
class FlopCount:
    """Forward FLOPs: the total, its split over modules (each op counted once, in the innermost
    module that runs it; a mixer's scan under '<mixer>.selective_scan'), and the convention."""

    total: int
    by_module: dict[str, int]
    convention: str = CONVENTION
    uncounted: dict[str, int] = field(default_factory=dict)  # op kind -> occurrences

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def scan_flops(
    batch: int,
    d_inner: int,
    length: int,
    d_state: int,
    *,
    has_D: bool = True,
    has_z: bool = True,
    has_delta_bias: bool = False,
    delta_softplus: bool = True,
) -> int:
    """FLOPs of one selective scan, from its sequential recurrence (what autohm's backends run).

    Per channel, step and state entry n: dA = exp(delta * A) (2: mul, exp), dB_u = (delta * u)
    * B (1), h = dA * h + dB_u (1 multiply-add), y += C * h (1 multiply-add) -> 5. Per channel
    and step: delta * u (1), delta + delta_bias (1), softplus (1), y + D * u (1 multiply-add),
    y * silu(z) (2: silu, mul). Total 5*B*L*D*N + (1 + [bias] + [softplus] + [D] + 2*[z])*B*L*D.
    (The often quoted 9*B*L*D*N counts the work of a parallel associative scan.)
    """
    per_step = 5 * d_state + 1 + has_delta_bias + delta_softplus + has_D + 2 * has_z
    return batch * d_inner * length * per_step


class _OneNodeScan(torch.autograd.Function):
    """The scan as a single traced node (prim::PythonOp._OneNodeScan). FLOPs depend on shapes
    only, so it returns zeros of the scan's output shapes and computes nothing."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        compute = torch.promote_types(u.dtype, torch.float32)
        last = torch.zeros(u.shape[0], u.shape[1], A.shape[1], dtype=compute, device=u.device)
        return torch.zeros_like(u), last


def _one_node_scan(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
    return_last_state=False, alive=None,
):  # fmt: skip
    y, last = _OneNodeScan.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    return (y, last) if return_last_state else y


_COUNTING_BACKEND = ScanBackend(
    "autohm-flop-count",
    _one_node_scan,
    selective_state_update_reference,
    supports=lambda device: True,
    priority=-1,
)


def _scan_handle(inputs: list, outputs: list) -> Counter:
    """fvcore handle of _OneNodeScan: its arguments rebuilt in order from the node's tensor
    inputs ('d' in cconv) and its Python arguments ('c': None for an absent tensor, flags)."""
    node = outputs[0].node()
    tensors, scalars = iter(inputs), iter(node.scalar_args())
    args = [next(tensors) if kind == "d" else next(scalars) for kind in node.cconv()]
    u, _, A, _, _, D, z, delta_bias, delta_softplus = args
    flops = scan_flops(
        *get_shape(u), get_shape(A)[1], has_D=D is not None, has_z=z is not None,
        has_delta_bias=delta_bias is not None, delta_softplus=bool(delta_softplus),
    )  # fmt: skip
    return Counter({SCAN_KEY: flops})


def _per_output_element(inputs: list, outputs: list) -> int:
    return math.prod(get_shape(outputs[0]))


def _per_input_element(inputs: list, outputs: list) -> int:
    return math.prod(get_shape(inputs[0]))


@contextmanager
def _scan_as_one_node(model: nn.Module) -> Iterator[None]:
    """Every mixer on the counting backend inside the block; the registry and the mixers'
    backends are restored afterwards."""
    register_backend(_COUNTING_BACKEND)
    try:
        with pinned_scan_backend(model, _COUNTING_BACKEND.name):
            yield
    finally:
        unregister_backend(_COUNTING_BACKEND.name)


def _own_counts(analysis: FlopCountAnalysis, model: nn.Module) -> dict[str, int]:
    """Per module, the FLOPs of the ops it runs itself (fvcore's counts include submodules)."""
    totals = analysis.by_module_and_operator()
    own: dict[str, int] = {}
    for name, module in model.named_modules():
        counts = Counter(totals.get(name, {}))
        for child, _ in module.named_children():
            counts.subtract(totals.get(f"{name}.{child}" if name else child, {}))
        scan = counts.pop(SCAN_KEY, 0)
        if scan:
            own[f"{name}.{SCAN_KEY}" if name else SCAN_KEY] = int(scan)
        rest = sum(counts.values())
        if rest:
            own[name or ROOT_KEY] = int(rest)
    return own


def count_flops(model: nn.Module, seq_len: int, batch: int = 1) -> FlopCount:
    """Forward FLOPs of `model` on `batch` sequences of `seq_len` tokens, traced with fvcore and
    the scan counted by formula (the model is left as it was)."""
    device = next(model.parameters()).device
    input_ids = torch.zeros(batch, seq_len, dtype=torch.long, device=device)
    analysis = (
        FlopCountAnalysis(model, (input_ids,))
        .set_op_handle(f"prim::PythonOp.{_OneNodeScan.__name__}", _scan_handle)
        .set_op_handle(**dict.fromkeys(_PER_OUTPUT_ELEMENT, _per_output_element))
        .set_op_handle(**dict.fromkeys(_PER_INPUT_ELEMENT, _per_input_element))
        .set_op_handle(**dict.fromkeys(_FREE))
        .unsupported_ops_warnings(False)  # reported once, below, when it matters
        .uncalled_modules_warnings(False)
        .tracer_warnings("none")
    )
    fvcore_logger = logging.getLogger("fvcore.nn.jit_analysis")
    level = fvcore_logger.level
    fvcore_logger.setLevel(logging.ERROR)
    try:
        with _scan_as_one_node(model), torch.no_grad():
            total = int(analysis.total())
            uncounted = dict(analysis.unsupported_ops())
    finally:
        fvcore_logger.setLevel(level)
    if uncounted:
        warnings.warn(f"count_flops: ops counted as 0 FLOPs: {uncounted}", stacklevel=2)
    return FlopCount(total, _own_counts(analysis, model), uncounted=uncounted)


def _norm_flops(config: MambaConfig, tokens: int) -> int:
    """RMSNorm: square, mean, scale, weight (4 per element) + eps and rsqrt (2 per token);
    LayerNorm: fvcore's 5 per element."""
    if config.rms_norm:
        return tokens * (4 * config.d_model + 2)
    return tokens * 5 * config.d_model


def analytic_flops(
    config: MambaConfig, seq_len: int, batch: int = 1, *, num_labels: int, pooling: str = "last"
) -> dict[str, int]:
    """count_flops(MambaClassifier(config, num_labels, pooling), seq_len, batch).by_module from
    the architecture's formulas (zero entries left out); the basis of masked FLOP estimates.

    T = batch * seq_len tokens, d = d_model, e = d_inner, N = d_state (a compact model's own
    per layer; a layer without channels costs its norm and residual only), R = dt_rank,
    K = d_conv, per layer: norm (see _norm_flops), residual add T*d, in_proj T*d*2e, conv1d
    batch*e*K*(seq_len+K-1) (nn.Conv1d pads both sides; the K-1 extra outputs are computed, then
    cut), SiLU T*e and A = -exp(A_log) 2*e*N in the mixer itself, x_proj T*e*(R+2N), dt_proj
    T*R*e, selective scan (scan_flops), out_proj T*e*d; then norm_f, mean pooling T*d
    (last-token pooling: 0) and the head batch*d*num_labels.
    """
    tokens, d = batch * seq_len, config.d_model
    r, k = config.resolved_dt_rank, config.d_conv

    def layer(e: int, n: int) -> dict[str, int]:
        return {
            "norm": _norm_flops(config, tokens),
            "": tokens * d,
            "mixer.in_proj": tokens * d * 2 * e,
            "mixer.conv1d": batch * e * k * (seq_len + k - 1),
            "mixer": tokens * e + 2 * e * n,
            "mixer.x_proj": tokens * e * (r + 2 * n),
            "mixer.dt_proj": tokens * r * e,
            f"mixer.{SCAN_KEY}": scan_flops(batch, e, seq_len, n) if e else 0,
            "mixer.out_proj": tokens * e * d,
        }

    flops = {
        f"backbone.layers.{i}" + (f".{key}" if key else ""): value
        for i in range(config.n_layer)
        for key, value in layer(config.layer_inner(i), config.layer_state(i)).items()
    }
    flops["backbone.norm_f"] = _norm_flops(config, tokens)
    flops[ROOT_KEY] = tokens * d if pooling == "mean" else 0
    flops["score"] = batch * d * num_labels
    return {key: value for key, value in flops.items() if value}
