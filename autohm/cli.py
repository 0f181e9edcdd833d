"""The `autohm` command line. User mistakes print one `error:` line and exit with status 2."""

from __future__ import annotations

import platform
import sys

import typer
from rich.console import Console
from rich.table import Table

from autohm import __version__
from autohm.errors import AutohmError

app = typer.Typer(
    help="Hardware-aware AutoML for Mamba models.", no_args_is_help=True, add_completion=False
)
console = Console()


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


def main() -> None:
    """Entry point of the console script: run the app, turning AutohmError into one line."""
    try:
        app()
    except AutohmError as error:
        Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {error}", highlight=False)
        sys.exit(2)
