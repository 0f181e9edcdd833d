"""The `autohm` command line. User mistakes print one `error:` line and exit with status 2."""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from autohm import __version__
from autohm.errors import AutohmError

app = typer.Typer(
    help="Hardware-aware AutoML for Mamba models.", no_args_is_help=True, add_completion=False
)
console = Console(soft_wrap=True)


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
        from autohm.model import MambaLM

        lm = MambaLM.from_pretrained(model)
        config = lm.config
        table.add_row("model", model)
        for key, value in config.to_dict().items():
            table.add_row(f"  {key}", str(value))
        params = sum(p.numel() for p in lm.parameters())
        table.add_row("  parameters", f"{params:,}")
    console.print(table)


bench_app = typer.Typer(
    help="Benchmarks, side by side in one process: medians and speed ratios.",
    no_args_is_help=True,
)
app.add_typer(bench_app, name="bench")


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
    import torch

    from autohm.bench import scan
    from autohm.devices import default_device

    target = torch.device(device) if device else default_device()
    if target.type == "cuda" and not torch.cuda.is_available():
        raise AutohmError("--device cuda: no CUDA device is available")
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
        json_path.write_text(
            json.dumps({"environment": info, "rows": scan.as_dicts(rows)}, indent=2)
        )
        console.print(f"wrote {json_path}")


def main() -> None:
    """Entry point of the console script: run the app, turning AutohmError into one line."""
    try:
        app()
    except AutohmError as error:
        Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {error}", highlight=False)
        sys.exit(2)
