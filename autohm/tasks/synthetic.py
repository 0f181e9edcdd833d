"""Synthetic tasks from the Mamba and Zoology papers, as sequence classification, generated from
the seed. In every task the answer is a data token and data tokens come first in the vocabulary
(ids 0..num_labels - 1), so the label is the id of the answer token; special tokens follow them.

- selective-copy: num_tokens data tokens scattered among blank tokens, then a marker at the end;
  the label is the data token number `position` (0 = the first) in order of appearance.
- induction: random data tokens with one trigger token somewhere, the trigger again at the end;
  the label is the token that followed the first trigger (induction heads).
- mqar: num_pairs key-value pairs (distinct keys), blanks, then one query key at the end; the
  label is the value paired with it (single-query associative recall).

Each split comes from its own random stream (seed, split index), and a sequence drawn before,
in any split, is replaced by a fresh draw: no sequence appears twice in a task, so the splits
never share one.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from autohm.tasks.base import SPLITS, Task, TaskError, make_split, require

Draw = Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]
MAX_ROUNDS = 20  # redraws allowed per split before giving up on finding distinct sequences


def _distinct_splits(
    name: str, draw: Draw, seed: int, sizes: tuple[int, ...]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(ids, labels) of each split, drawn from stream (seed, split index), without repeats."""
    seen: set[bytes] = set()
    splits = []
    for index, (split, size) in enumerate(zip(SPLITS, sizes, strict=True)):
        rng = np.random.default_rng([seed, index])
        rows, labels = [], []
        for _ in range(MAX_ROUNDS):
            if len(rows) == size:
                break
            for row, label in zip(*draw(rng, size - len(rows)), strict=True):
                key = row.tobytes()
                if key not in seen:
                    seen.add(key)
                    rows.append(row)
                    labels.append(label)
        if len(rows) < size:
            raise TaskError(
                f"task {name}: found only {len(rows)} distinct sequences for the {split} split "
                f"(num_{split}={size}); ask for fewer samples, longer sequences or more symbols"
            )
        splits.append((np.stack(rows), np.array(labels)))
    return splits


def _build(
    name: str,
    seed: int,
    draw: Draw,
    sizes: dict[str, int],
    vocab_size: int,
    num_labels: int,
    seq_len: int,
) -> Task:
    """Check the split sizes, draw the splits and wrap them in a Task."""
    for option, size in sizes.items():
        require(size >= 1, name, option, size, "must be at least 1")
    splits = _distinct_splits(name, draw, seed, tuple(sizes.values()))
    train, validation, test = (make_split(ids, labels) for ids, labels in splits)
    return Task(
        name=name,
        vocab_size=vocab_size,
        num_labels=num_labels,
        seq_len=seq_len,
        train=train,
        validation=validation,
        test=test,
        label_names=tuple(str(label) for label in range(num_labels)),
        seed=seed,
    )


def _scatter_positions(rng: np.random.Generator, n: int, span: int, count: int) -> np.ndarray:
    """(n, count) distinct positions in range(span) per row, sorted within each row."""
    return np.sort(np.argsort(rng.random((n, span)), axis=1)[:, :count], axis=1)


def selective_copy(
    seed: int,
    *,
    seq_len: int = 64,
    num_tokens: int = 8,
    num_symbols: int = 10,
    position: int = 0,
    num_train: int = 2000,
    num_validation: int = 500,
    num_test: int = 500,
) -> Task:
    """Selective copying as classification: which data token is number `position`? Ids 0..
    num_symbols - 1 are data, num_symbols the blank, num_symbols + 1 the final marker."""
    name = "selective-copy"
    require(num_symbols >= 2, name, "num_symbols", num_symbols, "must be at least 2")
    require(seq_len >= 2, name, "seq_len", seq_len, "must be at least 2")
    require(1 <= num_tokens < seq_len, name, "num_tokens", num_tokens, "must be 1 to seq_len - 1")
    require(0 <= position < num_tokens, name, "position", position, "must be 0 to num_tokens - 1")
    blank, marker = num_symbols, num_symbols + 1

    def draw(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        ids = np.full((n, seq_len), blank, dtype=np.int64)
        ids[:, -1] = marker
        tokens = rng.integers(0, num_symbols, (n, num_tokens))
        rows = np.arange(n)[:, None]
        ids[rows, _scatter_positions(rng, n, seq_len - 1, num_tokens)] = tokens
        return ids, tokens[:, position]

    sizes = {"num_train": num_train, "num_validation": num_validation, "num_test": num_test}
    return _build(name, seed, draw, sizes, num_symbols + 2, num_symbols, seq_len)


def induction(
    seed: int,
    *,
    seq_len: int = 64,
    num_symbols: int = 16,
    num_train: int = 2000,
    num_validation: int = 500,
    num_test: int = 500,
) -> Task:
    """Induction heads as classification: what followed the trigger? Ids 0..num_symbols - 1 are
    data, num_symbols the trigger (once at a random place, once at the end)."""
    name = "induction"
    require(num_symbols >= 2, name, "num_symbols", num_symbols, "must be at least 2")
    require(seq_len >= 3, name, "seq_len", seq_len, "must be at least 3")
    trigger = num_symbols

    def draw(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        ids = rng.integers(0, num_symbols, (n, seq_len))
        at = rng.integers(0, seq_len - 2, n)
        rows = np.arange(n)
        ids[rows, at] = trigger
        ids[:, -1] = trigger
        return ids, ids[rows, at + 1]

    sizes = {"num_train": num_train, "num_validation": num_validation, "num_test": num_test}
    return _build(name, seed, draw, sizes, num_symbols + 1, num_symbols, seq_len)


def mqar(
    seed: int,
    *,
    seq_len: int = 64,
    num_pairs: int = 8,
    num_keys: int = 16,
    num_values: int = 16,
    num_train: int = 2000,
    num_validation: int = 500,
    num_test: int = 500,
) -> Task:
    """Associative recall as classification: which value goes with the query key? Ids 0..
    num_values - 1 are values, then num_keys keys, then the blank; pairs come first, key then
    value, blanks fill up to the query at the end."""
    name = "mqar"
    require(num_values >= 2, name, "num_values", num_values, "must be at least 2")
    require(num_keys >= 1, name, "num_keys", num_keys, "must be at least 1")
    require(1 <= num_pairs <= num_keys, name, "num_pairs", num_pairs, "must be 1 to num_keys")
    require(
        seq_len >= 2 * num_pairs + 1, name, "seq_len", seq_len, "must be at least 2 * num_pairs + 1"
    )
    blank = num_values + num_keys

    def draw(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        keys = num_values + np.argsort(rng.random((n, num_keys)), axis=1)[:, :num_pairs]
        values = rng.integers(0, num_values, (n, num_pairs))
        query = rng.integers(0, num_pairs, n)
        rows = np.arange(n)
        ids = np.full((n, seq_len), blank, dtype=np.int64)
        ids[:, 0 : 2 * num_pairs : 2] = keys
        ids[:, 1 : 2 * num_pairs : 2] = values
        ids[:, -1] = keys[rows, query]
        return ids, values[rows, query]

    sizes = {"num_train": num_train, "num_validation": num_validation, "num_test": num_test}
    return _build(name, seed, draw, sizes, num_values + num_keys + 1, num_values, seq_len)
