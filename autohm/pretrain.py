"""The built-in base model: a tiny Mamba pretrained by next-token prediction on the unlabeled
sequences of a task's training split, so that PEFT adapts a pretrained model (as users do with
mamba-130m). The digits model ships with the package; others are pretrained on first use and
cached (AUTOHM_CACHE, default ~/.cache/autohm). `autohm pretrain --task T` reproduces them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from autohm.cache import cache_dir
from autohm.model import MambaConfig, MambaLM
from autohm.phases import Progress, ignore
from autohm.tasks import Task
from autohm.training import batches, optimiser_step

BUILT_IN = Path(__file__).parent / "pretrained"
BASE_SHAPE = dict(d_model=64, n_layer=2, d_state=8, d_conv=4, expand=2)
PRETRAIN_STEPS = 600
PRETRAIN_BATCH = 64
PRETRAIN_LR = 3e-3


def base_model_name(task: Task) -> str:
    """A directory name that identifies the task (name, options and seed) the model learned."""
    spec = json.dumps({"task": task.name, "options": task.options, "seed": task.seed}, default=str)
    digest = hashlib.sha256(spec.encode()).hexdigest()[:10]
    return f"{task.name.replace(':', '_').replace('/', '_')}-{digest}"


def pretrain(
    task: Task,
    steps: int = PRETRAIN_STEPS,
    seed: int = 0,
    progress: Progress = ignore,
) -> MambaLM:
    """A fresh tiny MambaLM trained to predict the next token of the task's training sequences
    (padded targets skipped)."""
    torch.manual_seed(seed)
    model = MambaLM(MambaConfig(vocab_size=task.vocab_size, **BASE_SHAPE))
    optimizer = torch.optim.AdamW(model.parameters(), lr=PRETRAIN_LR, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, PRETRAIN_LR, total_steps=steps)
    stream = batches(task.train, PRETRAIN_BATCH, torch.Generator().manual_seed(seed))
    for step in range(steps):
        ids, mask, _ = next(stream)
        logits = model(ids, mask)[:, :-1]
        targets = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        value = optimiser_step(loss, optimizer, "pretraining", step)
        schedule.step()
        progress("pretraining the base model", step + 1, steps, f"loss {value:.3f}")
    return model.eval()


def base_model(task: Task, model: str | None = None, progress: Progress = ignore) -> MambaLM:
    """`model` (a checkpoint directory or Hub id) when given; otherwise the built-in model of
    the task, the cached one, or a freshly pretrained one (then cached)."""
    if model is not None:
        return MambaLM.from_pretrained(model)
    name = base_model_name(task)
    for directory in (BUILT_IN / name, cache_dir() / "pretrained" / name):
        if (directory / "config.json").is_file():
            return MambaLM.from_pretrained(directory)
    lm = pretrain(task, progress=progress)
    lm.save_pretrained(cache_dir() / "pretrained" / name)
    return lm
