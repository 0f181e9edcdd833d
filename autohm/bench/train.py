"""`autohm bench train`: what a training step and a trial cost on a real-size base model.

Side by side in one process, on the same weights, one step = forward + backward + AdamW on
the trainable parameters, float32, a batch of random tokens and labels:
- autohm fine-tune: LoRA r=8 (alpha 16) on in_proj, x_proj and dt_proj of every layer, and a
  classification head on the last token;
- autohm mask learning: channel masks on the default sites (in_proj's x and z rows, out_proj's
  columns) and the head, the base frozen, with the sparsity penalty;
- transformers + PEFT: transformers' Mamba loaded from the same weights (autohm writes them in
  transformers' layout), PEFT's LoRA with the same targets, rank and alpha, the same head; with
  `use_mambapy` when mambapy is installed (transformers' CPU path is otherwise a Python loop
  over the sequence). Left out, with a note, when transformers or peft is missing.
Each variant takes one untimed step, then `rounds` timed ones, the order of the variants
rotating from round to round; medians and minima, the peak resident memory of the process
while the variant's steps ran, and the first-step loss of each (LoRA starts at zero, so equal
losses show the weights are the same).

Then one trial of the `quick` space on the digits task, phase by phase, as a search runs it
(fidelity evaluations included), and the bytes a search stores for it: the space's warm-start
configuration at the benchmark's batch, with the costliest scan-order solver the space offers.
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from autohm.errors import AutohmError
from autohm.masking import SparsityPenalty, attach_masks
from autohm.memory import resident_bytes
from autohm.model import MambaClassifier, MambaConfig, MambaLM
from autohm.peft import Allocation, apply_allocation
from autohm.phases import Progress, ignore, labelled

SIZES = {"130m": (768, 24), "370m": (1024, 48), "790m": (1536, 48), "1.4b": (2048, 48)}
VOCAB = 50280  # the mamba checkpoints' vocabulary
LABELS = 10
RANK, ALPHA = 8, 16
TARGETS = ("in_proj", "x_proj", "dt_proj")
MASK_SITES = ["in_proj.x", "in_proj.z", "out_proj"]


@dataclass
class StepRow:
    """One training step variant: seconds per step over the timed rounds, and memory."""

    variant: str
    median_s: float
    min_s: float
    first_loss: float
    peak_rss_gib: float | None
    vs_fine_tune: float = 1.0  # median / autohm fine-tune's median


@dataclass
class TrialRow:
    """The quick-space trial: seconds per phase and the bytes of its stored files."""

    timings: dict[str, float]
    total_s: float
    stored_bytes: int
    files: dict[str, int] = field(default_factory=dict)


def size_config(size: str) -> MambaConfig:
    """The MambaConfig of `size`: a name in SIZES or D_MODELxLAYERS (e.g. 64x2), the mamba
    checkpoints' vocabulary."""
    if size in SIZES:
        d_model, layers = SIZES[size]
    else:
        try:
            d_model, layers = (int(part) for part in size.lower().split("x"))
        except ValueError:
            raise AutohmError(
                f"--size: {size!r} is not one of {', '.join(SIZES)} or D_MODELxLAYERS"
            ) from None
    try:
        return MambaConfig(d_model=d_model, n_layer=layers, vocab_size=VOCAB)
    except ValueError as error:  # a width or depth below 1
        raise AutohmError(f"--size: {size!r}: {error}") from None


def base_model(model: str | None, size: str) -> tuple[MambaLM, str]:
    """(the base, its description): the checkpoint `model`, or random weights of `size`
    (size_config)."""
    if model is not None:
        return MambaLM.from_pretrained(model), model
    config = size_config(size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        base = MambaLM(config)
    return base, f"random weights, d_model {config.d_model}, {config.n_layer} layers"


class PeakMemory:
    """The peak resident memory of this process while the block runs, sampled every 10 ms
    from /proc (None where there is no /proc)."""

    def __init__(self) -> None:
        self.peak: int | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            value = resident_bytes()
            if value is not None:
                self.peak = max(self.peak or 0, value)
            if self._done.wait(0.01):
                return

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


Step = Callable[[], float]


def _step(model: nn.Module, forward: Callable[[], torch.Tensor], labels, extra=None) -> Step:
    """One optimiser step of `model`'s trainable parameters; returns the loss."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)

    def step() -> float:
        loss = F.cross_entropy(forward(), labels)
        if extra is not None:
            loss = loss + extra()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step


def _classifier(base: MambaLM, head: nn.Linear) -> MambaClassifier:
    model = MambaClassifier(base.config, LABELS, backbone=copy.deepcopy(base.backbone))
    model.score.load_state_dict(head.state_dict())
    return model


def autohm_fine_tune(base: MambaLM, head: nn.Linear, ids, mask, labels) -> Step:
    model = _classifier(base, head).train()
    allocation = {
        f"layers.{i}.{name}": Allocation("lora", RANK)
        for i in range(base.config.n_layer)
        for name in TARGETS
    }
    apply_allocation(model, allocation, lora_alpha=ALPHA, seed=0)
    return _step(model, lambda: model(ids, mask), labels)


def autohm_mask_learning(base: MambaLM, head: nn.Linear, ids, mask, labels) -> Step:
    model = _classifier(base, head).train()
    attach_masks(model, MASK_SITES, granularity="channel")
    for name, param in model.named_parameters():
        param.requires_grad_(".masks." in name or name.startswith("score."))
    penalty = SparsityPenalty()
    return _step(model, lambda: model(ids, mask), labels, lambda: penalty(model))


def transformers_peft(base: MambaLM, head: nn.Linear, ids, mask, labels) -> tuple[Step, str]:
    """transformers' Mamba with PEFT's LoRA on the same weights (ImportError when either is
    missing); returns the step and the variant's name."""
    import importlib.util

    import transformers
    from peft import LoraConfig, get_peft_model
    from transformers import MambaForCausalLM

    transformers.logging.set_verbosity_error()  # its kernel fallbacks are this variant's point
    transformers.utils.logging.disable_progress_bar()
    mambapy = importlib.util.find_spec("mambapy") is not None
    with tempfile.TemporaryDirectory() as directory, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        base.save_pretrained(directory)
        loaded = MambaForCausalLM.from_pretrained(directory, use_mambapy=mambapy)
        backbone = get_peft_model(
            loaded.backbone, LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=list(TARGETS))
        ).train()
    score = copy.deepcopy(head)

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone, self.score = backbone, score

        def forward(self) -> torch.Tensor:
            hidden = self.backbone(input_ids=ids).last_hidden_state
            return self.score(hidden[:, -1])

    model = Model()
    name = "transformers + PEFT" + (" (use_mambapy)" if mambapy else "")
    return _step(model, model, labels), name


def time_steps(steps: dict[str, Step], rounds: int, progress: Progress = ignore) -> list[StepRow]:
    """One untimed step of each, then `rounds` timed rounds in a rotating order."""
    names = list(steps)
    times: dict[str, list[float]] = {name: [] for name in names}
    first: dict[str, float] = {}
    peaks: dict[str, int | None] = dict.fromkeys(names)
    for round_ in range(rounds + 1):
        for offset in range(len(names)):
            name = names[(round_ + offset) % len(names)]
            done, total = round_ * len(names) + offset, (rounds + 1) * len(names)
            progress("training steps", done, total, f"round {round_} of {rounds}: {name}")
            with PeakMemory() as memory:
                start = time.perf_counter()
                loss = steps[name]()
                elapsed = time.perf_counter() - start
            if memory.peak is not None:
                peaks[name] = max(peaks[name] or 0, memory.peak)
            if round_ == 0:
                first[name] = loss
            else:
                times[name].append(elapsed)
    rows = [
        StepRow(name, statistics.median(times[name]), min(times[name]), first[name],
                None if peaks[name] is None else peaks[name] / 2**30)
        for name in names
    ]  # fmt: skip
    for row in rows:
        row.vs_fine_tune = row.median_s / rows[0].median_s
    return rows


def run_steps(
    base: MambaLM,
    batch: int,
    seq_len: int,
    rounds: int,
    progress: Progress = ignore,
) -> tuple[list[StepRow], list[str]]:
    """The step table, and notes (a variant left out and why)."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, base.config.vocab_size, (batch, seq_len), generator=generator)
    mask = torch.ones(batch, seq_len, dtype=torch.long)
    labels = torch.randint(0, LABELS, (batch,), generator=generator)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        head = nn.Linear(base.config.d_model, LABELS)
    steps = {
        "autohm fine-tune (LoRA)": autohm_fine_tune(base, head, ids, mask, labels),
        "autohm mask learning": autohm_mask_learning(base, head, ids, mask, labels),
    }
    notes = []
    try:
        step, name = transformers_peft(base, head, ids, mask, labels)
        steps[name] = step
    except ImportError as error:
        notes.append(f"transformers + PEFT left out: {error} (pip install transformers peft)")
    return time_steps(steps, rounds, progress), notes


def run_trial_phases(
    base: MambaLM, source: str, batch: int, progress: Progress = ignore
) -> TrialRow:
    """The quick space's warm-start configuration on digits at `batch`, as a search runs it
    (fidelity evaluations included), and the bytes of what a search stores for it."""
    from autohm.measure import default_batch
    from autohm.search.space import load_space
    from autohm.tasks import load_task
    from autohm.trial import Workload, run_trial

    task = load_task("digits")
    workload = Workload(task, base, source, default_batch(base.config, task.seq_len))
    space = load_space("quick")
    config = space.default_config()
    config.train.batch_size = batch
    solvers = next(p.choices for p in space.parameters if p.key == "scan_order.method")
    config.scan_order.method = solvers[-1]  # the costliest the space offers: two_opt

    start = time.perf_counter()
    shown = labelled(progress, "quick trial")
    result = run_trial(config, workload, report=lambda *_: False, progress=shown)
    total = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as directory:
        stored = result.save(directory, lean=True)
        files = {path.name: path.stat().st_size for path in stored}
    return TrialRow(result.outcome.timings.model_dump(), total, sum(files.values()), files)


def as_dict(rows: list[StepRow], trial: TrialRow | None) -> dict:
    return {"steps": [asdict(row) for row in rows], "trial": asdict(trial) if trial else None}
