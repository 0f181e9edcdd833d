"""Writing outputs safely. Every file autohm writes goes to a temporary file beside it and is
renamed into place, so that a failure (a full disk, Ctrl-C, a bug) never leaves a truncated
file behind, and an output path is checked before any work: a directory where a file is asked
for, a file where a directory is asked for, a place that cannot be written, or a study's own
storage and artefacts are refused with one clear error."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

from autohm.errors import AutohmError


def _writable_directory(directory: Path, what: str) -> None:
    """An AutohmError unless `directory` is, or can be created as, a writable directory
    (nothing is created here: a command that fails later leaves no trace)."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise AutohmError(f"{what} {directory}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise AutohmError(f"{what} {directory}: {existing} is not writable")


def check_output_dir(directory: str | Path, what: str = "--out") -> Path:
    """A directory outputs can be written to (existing or not yet created)."""
    directory = Path(directory).expanduser()
    _writable_directory(directory, what)
    return directory


def check_output_file(
    path: str | Path, protected: Iterable[Path] = (), what: str = "--out"
) -> Path:
    """A file path that can be written: not a directory, its directory writable (or creatable),
    and neither one of the `protected` files nor inside a protected directory."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise AutohmError(f"{what} {path} is a directory; give a file name")
    resolved = path.resolve()
    for guarded in protected:
        guarded = Path(guarded).resolve()
        if resolved == guarded or guarded in resolved.parents:
            raise AutohmError(f"{what} {path} would overwrite the study's own {guarded.name}")
    if _is_database(path):
        raise AutohmError(f"{what} {path} is a database (a study's storage?): not overwritten")
    _writable_directory(path.parent, f"{what} {path}: the directory")
    return path


def _is_database(path: Path) -> bool:
    """Whether `path` is an existing SQLite file, which no output may replace."""
    try:
        with path.open("rb") as handle:
            return handle.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def write_atomically(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call write(temporary) on a temporary file beside `path`, then rename it to `path` (its
    directory is created when missing). A write the system refuses (disk full, a file system
    that takes no files) is an AutohmError naming the path; `path` is left as it was."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.part")  # usual permissions
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(temporary)
        os.replace(temporary, path)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise AutohmError(f"cannot write {path}: {error.strerror or error}") from None
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    """`text` written to `path` through a temporary file."""
    return write_atomically(path, lambda temporary: temporary.write_text(text))


def write_tensors(path: str | Path, tensors: dict, metadata: dict[str, str] | None = None) -> Path:
    """A safetensors file of `tensors` (metadata: format "pt" and `metadata`) written through a
    temporary file."""
    from safetensors.torch import save_file

    header = {"format": "pt", **(metadata or {})}
    return write_atomically(path, lambda temporary: save_file(tensors, str(temporary), header))
