"""Where autohm keeps what it can rebuild: `$AUTOHM_CACHE`, default `~/.cache/autohm`. It holds
the base models pretrained on first use and numba's compiled kernels.

The kernels are cached here rather than numba's default, a `__pycache__` beside the installed
source: pip does not remove files it did not install, so after `pip install .` and a run, a later
`pip install -e .` would leave an `autohm/` directory of cache files in site-packages that Python
imports as a namespace package in place of the editable one; and a read-only install could not
cache at all."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numba


def cache_dir() -> Path:
    """`$AUTOHM_CACHE`, default `~/.cache/autohm`."""
    return Path(os.environ.get("AUTOHM_CACHE", Path.home() / ".cache" / "autohm"))


def cached_njit(**options: Any) -> Callable[[Callable], Callable]:
    """`numba.njit(cache=True, **options)` whose cache lives under `cache_dir()/numba`, or under
    `NUMBA_CACHE_DIR` when the user set it. numba picks a function's cache place when it is
    decorated, so numba's setting is changed only for that moment."""

    def decorate(function: Callable) -> Callable:
        chosen = numba.config.CACHE_DIR
        numba.config.CACHE_DIR = chosen or str(cache_dir() / "numba")
        try:
            return numba.njit(cache=True, **options)(function)
        finally:
            numba.config.CACHE_DIR = chosen

    return decorate
