"""One candidate configuration, end to end: calibration statistics -> scan order -> permutation
(pillar 1) -> mask learning (pillar 2) -> importance -> allocation -> PEFT fine-tuning
(pillar 3) -> evaluation -> measurement. Every search trial and `autohm train` run this."""

from __future__ import annotations

import copy
import functools
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
import torch.nn.functional as F
from torch import nn

from autohm.config import TrialConfig
from autohm.deploy import compact
from autohm.devices import default_device
from autohm.errors import AutohmError, TrialFailed
from autohm.files import write_text
from autohm.masking import (
    SparsityPenalty,
    TemperatureSchedule,
    attach_masks,
    hard_density,
    mask_modules,
    set_temperature,
    sparsity_report,
)
from autohm.masking.masks import mixers
from autohm.measure import (
    DEFAULT_BATCH,
    Latency,
    check_shape,
    count_flops,
    default_batch,
    deployed_flops,
    measure_latency,
)
from autohm.memory import trial_memory_shortage
from autohm.model import MambaClassifier, MambaLM
from autohm.model.classifier import Pooling
from autohm.outcome import LayerPath, ModuleRecord, ScanOrderRecord, Timings, TrialOutcome
from autohm.peft import (
    POLICIES,
    Allocation,
    apply_allocation,
    count_parameters,
    module_importance,
    save_adapter,
    save_order,
)
from autohm.phases import Progress, ignore
from autohm.pretrain import base_model
from autohm.scan_order import collect_statistics, correlation_cost, path_cost, permute_channels
from autohm.scan_order import solve as solve_order
from autohm.tasks import Task, load_task
from autohm.training import accuracy, batches, optimiser_step

__all__ = ["TrialFailed", "TrialPruned", "TrialResult", "Workload", "run_trial"]

FULL_WEIGHTS_NOTE = (
    "Full fine-tuning changes every weight, so a search keeps no copy of this model. To get it:\n"
    "autohm export --pick trial:N --out chosen.yaml, then autohm train --config chosen.yaml\n"
)
LATENCY_BUDGET_S = 5.0  # a trial's latency measurement: the full protocol where it fits (small
# models, GPUs), fewer runs of a large model on a CPU (autohm.measure.latency)

Report = Callable[[int, float, Callable[[], dict[str, float]]], bool]
"""report(step, validation_accuracy, known_costs) -> stop? known_costs() computes the trial's
FLOPs and trainable parameters (fixed before fine-tuning) when a stop rule asks for them."""


def stop_point(step: int) -> str:
    """Where a trial stopped, for people: step 0 is the one right after mask learning."""
    return "after mask learning" if step == 0 else f"at fine-tuning step {step}"


class TrialPruned(optuna.TrialPruned):
    """The search's multi-fidelity rule stopped the trial at `step` with `accuracy` (Optuna
    records the trial as pruned)."""

    def __init__(self, step: int, accuracy: float) -> None:
        super().__init__(f"stopped early {stop_point(step)} (validation accuracy {accuracy:.4f})")
        self.step, self.accuracy = step, accuracy


@dataclass
class Workload:
    """The task and base model every trial of a run shares (loaded once per process), and the
    deployment shape latency is timed at: `latency_batch` sequences of `latency_seq_len` tokens
    (None: the task's length)."""

    task: Task
    base: MambaLM
    model_source: str
    latency_batch: int = DEFAULT_BATCH
    latency_seq_len: int | None = None
    pooling: Pooling = "last"  # of every trial's classification head

    def __post_init__(self) -> None:
        if self.base is not None:
            check_shape(self.base.config, self.latency_batch, self.deployment_seq_len)

    @classmethod
    def load(
        cls,
        task: str = "digits",
        model: str | None = None,
        seed: int = 0,
        latency_batch: int | None = None,
        latency_seq_len: int | None = None,
        pooling: Pooling = "last",
        progress: Progress = ignore,
    ) -> Workload:
        """The task and its base model (pretrained on first use: `progress` hears of it); the
        deployment shape defaults to the model's default batch (autohm.measure.default_batch)
        of sequences of the task's length."""
        progress("loading", detail=f"task {task}, base model {model or 'built-in'}")
        loaded = load_task(task, seed=seed)
        base = base_model(loaded, model, progress)
        length = loaded.seq_len if latency_seq_len is None else latency_seq_len
        batch = default_batch(base.config, length) if latency_batch is None else latency_batch
        return cls(loaded, base, model or "built-in", batch, latency_seq_len, pooling)

    @property
    def deployment_seq_len(self) -> int:
        """The sequence length latency is timed at."""
        return self.task.seq_len if self.latency_seq_len is None else self.latency_seq_len

    def new_classifier(self) -> MambaClassifier:
        """A classifier on a private copy of the base backbone (trials never share weights)."""
        backbone = copy.deepcopy(self.base.backbone)
        return MambaClassifier(
            self.base.config, self.task.num_labels, self.pooling, backbone=backbone
        )

    @functools.cached_property
    def latency_reference(self) -> MambaClassifier:
        """The dense base classifier every trial's latency is timed beside (built without
        touching the global random state, so it never changes a trial)."""
        with torch.random.fork_rng(devices=[]):
            return self.new_classifier()

    @functools.cached_property
    def dense_flops(self) -> int:
        """Forward FLOPs of the dense base classifier on one sequence of the task's length."""
        return count_flops(self.latency_reference, self.task.seq_len).total

    def latency_inputs(self) -> torch.Tensor:
        """Token ids of the deployment shape (fixed random tokens: a Mamba forward takes the
        same time whatever they are)."""
        generator = torch.Generator().manual_seed(0)
        shape = (self.latency_batch, self.deployment_seq_len)
        return torch.randint(0, self.base.config.vocab_size, shape, generator=generator)


@dataclass
class TrialResult:
    """The trained model, what it measured and the artefacts of one trial."""

    config: TrialConfig
    model: nn.Module
    outcome: TrialOutcome
    orders: list[list[int]] = field(default_factory=list)
    allocation: dict[str, Allocation] = field(default_factory=dict)
    deployed: MambaClassifier | None = None  # the compact model (autohm.deploy.compact)

    def save(self, directory: str | Path, lean: bool = False) -> list[Path]:
        """metrics.json, config.yaml, order.json and the adapter/mask files; returns the paths.
        `lean` (a search's trials) never stores a whole model: full fine-tuning changes every
        weight, so its weights are left out, with WEIGHTS.txt saying how to get them."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_text(directory / "metrics.json", json.dumps(self.outcome.stored(), indent=2))
        self.config.save(directory / "config.yaml")
        if lean and self.config.peft.mode == "full":
            save_order(directory, self.orders)
            write_text(directory / "WEIGHTS.txt", FULL_WEIGHTS_NOTE)
        else:
            config = self.config.model_dump(mode="json")
            save_adapter(self.model, directory, config=config, orders=self.orders)
        return sorted(p for p in directory.iterdir() if p.is_file())


def run_trial(
    config: TrialConfig,
    workload: Workload,
    report: Report | None = None,
    latency: bool = True,
    test: bool = False,
    progress: Progress = ignore,
) -> TrialResult:
    """Train and measure one configuration. `report(step, validation_accuracy, known_costs)` is
    called at each fidelity step; when it returns True the trial stops with TrialPruned.
    `progress(phase, done, total, detail)` hears of every phase and step (autohm.phases)."""
    task = workload.task
    shortage = trial_memory_shortage(workload.base.config, config.train.batch_size, task.seq_len)
    if shortage is not None:
        raise TrialFailed(shortage)
    torch.manual_seed(config.train.seed)
    timings: dict[str, float] = {}
    model = workload.new_classifier()

    clock = time.perf_counter()
    order_info, orders = apply_scan_order(model, task, config, progress)
    timings["scan_order_s"] = time.perf_counter() - clock

    clock = time.perf_counter()
    if config.masking.enabled:
        learn_masks(model, task, config, progress)
    timings["masks_s"] = time.perf_counter() - clock

    clock = time.perf_counter()
    allocation = choose_allocation(model, config)
    fidelity_s = fine_tune(model, task, config, allocation, report, progress)
    timings["fine_tune_s"] = time.perf_counter() - clock - fidelity_s

    clock = time.perf_counter()
    progress("evaluation", detail="validation accuracy of the compact model")
    small = compact(model)  # fine_tune left the model in evaluation mode
    accuracies = evaluate(small, task, test)
    timings["evaluation_s"] = time.perf_counter() - clock + fidelity_s

    clock = time.perf_counter()
    progress("measurement", detail="parameters, FLOPs, latency")
    costs = measure(model, small, workload, config, latency)
    timings["measure_s"] = time.perf_counter() - clock
    outcome = TrialOutcome(
        **accuracies, **costs, allocation=_allocation_table(model, allocation),
        scan_order=order_info, timings=Timings(**timings), task=task.describe(),
        model=workload.model_source,
    )  # fmt: skip
    return TrialResult(config, model, outcome, orders, allocation, small)


def apply_scan_order(
    model: MambaClassifier, task: Task, config: TrialConfig, progress: Progress = ignore
) -> tuple[ScanOrderRecord, list[list[int]]]:
    """Pillar 1 on every layer: statistics, cost, solve (layers in parallel threads: the
    solvers release the GIL), permute; returns (record, orders). The record gives each layer's
    path costs, the time its statistics added to the calibration forward and its solve time."""
    settings = config.scan_order
    clock = time.perf_counter()
    if settings.method == "identity":
        return ScanOrderRecord(), [list(range(m.d_inner)) for m in mixers(model)]
    progress("calibration", detail=f"{settings.calibration_batches} batches")
    stream = batches(task.train, config.train.batch_size, _generator(config, 1))
    calibration = (next(stream)[:2] for _ in range(settings.calibration_batches))
    stats = collect_statistics(model, calibration, source=settings.source)
    statistics_s = time.perf_counter() - clock
    costs = [correlation_cost(acc) for acc in stats]
    if not all(np.isfinite(cost).all() for cost in costs):
        raise TrialFailed("non-finite calibration statistics (the base model gives NaN/inf)")
    layers = model.backbone.layers

    def solve_layer(index: int) -> tuple[np.ndarray, float]:
        clock = time.perf_counter()
        importance = layers[index].mixer.out_proj.weight.detach().norm(dim=0).double().numpy()
        perm = solve_order(
            costs[index], settings.method, seed=config.train.seed, importance=importance,
            time_limit=settings.time_limit,
        )  # fmt: skip
        return perm, time.perf_counter() - clock

    clock = time.perf_counter()
    progress("scan order", 0, len(costs), f"solver {settings.method}")
    solved: dict[int, tuple[np.ndarray, float]] = {}
    with ThreadPoolExecutor(max_workers=min(len(costs), os.cpu_count() or 1)) as pool:
        futures = {pool.submit(solve_layer, index): index for index in range(len(costs))}
        for future in as_completed(futures):
            solved[futures[future]] = future.result()
            progress("scan order", len(solved), len(costs), f"solver {settings.method}")
    solver_s = time.perf_counter() - clock
    records, orders = [], []
    for index, (layer, cost, acc) in enumerate(zip(layers, costs, stats, strict=True)):
        perm, solve_s = solved[index]
        permute_channels(layer.mixer, perm)
        orders.append(perm.tolist())
        records.append(LayerPath(
            before=path_cost(cost, np.arange(cost.shape[0])), after=path_cost(cost, perm),
            statistics_s=acc.seconds, solve_s=solve_s,
        ))  # fmt: skip
    record = ScanOrderRecord(
        method=settings.method, source=settings.source,
        path_cost_before=sum(layer.before for layer in records),
        path_cost_after=sum(layer.after for layer in records),
        layers=records, statistics_s=statistics_s, solver_s=solver_s,
        precompute_s=statistics_s + solver_s,
    )  # fmt: skip
    return record, orders


def learn_masks(
    model: MambaClassifier, task: Task, config: TrialConfig, progress: Progress = ignore
) -> None:
    """Pillar 2: train the mask logits (and the new head) with the base frozen."""
    settings = config.masking
    attach_masks(
        model, settings.sites, granularity=settings.granularity, block_size=settings.block_size,
        distribution=settings.distribution, init_logit=settings.init_logit,
    )  # fmt: skip
    for name, param in model.named_parameters():
        param.requires_grad_(".masks." in name or name.startswith("score."))
    logits = [p for n, p in model.named_parameters() if ".masks." in n]
    optimizer = torch.optim.Adam(
        [{"params": logits, "lr": settings.lr}, {"params": model.score.parameters()}],
        lr=config.train.lr,
    )
    schedule = TemperatureSchedule(**settings.schedule.model_dump())
    penalty = SparsityPenalty(**settings.penalty.model_dump())
    stream = batches(task.train, config.train.batch_size, _generator(config, 2))
    model.train()
    for step in range(settings.steps):
        set_temperature(model, schedule(step, settings.steps))
        ids, mask, labels = next(stream)
        loss = F.cross_entropy(model(ids, mask), labels) + penalty(model)
        value = optimiser_step(loss, optimizer, "mask learning", step)
        detail = f"loss {value:.3f}, sparsity {1 - hard_density(model):.0%}"
        progress("mask learning", step + 1, settings.steps, detail)


def choose_allocation(model: MambaClassifier, config: TrialConfig) -> dict[str, Allocation]:
    """Pillar 3's allocation: the modules' importances under the mode's policy (POLICIES)."""
    settings = config.peft
    return POLICIES[settings.mode](module_importance(model, settings.importance), settings)


def fine_tune(
    model: MambaClassifier,
    task: Task,
    config: TrialConfig,
    allocation: dict[str, Allocation],
    report: Report | None,
    progress: Progress = ignore,
) -> float:
    """Train the allocated adapters and the head (every weight in "full" mode), evaluating
    at each fidelity step: every `eval_every` steps, and at step 0 after mask learning (on the
    compact form, which computes the same outputs faster). Returns the seconds evaluations
    took."""
    settings, joint = config.train, config.masking.enabled and config.masking.joint
    alpha = config.peft.alpha
    apply_allocation(model, allocation, lora_alpha=alpha, seed=settings.seed, train_masks=joint)
    if config.peft.mode == "full":
        for name, param in model.named_parameters():
            param.requires_grad_(".masks." not in name or joint)
    masks = mask_modules(model)
    logits = [p for n, p in model.named_parameters() if ".masks." in n and p.requires_grad]
    others = [p for n, p in model.named_parameters() if ".masks." not in n and p.requires_grad]
    groups = [{"params": others}] + (
        [{"params": logits, "lr": config.masking.lr}] if logits else []
    )
    optimizer = torch.optim.AdamW(groups, lr=settings.lr, weight_decay=settings.weight_decay)
    penalty = SparsityPenalty(**config.masking.penalty.model_dump()) if joint else None
    if joint:
        set_temperature(model, config.masking.schedule.end)
    stream = batches(task.train, settings.batch_size, _generator(config, 3))
    costs = functools.cache(lambda: known_costs(model, task))

    evaluation_s = 0.0

    def check(step: int) -> None:
        nonlocal evaluation_s
        clock = time.perf_counter()
        progress("evaluation", detail=f"validation accuracy at fine-tuning step {step}")
        value = accuracy(compact(model), task.validation)  # the same outputs, cheaper to run
        evaluation_s += time.perf_counter() - clock
        if report(step, value, costs):
            raise TrialPruned(step, value)

    if report is not None and config.masking.enabled:
        check(0)  # the head was trained with the masks: a first, cheap fidelity step
    for step in range(1, settings.steps + 1):
        model.train()
        for mixer_masks in masks:
            mixer_masks.train(joint)  # fixed masks stay hard while the adapters train
        ids, mask, labels = next(stream)
        loss = F.cross_entropy(model(ids, mask), labels)
        if penalty is not None:
            loss = loss + penalty(model)
        value = optimiser_step(loss, optimizer, "fine-tuning", step)
        progress("fine-tuning", step, settings.steps, f"loss {value:.3f}")
        if report is not None and step % settings.eval_every == 0 and step < settings.steps:
            check(step)
    model.eval()
    return evaluation_s


def known_costs(model: MambaClassifier, task: Task) -> dict[str, float]:
    """The objectives fixed once the adapters are attached: FLOPs of the compact model and
    trainable parameters (with masks trained jointly, FLOPs as of the call)."""
    flops = count_flops(compact(model), task.seq_len).total
    return {"flops": float(flops), "params": float(count_parameters(model).params)}


def evaluate(small: MambaClassifier, task: Task, test: bool) -> dict[str, Any]:
    """Validation (and with `test`, test) accuracy of the compact model: what deploys, and the
    cheapest form to run (it computes the masked model's outputs, tests/test_deploy.py)."""
    metrics = {"accuracy": accuracy(small, task.validation), "pooling": small.pooling}
    if test:
        metrics["test_accuracy"] = accuracy(small, task.test)
    return metrics


def measure(
    model: MambaClassifier,
    small: MambaClassifier,
    workload: Workload,
    config: TrialConfig,
    latency: bool,
) -> dict[str, Any]:
    """The cost objectives and what explains them: the trained model's parameters, and the
    FLOPs and latency of `small`, its compact form (masked channels and states removed)."""
    task = workload.task
    counts = count_parameters(model)
    metrics = {
        "params": counts.params,
        "params_masked": counts.params_masked,
        "params_total": counts.params_total,
    }
    flops, sparse = deployed_flops(small, task.seq_len)
    metrics |= {
        "flops": flops.total,
        "flops_sparse": sparse.total,
        "flops_dense": workload.dense_flops,
        "flops_convention": flops.convention,
        "channels": [mixer.d_inner for mixer in mixers(small)],
        "states": [mixer.d_state for mixer in mixers(small)],
        "sparsity": sparsity_report(model) if config.masking.enabled else {},
    }
    if latency:
        timing = measure_deployed_latency(small, workload)
        metrics |= {
            "latency": timing.relative,
            "latency_ms": timing.median_ms,
            "latency_iqr_ms": timing.iqr_ms,
            "latency_dense_ms": timing.reference_median_ms,
            "latency_batch": timing.batch,
            "latency_seq_len": timing.seq_len,
            "device": timing.to_dict(),
        }
    return metrics


def measure_deployed_latency(small: MambaClassifier, workload: Workload) -> Latency:
    """The compact model timed in turns with the dense base at the deployment shape, on the GPU
    when there is one (its Triton or mamba_ssm kernels), else on the CPU; `small` stays on
    the CPU."""
    ids = workload.latency_inputs()
    try:
        device = default_device()
        return measure_latency(
            small, ids, device=device, reference=workload.latency_reference,
            budget_s=LATENCY_BUDGET_S,
        )  # fmt: skip
    except RuntimeError as error:  # torch.OutOfMemoryError, or the CPU allocator's failure
        if not isinstance(error, torch.OutOfMemoryError) and "allocate" not in str(error):
            raise
        raise AutohmError(
            f"the latency shape {tuple(ids.shape)} (--latency-batch x --latency-seq-len) does not "
            f"fit in memory: {' '.join(str(error).split())[:120]}"
        ) from None
    finally:
        small.cpu()


def _allocation_table(
    model: MambaClassifier, allocation: dict[str, Allocation]
) -> dict[str, ModuleRecord]:
    """Per module: method, rank, importance and the elements of its adapter tensors."""
    table = {}
    for key, choice in allocation.items():
        _, layer, name = key.split(".")
        module = getattr(model.backbone.layers[int(layer)].mixer, name)
        parts = [getattr(module, part, None) for part in ("lora", "ia3")]  # plain without masks
        parts = [part for part in parts if part is not None]
        table[key] = ModuleRecord(
            method=choice.method,
            rank=choice.rank,
            importance=choice.importance,
            params=sum(t.numel() for part in parts for t in part.parameters()),
        )
    return table


def _generator(config: TrialConfig, stream: int) -> torch.Generator:
    """A separate seeded stream per phase, so changing one phase leaves the others' data."""
    return torch.Generator().manual_seed(config.train.seed * 1000 + stream)
