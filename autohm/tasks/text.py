"""The user's own text classification data: a CSV or JSONL file (text:PATH) or a Hugging Face
dataset (hf:NAME, needs the datasets package). Texts become UTF-8 bytes (ids 0..255, pad id
256, vocab 257) or, with tokenizer=DIR, the ids of a local transformers tokenizer; either way
truncated to max_length and right-padded to it. Labels (text or integers) become 0..K-1 in
sorted order: integer labels numerically first, then the others alphabetically."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from autohm.tasks.base import SPLITS, Task, TaskError, make_split, require
from autohm.tasks.splits import stratified_split

BYTE_PAD = 256
WEIGHTS = (8, 1, 1)  # 80 / 10 / 10 per cent, used when there is no split column
SPLIT_COLUMN = "split"  # optional column of train / validation / test

Rows = list[dict[str, object]]


def _columns(rows: Rows) -> list[str]:
    """Every key of the rows, in order of first appearance."""
    return list(dict.fromkeys(key for row in rows for key in row))


def _read_csv(path: Path) -> tuple[list[str], Rows]:
    """Column names (from the header) and rows of a CSV file."""
    with path.open(newline="", encoding="utf-8-sig") as file:
        reader = csv.DictReader(file)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def _read_jsonl(path: Path) -> tuple[list[str], Rows]:
    """Column names and rows of a JSON Lines file (one object per line; blank lines skipped);
    ValueError names the first line that is not a JSON object."""
    rows = []
    with path.open(encoding="utf-8") as file:
        for number, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"line {number} is not JSON ({error.msg})") from error
            if not isinstance(row, dict):
                raise ValueError(f"line {number} is not a JSON object")
            rows.append(row)
    return _columns(rows), rows


READERS: dict[str, Callable[[Path], tuple[list[str], Rows]]] = {
    ".csv": _read_csv,
    ".jsonl": _read_jsonl,
}


def _column(
    source: str, columns: list[str], rows: Rows, column: str, kinds: tuple[type, ...]
) -> list[object]:
    """The values of `column`, each present, non-empty and of one of `kinds`."""
    if column not in columns:
        raise TaskError(f"{source} has no column {column!r}; its columns: {', '.join(columns)}")
    values = [row.get(column) for row in rows]
    for number, value in enumerate(values, 1):
        if value is None or value == "":
            raise TaskError(f"{source}: data row {number} has no value in column {column!r}")
        if type(value) not in kinds:
            raise TaskError(
                f"{source}: data row {number} holds {value!r} in column {column!r}; "
                f"expected {' or '.join(kind.__name__ for kind in kinds)}"
            )
    return values


def _label_order(name: str) -> tuple[int, int, str]:
    """Sort key of a label name: integers first, numerically, then the rest alphabetically."""
    try:
        return (0, int(name), name)
    except ValueError:
        return (1, 0, name)


def _label_ids(
    source: str, column: str, values: list[object]
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Labels as ids 0..K-1 in sorted order, and the K label names."""
    names = [str(value) for value in values]
    label_names = tuple(sorted(set(names), key=_label_order))
    if len(label_names) < 2:
        raise TaskError(
            f"{source}: column {column!r} holds a single label ({label_names[0]!r}); "
            "classification needs at least 2"
        )
    ids = {name: k for k, name in enumerate(label_names)}
    return np.array([ids[name] for name in names], dtype=np.int64), label_names


def _split_indices(
    source: str, columns: list[str], rows: Rows, labels: np.ndarray, seed: int
) -> tuple[np.ndarray, ...]:
    """Row indices of train, validation and test: from the split column when there is one,
    otherwise a seeded stratified 80/10/10 split; each must be non-empty."""
    if SPLIT_COLUMN in columns:
        tags = _column(source, columns, rows, SPLIT_COLUMN, (str,))
        for number, tag in enumerate(tags, 1):
            if tag not in SPLITS:
                raise TaskError(
                    f"{source}: data row {number} has {SPLIT_COLUMN}={tag!r}; "
                    f"use {', '.join(SPLITS)}"
                )
        splits = tuple(np.flatnonzero(np.array(tags) == split) for split in SPLITS)
    else:
        splits = stratified_split(labels, WEIGHTS, seed)
    for split, index in zip(SPLITS, splits, strict=True):
        if len(index) == 0:
            raise TaskError(f"{source}: no rows for the {split} split ({len(rows)} rows in all)")
    return splits


def _load_tokenizer(directory: str):
    """A transformers tokenizer from a local directory, without any download."""
    if not Path(directory).is_dir():
        raise TaskError(f"option tokenizer={directory!r}: no such directory")
    try:
        from transformers import AutoTokenizer  # optional: only this option needs it
    except ImportError as error:
        raise TaskError(
            f"option tokenizer={directory!r} needs the transformers package "
            "(pip install transformers)"
        ) from error
    try:
        return AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError) as error:
        reason = " ".join(str(error).split())  # one line: the command line prints one
        raise TaskError(f"option tokenizer={directory!r}: not a tokenizer ({reason})") from error


def _encode(
    texts: list[str], max_length: int, tokenizer: str | None
) -> tuple[list[list[int]], int, int]:
    """Ids of each text (at most max_length of them), the vocabulary size and the pad id."""
    if tokenizer is None:
        return [list(text.encode("utf-8")[:max_length]) for text in texts], BYTE_PAD + 1, BYTE_PAD
    loaded = _load_tokenizer(tokenizer)
    ids = loaded(texts, truncation=True, max_length=max_length)["input_ids"]
    pad = next((i for i in (loaded.pad_token_id, loaded.eos_token_id) if i is not None), 0)
    return ids, len(loaded), pad


def _pad(sequences: list[list[int]], length: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids (n, length) and their padding mask (1 = token, 0 = padding)."""
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
        mask[row, : len(sequence)] = 1
    return ids, mask


def _records_task(
    name: str,
    source: str,
    columns: list[str],
    rows: Rows,
    seed: int,
    text_column: str,
    label_column: str,
    max_length: int,
    tokenizer: str | None,
) -> Task:
    """A Task from rows of text, label and (optionally) split."""
    require(max_length >= 1, name, "max_length", max_length, "must be at least 1")
    if not rows:
        raise TaskError(f"{source} has no data rows")
    texts = _column(source, columns, rows, text_column, (str,))
    label_values = _column(source, columns, rows, label_column, (str, int))
    labels, label_names = _label_ids(source, label_column, label_values)
    splits = _split_indices(source, columns, rows, labels, seed)
    sequences, vocab_size, pad_id = _encode(texts, max_length, tokenizer)
    ids, mask = _pad(sequences, max_length, pad_id)
    train, validation, test = (
        make_split(ids[index], labels[index], mask[index]) for index in map(torch.as_tensor, splits)
    )
    return Task(
        name=name,
        vocab_size=vocab_size,
        num_labels=len(label_names),
        seq_len=max_length,
        train=train,
        validation=validation,
        test=test,
        label_names=label_names,
        seed=seed,
        pad_id=pad_id,
    )


def text_file(
    path: str,
    seed: int,
    *,
    text_column: str = "text",
    label_column: str = "label",
    max_length: int = 128,
    tokenizer: str | None = None,
) -> Task:
    """The task text:PATH, from a .csv or .jsonl file of text and label columns."""
    source = f"task file {path!r}"
    file = Path(path)
    if not file.is_file():
        raise TaskError(f"{source} does not exist or is not a file")
    reader = READERS.get(file.suffix.lower())
    if reader is None:
        raise TaskError(f"{source}: unknown extension {file.suffix!r}; use {', '.join(READERS)}")
    try:
        columns, rows = reader(file)
    except (ValueError, csv.Error) as error:  # ValueError includes UnicodeDecodeError
        raise TaskError(f"{source} cannot be read: {error}") from error
    return _records_task(
        f"text:{path}",
        source,
        columns,
        rows,
        seed,
        text_column,
        label_column,
        max_length,
        tokenizer,
    )


def hf_dataset(
    dataset: str,
    seed: int,
    *,
    text_column: str = "text",
    label_column: str = "label",
    max_length: int = 128,
    tokenizer: str | None = None,
) -> Task:
    """The task hf:NAME, a Hugging Face dataset: its own train / validation / test splits when it
    has all three, otherwise the ones it has pooled and split 80/10/10."""
    source = f"Hugging Face dataset {dataset!r}"
    try:
        import datasets  # optional: only hf:NAME needs it
    except ImportError as error:
        raise TaskError(f"{source} needs the datasets package (pip install datasets)") from error
    try:
        loaded = datasets.load_dataset(dataset)
    except Exception as error:  # unknown name, no network, bad configuration: all the user's to fix
        raise TaskError(f"{source} cannot be loaded: {error}") from error
    present = [split for split in SPLITS if split in loaded]
    tagged = len(present) == len(SPLITS)
    rows = [
        {**row, SPLIT_COLUMN: split} if tagged else dict(row)
        for split in present
        for row in loaded[split]
    ]
    return _records_task(
        f"hf:{dataset}",
        source,
        _columns(rows),
        rows,
        seed,
        text_column,
        label_column,
        max_length,
        tokenizer,
    )
