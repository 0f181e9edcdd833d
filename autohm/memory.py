"""Memory a run needs, estimated before it allocates, so that a run too big for the machine
ends with one line (what it needs, what there is, what to lower) instead of the kernel's OOM
kill."""

from __future__ import annotations

from pathlib import Path

from autohm.model import MambaConfig

FLOAT_BYTES = 4
SAVED_PER_CHANNEL = 16  # floats one training step keeps per channel, token and layer


def _proc_bytes(path: str, key: str) -> int | None:
    """The `KEY: N kB` line of a /proc file, in bytes; None where there is none."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def available_bytes() -> int | None:
    """Memory the kernel says is available (Linux's MemAvailable); None where unknown."""
    return _proc_bytes("/proc/meminfo", "MemAvailable")


def resident_bytes() -> int | None:
    """This process's resident memory (VmRSS); None where unknown."""
    return _proc_bytes("/proc/self/status", "VmRSS")


def widest_inner(config: MambaConfig) -> int:
    """The most channels any layer has (a compact model's layers differ)."""
    return max(config.d_inner, *(config.layer_inner(i) for i in range(config.n_layer)))


def weight_bytes(config: MambaConfig) -> int:
    """The float32 weights of a model of `config` (embedding and every layer)."""
    widest = widest_inner(config)
    per_layer = 3 * config.d_model * widest + widest * (config.d_conv + 2 * config.d_state + 8)
    return FLOAT_BYTES * (config.padded_vocab_size * config.d_model + config.n_layer * per_layer)


def trial_bytes(config: MambaConfig, batch: int, seq_len: int) -> int:
    """An upper estimate of what a trial allocates on top of its loaded base model: four
    copies of the weights (its own, the merged and the compact one compaction makes, the dense
    one latency is timed beside) and the activations a training step keeps for the backward
    (SAVED_PER_CHANNEL floats per channel, token and layer: in_proj's output, the conv's input
    and output, the scan's inputs and states, the gate). mamba-130m at batch 8 x 64: 3.2 GB;
    `autohm train` peaked at 4.1 GB with the base model and the runtime loaded."""
    widest = widest_inner(config)
    activations = SAVED_PER_CHANNEL * widest * batch * seq_len * config.n_layer * FLOAT_BYTES
    return 4 * weight_bytes(config) + activations


def trial_memory_shortage(config: MambaConfig, batch: int, seq_len: int) -> str | None:
    """What a trial at this batch would need, when that is more than the memory available now
    (None when it fits, or where the kernel does not say)."""
    needed, free = trial_bytes(config, batch, seq_len), available_bytes()
    if free is None or needed <= free:
        return None
    return (
        f"a trial at train.batch_size {batch} x {seq_len} tokens needs about "
        f"{needed / 2**30:.1f} GiB (model copies and the activations of a training step); "
        f"{free / 2**30:.1f} GiB are available: lower train.batch_size"
    )
