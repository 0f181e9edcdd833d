"""The `autohm` command line. User mistakes print one `error:` line and exit with status 2."""

from __future__ import annotations

import json
import platform
import shlex
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from autohm import __version__
from autohm.errors import AutohmError
from autohm.files import check_output_dir, check_output_file, write_text

app = typer.Typer(
    help="Hardware-aware AutoML for Mamba models.", no_args_is_help=True, add_completion=False
)
console = Console(soft_wrap=True, markup=False, emoji=False, highlight=False)  # values as they are


@app.callback()
def _root() -> None:
    """Hardware-aware AutoML for Mamba models."""


@app.command()
def info(
    model: str | None = typer.Option(
        None, "--model", help="A checkpoint directory or Hub id to describe."
    ),
) -> None:
    """Show versions, devices and scan backends; with --model, a checkpoint's config and size."""
    import torch

    from autohm.ops import available_backends

    table = Table(show_header=False, box=None)
    table.add_row("autohm", __version__)
    table.add_row("python", platform.python_version())
    table.add_row("torch", torch.__version__)
    devices = ["cpu"] + [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    table.add_row("devices", ", ".join(devices))
    table.add_row("scan backends (cpu)", ", ".join(available_backends("cpu")))
    if model is not None:
        from autohm.deploy import describe
        from autohm.model import MambaLM
        from autohm.model.checkpoint import read_head, resolve_checkpoint

        lm = MambaLM.from_pretrained(model)
        config = lm.config
        table.add_row("model", model)
        for key, value in config.to_dict().items():
            table.add_row(f"  {key}", str(value))
        params = sum(p.numel() for p in lm.parameters())
        table.add_row("  parameters", f"{params:,}")
        table.add_row("  compaction", describe(config))
        head = read_head(resolve_checkpoint(model))
        if head is not None:
            tensors, pooling = head
            classes = tensors["score.weight"].shape[0]
            table.add_row("  classification head", f"{classes} classes, pooling {pooling}")
    console.print(table)


def _quiet() -> typer.models.OptionInfo:
    return typer.Option(False, "--quiet", "-q", help="No progress lines (errors still show).")


bench_app = typer.Typer(
    help="Benchmarks, side by side in one process: medians and speed ratios.",
    no_args_is_help=True,
)
app.add_typer(bench_app, name="bench")


@bench_app.command("deploy")
def bench_deploy(
    models: str = typer.Option("built-in,d256x4", help="Comma-separated: built-in, d256x4, 130m."),
    fractions: str = typer.Option(
        "0,0.25,0.5,0.75,0.9", help="Comma-separated shares of channels removed."
    ),
    repeats: int = typer.Option(30, min=1, help="Timed runs of each model (in turns)."),
    device: str | None = typer.Option(None, help="cpu or cuda (default: cuda when present)."),
    batch: int | None = typer.Option(
        None,
        min=1,
        help="Sequences per batch (default: each model's: built-in 32, d256x4 8, 130m 1).",
    ),  # fmt: skip
    seq_len: int | None = typer.Option(
        None, min=1, help="Tokens per sequence (default: built-in 64, d256x4 256)."
    ),  # fmt: skip
    json_path: Path | None = typer.Option(None, "--json", help="Also write the rows as JSON."),
) -> None:
    """FLOPs and latency of compact models against their dense base, channels removed at
    0 to 90 %."""
    import torch

    from autohm.bench import deploy
    from autohm.devices import describe_device, parse_device

    target = parse_device(device)
    if json_path is not None:
        check_output_file(json_path, what="--json")
    try:
        shares = [float(f) for f in fractions.split(",")]
    except ValueError:
        raise AutohmError(f"--fractions: {fractions!r} is not a list of numbers") from None
    console.print(f"device {describe_device(target)}, torch {torch.__version__}", highlight=False)
    with console.status("benchmarking") as status:
        rows = deploy.run(models.split(","), shares, repeats, target, status.update, batch, seq_len)
    table = Table(title="compact model vs dense base: FLOPs, then latency timed in turns")
    columns = ("model", "shape", "removed", "channels", "MFLOPs", "x dense", "ms (IQR)",
               "dense ms (IQR)", "x dense")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in rows:
        table.add_row(
            row.model, row.shape, f"{row.removed:.0%}", str(row.channels),
            f"{row.flops / 1e6:,.1f}", f"{row.flops_ratio:.2f}",
            f"{row.median_ms:.2f} ({row.iqr_ms:.2f})",
            f"{row.dense_median_ms:.2f} ({row.dense_iqr_ms:.2f})", f"{row.latency_ratio:.2f}",
        )  # fmt: skip
    console.print(table)
    if json_path is not None:
        environment = {"device": describe_device(target), "torch": torch.__version__}
        document = {"environment": environment, "rows": deploy.as_dicts(rows)}
        write_text(json_path, json.dumps(document, indent=2))
        console.print(f"wrote {json_path}")


@bench_app.command("train")
def bench_train(
    model: str | None = typer.Option(None, help="A checkpoint directory (default: --size)."),
    size: str = typer.Option(
        "130m", help="Random weights of a mamba shape: 130m, 370m, 790m, 1.4b or D_MODELxLAYERS."
    ),
    batch: int = typer.Option(8, min=1, help="Sequences per step (and in the quick trial)."),
    seq_len: int = typer.Option(64, min=1, help="Tokens per sequence of the timed steps."),
    rounds: int = typer.Option(5, min=1, help="Timed rounds of every step variant."),
    trial: bool = typer.Option(True, help="Also run one quick-space trial, phase by phase."),
    json_path: Path | None = typer.Option(None, "--json", help="Also write the rows as JSON."),
    quiet: bool = _quiet(),
) -> None:
    """Training step of autohm vs transformers + PEFT on the same weights, then one trial."""
    import torch

    from autohm.bench import train
    from autohm.devices import describe_device
    from autohm.phases import phase_log

    if json_path is not None:
        check_output_file(json_path, what="--json")
    with phase_log(quiet) as log:
        log("loading", detail=model or f"random weights of mamba {size}")
        base, source = train.base_model(model, size)
        params = sum(p.numel() for p in base.parameters())
        shown = f"{source}: {params / 1e6:.0f}M parameters; {describe_device('cpu')}, "
        shown += f"torch {torch.__version__}, batch {batch} x {seq_len}"
        console.print(shown, highlight=False)
        rows, notes = train.run_steps(base, batch, seq_len, rounds, log)
        table = Table(title=f"one training step, {rounds} rounds in turns (after one untimed)")
        for column in ("variant", "median s", "min s", "x fine-tune", "peak GiB", "first loss"):
            table.add_column(column, justify="left" if column == "variant" else "right")
        for row in rows:
            memory = "-" if row.peak_rss_gib is None else f"{row.peak_rss_gib:.1f}"
            table.add_row(row.variant, f"{row.median_s:.3g}", f"{row.min_s:.3g}",
                          f"{row.vs_fine_tune:.2f}", memory, f"{row.first_loss:.6f}")  # fmt: skip
        console.print(table)
        for note in notes:
            console.print(note, highlight=False)
        phases = None
        if trial:
            phases = train.run_trial_phases(base, model or size, batch, log)
    if phases is not None:
        table = Table(title=f"one quick-space trial on digits at batch {batch}, by phase")
        table.add_column("phase")
        table.add_column("seconds", justify="right")
        for key, seconds in phases.timings.items():
            table.add_row(key.removesuffix("_s").replace("_", " "), f"{seconds:.1f}")
        table.add_row("whole trial", f"{phases.total_s:.1f}")
        console.print(table)
        console.print(f"a search stores {phases.stored_bytes / 2**20:.2f} MiB for this trial: "
                      + ", ".join(f"{name} {size_:,} B" for name, size_ in phases.files.items()),
                      highlight=False)  # fmt: skip
    if json_path is not None:
        write_text(json_path, json.dumps(train.as_dict(rows, phases), indent=2))
        console.print(f"wrote {json_path}")


@bench_app.command("scan")
def bench_scan(
    shapes: str = typer.Option(
        "4x256x256x16,2x1536x512x16", help="Comma-separated BATCHxD_INNERxLxD_STATE."
    ),
    backends: str | None = typer.Option(
        None,
        help="Comma-separated backends; 'mambapy' is the parallel-scan baseline and a ':dead50' "
        "suffix kills half the channel blocks. Default: all usable on the device, mambapy "
        "when installed, and the block-skipping backends with ':dead50'.",
    ),
    device: str | None = typer.Option(None, help="cpu or cuda (default: cuda when present)."),
    repeats: int = typer.Option(5, min=1, help="Timed rounds; the median is reported."),
    json_path: Path | None = typer.Option(None, "--json", help="Also write the rows as JSON."),
) -> None:
    """Time forward+backward of each selective-scan backend and print speed ratios."""

    from autohm.bench import scan
    from autohm.devices import parse_device

    target = parse_device(device)
    if json_path is not None:
        check_output_file(json_path, what="--json")
    variants = backends.split(",") if backends else scan.default_variants(target)
    if "reference" not in variants:
        variants.insert(0, "reference")  # every ratio is against it
    info = scan.environment(target)
    console.print(", ".join(f"{k} {v}" for k, v in info.items()), highlight=False)
    with console.status("benchmarking") as status:
        rows = scan.run(
            scan.parse_shapes(shapes),
            variants,
            target,
            repeats,
            progress=lambda message: status.update(message),
        )
    table = Table(title="selective scan, forward + backward (median of rounds)")
    for column in ("shape", "backend", "median ms", "IQR ms", "x reference", "x mambapy"):
        table.add_column(column, justify="left" if column in ("shape", "backend") else "right")
    for row in rows:
        table.add_row(
            row.shape,
            row.variant,
            f"{row.median_ms:.2f}",
            f"{row.iqr_ms:.2f}",
            *(f"{ratio:.1f}" if ratio else "-" for ratio in (row.vs_reference, row.vs_mambapy)),
        )
    console.print(table)
    if json_path is not None:
        write_text(
            json_path, json.dumps({"environment": info, "rows": scan.as_dicts(rows)}, indent=2)
        )
        console.print(f"wrote {json_path}")


TASK_HELP = (
    "digits (default), selective-copy, induction, mqar, text:PATH or hf:NAME; "
    "options as NAME?KEY=VALUE,..."
)
MODEL_HELP = "A checkpoint directory or Hub id (default: the built-in base model of the task)."
LATENCY_BATCH_HELP = (
    "Deployment shape latency is timed at: sequences per batch (default: 32 for small models, "
    "fewer for large ones, down to 1 for mamba-130m; docs/measurement.md)."
)
LATENCY_SEQ_LEN_HELP = "Deployment shape latency is timed at: tokens (default: the task's)."


def _latency_batch() -> typer.models.OptionInfo:
    return typer.Option(None, "--latency-batch", help=LATENCY_BATCH_HELP)


def _latency_seq_len() -> typer.models.OptionInfo:
    return typer.Option(None, "--latency-seq-len", help=LATENCY_SEQ_LEN_HELP)


def _summary_table(title: str, rows: list[dict]) -> Table:
    """A rich table of metric rows (first column left-aligned)."""
    table = Table(title=title)
    columns = list(rows[0]) if rows else []
    for index, column in enumerate(columns):
        table.add_column(column, justify="left" if index == 0 else "right")
    for row in rows:
        table.add_row(*(_cell(row[c]) for c in columns))
    return table


def _cell(value) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) >= 1:
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else f"{value:,}" if isinstance(value, int) else str(value)


def _workload(
    task: str,
    model: str | None,
    latency_batch: int | None,
    latency_seq_len: int | None,
    progress,
    pooling: str = "last",
):
    """The task and base model (`progress` hears of a base model pretrained on first use), and
    the deployment shape latency is timed at (checked before any work)."""
    from autohm.measure import check_options
    from autohm.trial import Workload

    check_options(1 if latency_batch is None else latency_batch, latency_seq_len)
    return Workload.load(task, model, 0, latency_batch, latency_seq_len, pooling, progress)


def _from_export(option: str, given, saved: dict, key: str, default):
    """An option of `autohm train`: the flag when given (with a note where the exported file
    says otherwise), else the exported file's `run:` value, else the default."""
    if given is None:
        return default if saved.get(key) is None else saved[key]
    if key in saved and saved[key] != given:
        console.print(f"note: {option} {given} overrides the exported {key} {saved[key]}")
    return given


@app.command()
def pretrain(
    task: str = typer.Option("digits", help=TASK_HELP),
    out: Path | None = typer.Option(None, help="Directory to write (default: the cache)."),
    steps: int = typer.Option(600, min=1, help="Next-token training steps."),
    seed: int = typer.Option(0, help="Seed of the splits and of the training."),
    quiet: bool = _quiet(),
) -> None:
    """Pretrain the tiny base model of a task (next-token prediction on its training split)."""
    from autohm import pretrain as base
    from autohm.cache import cache_dir
    from autohm.phases import phase_log
    from autohm.tasks import load_task

    if out is not None:
        check_output_dir(out)
    loaded = load_task(task, seed=seed)
    target = out or cache_dir() / "pretrained" / base.base_model_name(loaded)
    with phase_log(quiet) as progress:
        lm = base.pretrain(loaded, steps=steps, seed=seed, progress=progress)
    lm.save_pretrained(target)
    console.print(f"wrote {target}")


@app.command()
def train(
    config: Path = typer.Option(..., help="A trial configuration YAML (autohm export writes one)."),
    task: str | None = typer.Option(None, help=TASK_HELP + " Default: the exported file's."),
    model: str | None = typer.Option(None, help=MODEL_HELP + " Default: the exported file's."),
    out: Path = typer.Option(
        Path("autohm-run"), help="Directory for metrics, adapter, masks, export."
    ),
    seed: int | None = typer.Option(None, help="Override train.seed of the configuration."),
    latency_batch: int | None = _latency_batch(),
    latency_seq_len: int | None = _latency_seq_len(),
    quiet: bool = _quiet(),
) -> None:
    """Train one configuration at full fidelity; write metrics.json, adapter, masks, PEFT export
    and the compact deployed model (DIR/deploy)."""
    from autohm.config import TrialConfig
    from autohm.deploy import describe
    from autohm.export import read_run_settings
    from autohm.phases import phase_log
    from autohm.runs import DEPLOY_DIR, SUMMARY_KEYS, train_and_save

    check_output_dir(out)
    trial_config = TrialConfig.load(config)
    saved = read_run_settings(config)
    if seed is not None:
        trial_config.train.seed = seed
    with phase_log(quiet) as progress:
        workload = _workload(
            _from_export("--task", task, saved, "task", "digits"),
            _from_export("--model", model, saved, "model", None),
            _from_export("--latency-batch", latency_batch, saved, "latency_batch", None),
            _from_export("--latency-seq-len", latency_seq_len, saved, "latency_seq_len", None),
            progress,
            saved.get("pooling", "last"),
        )
        result = train_and_save(trial_config, workload, out, progress)
    outcome = result.outcome
    console.print(
        _summary_table(
            "autohm train", [{"metric": k, "value": outcome.value(k)} for k in SUMMARY_KEYS]
        )
    )
    console.print(f"deploy: {describe(result.deployed.config)}", highlight=False)
    console.print(f"wrote {out} (the compact model in {out / DEPLOY_DIR})", highlight=False)


@app.command()
def baselines(
    task: str = typer.Option("digits", help=TASK_HELP),
    model: str | None = typer.Option(None, help=MODEL_HELP),
    out: Path = typer.Option(Path("autohm-baselines"), help="Directory for baselines.csv/json."),
    config: Path | None = typer.Option(
        None, help="Take training settings from this configuration."
    ),
    latency_batch: int | None = _latency_batch(),
    latency_seq_len: int | None = _latency_seq_len(),
    quiet: bool = _quiet(),
) -> None:
    """Measure full fine-tuning, linear probing, LoRA-only and IA3-only on the same base model."""
    from autohm.config import TrialConfig
    from autohm.phases import phase_log
    from autohm.runs import run_baselines

    check_output_dir(out)
    like = TrialConfig.load(config) if config else None
    with phase_log(quiet) as progress:
        workload = _workload(task, model, latency_batch, latency_seq_len, progress)
        table = run_baselines(workload, out, like, progress)
    by_metric = table.set_index("baseline").T.reset_index(names="metric")
    console.print(_summary_table("baselines", by_metric.to_dict("records")))
    console.print(f"wrote {out / 'baselines.csv'}")


@app.command()
def search(
    budget: int = typer.Option(100, min=1, help="Finished trials the study should hold in all."),
    task: str | None = typer.Option(None, help="Task spec (default: the space's, else digits)."),
    model: str | None = typer.Option(None, help="Base checkpoint directory or Hub id."),
    space: str = typer.Option("default", help="Built-in space name or a YAML file."),
    study: str | None = typer.Option(None, help="Study name (default: SPACE-TASK)."),
    storage: str | None = typer.Option(
        None, help="Optuna storage URL or SQLite file (default: OUT/autohm.db)."
    ),
    sampler: str = typer.Option(
        "tpe", help="tpe, nsga2, gp, random, or any Optuna sampler as package.module:Factory."
    ),
    n_jobs: int = typer.Option(1, "--n-jobs", min=1, help="Trials run in parallel threads."),
    seed: int | None = typer.Option(0, help="Sampler seed."),
    max_params: float | None = typer.Option(None, help="Constraint: trainable parameters."),
    max_latency: float | None = typer.Option(
        None, help="Constraint: latency as a multiple of the dense base model's (e.g. 0.5)."
    ),
    max_latency_ms: float | None = typer.Option(
        None, help="Constraint: the compact model's measured latency in ms (machine-dependent)."
    ),
    latency_batch: int | None = _latency_batch(),
    latency_seq_len: int | None = _latency_seq_len(),
    prune: str | None = typer.Option(
        None,
        help="Multi-fidelity early stop: median, halving, pareto or none (default: the space's).",
    ),
    baselines: bool = typer.Option(False, help="Also enqueue the space's baselines first."),
    heartbeat: int = typer.Option(60, min=1, help="Seconds between heartbeats of a trial."),
    out: Path = typer.Option(Path("."), help="Directory for the default storage and artefacts."),
    quiet: bool = _quiet(),
) -> None:
    """Search the recipe's knobs for the Pareto front of accuracy, FLOPs, parameters, latency."""
    import warnings

    import optuna

    from autohm.phases import PhaseLog, phase_log
    from autohm.search.progress import SearchProgress
    from autohm.search.space import load_space
    from autohm.search.study import SearchSettings, Terminated, run_search
    from autohm.storage import locate

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the progress lines say it all
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    settings = SearchSettings.from_options(
        load_space(space), budget=budget, task=task, model=model, study=study, storage=storage,
        out=out, sampler=sampler, n_jobs=n_jobs, seed=seed, max_params=max_params,
        max_latency=max_latency, max_latency_ms=max_latency_ms, latency_batch=latency_batch,
        latency_seq_len=latency_seq_len, prune=prune, baselines=baselines,
        heartbeat_s=heartbeat,
    )  # fmt: skip
    check_output_dir(settings.out)

    def watch(number: int) -> PhaseLog:
        """A trial's phases, once it has run for 30 s (short trials stay one line each)."""
        return phase_log(quiet, live=False, every=30, after=30, label=f"trial {number}")

    with phase_log(quiet) as loading:
        workload = _workload(settings.task, settings.model, settings.latency_batch,
                             settings.latency_seq_len, loading)  # fmt: skip
    length = f"{settings.latency_seq_len} tokens" if settings.latency_seq_len else "task length"
    shape = f"{workload.latency_batch} sequences of {length}"
    progress = SearchProgress(console, budget, n_jobs, shape)
    try:
        result = run_search(settings, workload, callbacks=[progress], on_start=progress.header,
                            watch=watch)  # fmt: skip
    except optuna.exceptions.StorageInternalError as error:
        cause = " ".join(str(error.__cause__ or error).split())[:200]
        raise AutohmError(f"storage {settings.storage or settings.out}: {cause}") from None
    except KeyboardInterrupt as stop:
        console.print("interrupted: completed trials are stored; rerun the command to resume")
        raise typer.Exit(143 if isinstance(stop, Terminated) else 130) from None
    progress.summary(result)
    where = f"--study {shlex.quote(result.study_name)} --storage " + shlex.quote(
        locate(settings.storage, settings.out).shown
    )
    console.print(f"see it: autohm app {where}\npick one: autohm export {where}", highlight=False)


@app.command()
def export(
    study: str | None = typer.Option(None, help="Study name (optional if the storage has one)."),
    storage: str | None = typer.Option(None, help="Storage URL or SQLite file (./autohm.db)."),
    pick: str = typer.Option(
        "knee", help="knee, max-accuracy, min-flops, min-params, min-latency or trial:N."
    ),
    trial: int | None = typer.Option(None, help="Export this trial number (same as trial:N)."),
    min_accuracy: float | None = typer.Option(None, help="Only trials at least this accurate."),
    max_params: float | None = typer.Option(None, help="Only trials with at most these params."),
    max_latency: float | None = typer.Option(
        None, help="Only trials at most this slow (a multiple of the dense base's latency)."
    ),
    max_latency_ms: float | None = typer.Option(
        None, help="Only trials whose compact model measured at most this many ms."
    ),
    format: str = typer.Option(
        "yaml", help="yaml: the picked configuration; csv, parquet or json: every trial as a table."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="File to write."),
) -> None:
    """Write a searched configuration as YAML for `autohm train --config FILE`, or all trials."""
    from autohm.export import export_table, export_trial
    from autohm.storage import existing_study, own_files

    opened = existing_study(storage, study)
    protected = own_files(opened, storage)
    if format != "yaml":
        path = export_table(opened, format, out, protected)
        console.print(f"wrote {path}", highlight=False)
        return
    limits = {"params": max_params, "latency": max_latency, "latency_ms": max_latency_ms}
    limits = {key: value for key, value in limits.items() if value is not None}
    rule = f"trial:{trial}" if trial is not None else pick
    path, chosen = export_trial(opened, rule, out, min_accuracy, limits, protected)
    console.print(f"wrote {path} (trial {chosen.number}, {chosen.state.name})", highlight=False)


@app.command()
def ablate(
    config: Path | None = typer.Option(None, help="The configuration to ablate around."),
    study: str | None = typer.Option(None, help="Or: pick it from this study."),
    storage: str | None = typer.Option(None, help="Storage URL or SQLite file of --study."),
    pick: str = typer.Option("knee", help="Pick rule for --study (as in autohm export)."),
    task: str = typer.Option("digits", help=TASK_HELP),
    model: str | None = typer.Option(None, help=MODEL_HELP),
    seeds: int = typer.Option(3, min=2, help="Seeds per variant (mean ± std, bootstrap)."),
    out: Path = typer.Option(Path("autohm-ablation"), help="Directory for tables and plots."),
    latency_batch: int | None = _latency_batch(),
    latency_seq_len: int | None = _latency_seq_len(),
    quiet: bool = _quiet(),
) -> None:
    """Measure what each pillar and their combination contribute around one configuration."""
    from autohm.ablation import ablate as run_ablation
    from autohm.ablation import write_report
    from autohm.config import TrialConfig
    from autohm.phases import phase_log
    from autohm.results import frame

    check_output_dir(out)
    if (config is None) == (study is None and storage is None):
        raise AutohmError("give either --config FILE or --study NAME (with --storage)")
    opened = None
    if config is not None:
        chosen = TrialConfig.load(config)
    else:
        from autohm.export import picked_config
        from autohm.storage import existing_study

        opened = existing_study(storage, study, writable=True)  # the report is stored in it
        chosen, trial = picked_config(opened, pick)
        console.print(f"ablating around trial {trial.number} of {opened.study_name}")
    with phase_log(quiet) as progress:
        workload = _workload(task, model, latency_batch, latency_seq_len, progress)
        runs, notes = run_ablation(chosen, workload, list(range(seeds)), progress=progress)
    files = write_report(runs, notes, out, frame(opened) if opened is not None else None)
    if opened is not None:
        opened.set_user_attr("ablation", json.loads(files["json"].read_text()))
    console.print(files["markdown"].read_text(), highlight=False, markup=False)
    console.print(f"wrote {', '.join(str(p) for p in files.values())}", highlight=False)


APP_SCRIPT = Path(__file__).resolve().parent / "app" / "streamlit_app.py"  # in the package


@app.command("app")
def serve(
    storage: str | None = typer.Option(None, help="Storage URL or SQLite file (./autohm.db)."),
    study: str | None = typer.Option(None, help="Study shown first (the app lists them all)."),
    baselines: Path | None = typer.Option(None, help="baselines.json of autohm baselines."),
    port: int = typer.Option(8501, min=1, max=65535, help="Port of the web server."),
    address: str = typer.Option("localhost", help="Address to bind (0.0.0.0: every interface)."),
) -> None:
    """Browse a study in the Streamlit app: Pareto fronts, progress, trials, downloads."""
    import os

    from autohm.app.views import read_baselines, study_names

    storage = storage or os.environ.get("AUTOHM_STORAGE")
    names = study_names(storage)  # a missing storage or study is an error here, not in the page
    if not names or (study is not None and study not in names):
        asked = f"no study {study!r}" if study else "no autohm study"
        raise AutohmError(f"{asked} in the storage; autohm studies there: "
                          f"{', '.join(names) or 'none'}")  # fmt: skip
    if baselines is not None:
        read_baselines(baselines)  # a missing or malformed file is an error here too
    settings = {"AUTOHM_STORAGE": storage, "AUTOHM_STUDY": study,
                "AUTOHM_BASELINES": str(baselines.resolve()) if baselines else None}  # fmt: skip
    environment = {**os.environ, **{k: v for k, v in settings.items() if v is not None}}
    command = [
        sys.executable, "-m", "streamlit", "run", str(APP_SCRIPT), "--server.address", address,
        "--server.port", str(port), "--server.headless", "true",
        "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal",
    ]  # fmt: skip
    console.print(f"autohm app: http://{address}:{port} (Ctrl-C stops it)", highlight=False)
    sys.stdout.flush()
    # become the server: stopping this process (Ctrl-C, a signal) stops Streamlit with it
    os.execve(sys.executable, command, environment)


def _click_exceptions():
    """The exceptions module of the click that typer runs on (typer >= 0.29 vendors click)."""
    try:
        from typer._click import exceptions
    except ImportError:
        from click import exceptions
    return exceptions


def main() -> None:
    """Entry point of the console script: run the app, turning AutohmError and usage mistakes
    (a bad option value) into one `error:` line with exit status 2."""
    exceptions = _click_exceptions()
    try:
        status = app(standalone_mode=False)
    except (AutohmError, exceptions.ClickException) as error:
        message = str(error)
        if isinstance(error, exceptions.ClickException):
            message = " ".join(error.format_message().split())  # empty: the help was shown
        if message:
            error_console = Console(stderr=True, soft_wrap=True, markup=False, emoji=False)
            error_console.print(Text.assemble(("error:", "bold red"), f" {message}"))
        sys.exit(2)
    except typer.Abort:
        sys.exit(130)
    sys.exit(status if isinstance(status, int) else 0)
