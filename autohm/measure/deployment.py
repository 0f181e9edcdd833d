"""The deployment shape latency is timed at (`--latency-batch` sequences of `--latency-seq-len`
tokens), checked before any work: positive integers, and one forward of the model and of its
dense reference must fit in the memory this machine has free.

The default batch is the fewest sequences (a power of two, at most 32) whose forward does
FORWARD_WORK FLOPs, so that its time follows the work compaction removes rather than per-call
overhead: 32 for the built-in model (at batch 1 its forward is mostly overhead; docs/measurement.md
has the measurement), 1 for mamba-130m and larger, whose single sequence is already that much work.
"""

from __future__ import annotations

from autohm.errors import AutohmError
from autohm.measure.flops import analytic_flops
from autohm.memory import FLOAT_BYTES, available_bytes, weight_bytes, widest_inner
from autohm.model import MambaConfig

DEFAULT_BATCH = 32  # the largest default batch, and the built-in model's
FORWARD_WORK = 2**30  # FLOPs: about 10 ms on a 2-core CPU, far above a forward's fixed costs


def default_batch(config: MambaConfig, seq_len: int) -> int:
    """The default deployment batch of a model: the smallest power of two, at most
    DEFAULT_BATCH, whose forward at `seq_len` tokens does FORWARD_WORK FLOPs."""
    per_sequence = sum(analytic_flops(config, seq_len, num_labels=2).values())
    batch = 1
    while batch < DEFAULT_BATCH and batch * per_sequence < FORWARD_WORK:
        batch *= 2
    return batch


def forward_bytes(config: MambaConfig, batch: int, seq_len: int) -> int:
    """An upper estimate of the memory one inference forward at this shape needs, weights of
    the model and its dense reference included."""
    widest = widest_inner(config)
    # live activations of one layer per token: in_proj's output (2 d_inner), the conv's input
    # and output, the scan's input, delta, gate and output (about 6 d_inner more), x_proj's
    # output and the residual stream (a few d_model); doubled for the allocator's slack
    activations = batch * seq_len * 2 * (10 * widest + 4 * config.d_model)
    return FLOAT_BYTES * activations + 2 * weight_bytes(config)


def check_options(batch: object, seq_len: object) -> None:
    """An AutohmError naming the option unless both are positive integers (seq_len may be None:
    the task's length)."""
    seq_len = 1 if seq_len is None else seq_len
    for option, value in (("--latency-batch", batch), ("--latency-seq-len", seq_len)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise AutohmError(f"{option} must be a positive integer, got {value!r}")


def check_shape(config: MambaConfig, batch: object, seq_len: object) -> None:
    """An AutohmError naming the option when the deployment shape is not usable: not positive
    integers, or more memory for one forward than this machine has available."""
    check_options(batch, seq_len)
    needed, free = forward_bytes(config, batch, seq_len), available_bytes()
    if free is not None and needed > free:
        raise AutohmError(
            f"the latency shape {batch} x {seq_len} (--latency-batch x --latency-seq-len) needs "
            f"about {needed / 2**30:.1f} GiB for one forward of this model; "
            f"{free / 2**30:.1f} GiB are available: choose a smaller shape"
        )
