"""Tasks: seeded, disjoint splits; shapes, dtypes and id ranges; synthetic labels that follow
their generation rule (recomputed here from each sequence); text files in CSV and JSONL; and a
TaskError naming the culprit for every user mistake."""

import json
import re
import sys

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from autohm.errors import AutohmError
from autohm.tasks import (
    SPLITS,
    TASKS,
    Task,
    TaskError,
    load_task,
    parse_task_spec,
    stratified_split,
)

SMALL = "num_train=300,num_validation=100,num_test=100"


def same_tensors(first: Task, second: Task) -> bool:
    """Whether two tasks hold identical tensors in every split."""
    return all(
        torch.equal(a, b)
        for split in SPLITS
        for a, b in zip(first.split(split).tensors, second.split(split).tensors, strict=True)
    )


def check_layout(task: Task) -> None:
    """Shapes, dtypes and ranges every task promises."""
    for split in SPLITS:
        ids, mask, labels = task.split(split).tensors
        assert ids.dtype == mask.dtype == labels.dtype == torch.long
        assert ids.shape == mask.shape == (len(labels), task.seq_len)
        assert len(labels) > 0
        assert ids.min() >= 0 and ids.max() < task.vocab_size
        assert labels.min() >= 0 and labels.max() < task.num_labels
        assert set(mask.unique().tolist()) <= {0, 1}
        assert bool((mask[:, 1:] <= mask[:, :-1]).all())  # padding only on the right
        if task.pad_id is None:
            assert bool(mask.all())
        else:
            assert bool((ids[mask == 0] == task.pad_id).all())
    assert len(task.label_names) == task.num_labels


def sequences(task: Task, split: str) -> set[bytes]:
    return {row.numpy().tobytes() for row in task.split(split).tensors[0]}


# ---- digits ----------------------------------------------------------------------------------


def test_digits_is_the_default_and_a_partition_of_the_data_set():
    task = load_task()
    assert task.name == "digits" and task.vocab_size == 17 and task.num_labels == 10
    assert task.seq_len == 64 and task.pad_id is None
    check_layout(task)
    data = load_digits()
    sizes = [len(task.split(split)) for split in SPLITS]
    assert sum(sizes) == len(data.target) == 1797
    assert abs(sizes[0] / 1797 - 0.70) < 0.01 and abs(sizes[1] / 1797 - 0.15) < 0.01
    # the three splits together hold every (image, label) exactly as often as the data set does
    splits = [task.split(split).tensors for split in SPLITS]
    rows = torch.cat([torch.cat([ids, labels[:, None]], 1) for ids, _, labels in splits])
    full = torch.cat([torch.as_tensor(data.data).long(), torch.as_tensor(data.target)[:, None]], 1)
    assert sorted(map(tuple, rows.tolist())) == sorted(map(tuple, full.tolist()))
    for split in SPLITS:  # stratified: every class in every split, near its share
        counts = torch.bincount(task.split(split).tensors[2], minlength=10)
        share = counts / counts.sum()
        assert bool((counts > 0).all()) and float((share - 0.1).abs().max()) < 0.03


def test_digits_splits_follow_the_seed():
    first, again, other = (load_task("digits", seed=seed) for seed in (3, 3, 4))
    assert same_tensors(first, again)
    assert not torch.equal(first.test.tensors[0], other.test.tensors[0])
    assert first.describe()["seed"] == 3 and first.describe()["test_size"] == len(first.test)


@pytest.mark.parametrize("seed", range(5))
def test_stratified_split_keeps_class_shares_in_every_split(seed):
    labels = np.array([0] * 20 + [1] * 180 + [2] * 2)
    parts = stratified_split(labels, (8, 1, 1), seed)
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(len(labels)))
    counts = [np.bincount(labels[index], minlength=3).tolist() for index in parts]
    assert counts[1][:2] == counts[2][:2] == [2, 18]
    assert counts[0][:2] == [16, 144] and sum(count[2] for count in counts) == 2
    assert not np.array_equal(parts[1], stratified_split(labels, (8, 1, 1), seed + 1)[1])


@pytest.mark.parametrize("weights", [(14, 3, 3), (8, 1, 1)])
def test_stratified_split_sizes_stay_within_one_of_the_weights(weights):
    for n in range(1, 61):
        parts = stratified_split(np.zeros(n, dtype=np.int64), weights, seed=n)
        for part, weight in zip(parts, weights, strict=True):
            assert abs(len(part) - n * weight / sum(weights)) < 1, (n, weights)


# ---- synthetic tasks -------------------------------------------------------------------------


def selective_copy_answer(row: list[int], options: dict) -> int:
    """The data token number `position`, read off the sequence."""
    symbols = options["num_symbols"]
    assert row[-1] == symbols + 1  # the marker ends the sequence
    data = [token for token in row[:-1] if token != symbols]
    assert len(data) == options["num_tokens"] and all(token < symbols for token in data)
    return data[options["position"]]


def induction_answer(row: list[int], options: dict) -> int:
    """The token after the first trigger; the trigger occurs exactly twice, last at the end."""
    trigger = options["num_symbols"]
    at = [i for i, token in enumerate(row) if token == trigger]
    assert len(at) == 2 and at[1] == len(row) - 1
    return row[at[0] + 1]


def mqar_answer(row: list[int], options: dict) -> int:
    """The value stored after the query key; keys distinct, blanks between pairs and query."""
    values, pairs = options["num_values"], options["num_pairs"]
    keys, stored = row[0 : 2 * pairs : 2], row[1 : 2 * pairs : 2]
    assert len(set(keys)) == pairs and all(
        values <= key < values + options["num_keys"] for key in keys
    )
    assert all(value < values for value in stored)
    assert set(row[2 * pairs : -1]) <= {values + options["num_keys"]}
    return dict(zip(keys, stored, strict=True))[row[-1]]


ANSWERS = {
    "selective-copy": selective_copy_answer,
    "induction": induction_answer,
    "mqar": mqar_answer,
}


@pytest.mark.parametrize(
    "spec",
    [
        f"selective-copy?{SMALL}",
        f"selective-copy?seq_len=24,num_tokens=5,num_symbols=4,position=3,{SMALL}",
        f"induction?{SMALL}",
        f"induction?seq_len=12,num_symbols=5,{SMALL}",
        f"mqar?{SMALL}",
        f"mqar?seq_len=32,num_pairs=4,num_keys=6,num_values=5,{SMALL}",
    ],
)
def test_synthetic_labels_follow_the_generation_rule(spec):
    task = load_task(spec, seed=1)
    check_layout(task)
    answer = ANSWERS[task.name]
    for split in SPLITS:
        ids, _, labels = task.split(split).tensors
        assert [answer(row, task.options) for row in ids.tolist()] == labels.tolist()
    # every class occurs: a constant or skewed label would make the check above too easy
    assert set(task.train.tensors[2].tolist()) == set(range(task.num_labels))
    assert task.seq_len == task.options["seq_len"] == task.train.tensors[0].shape[1]


@pytest.mark.parametrize("name", ["selective-copy", "induction", "mqar"])
def test_synthetic_splits_are_seeded_and_disjoint(name):
    first, again = load_task(f"{name}?{SMALL}", seed=5), load_task(f"{name}?{SMALL}", seed=5)
    other = load_task(f"{name}?{SMALL}", seed=6)
    assert same_tensors(first, again)
    assert not torch.equal(first.train.tensors[0], other.train.tensors[0])
    seen = [sequences(first, split) for split in SPLITS]
    assert [len(s) for s in seen] == [300, 100, 100]  # no repeats within a split either
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    assert torch.equal(first.unlabeled_sequences("validation"), first.validation.tensors[0])


@pytest.mark.parametrize("seed", range(8))
def test_synthetic_sequences_are_redrawn_when_already_taken(seed):
    # only three sequences exist ([trigger, v, trigger], v in 0..2): each split must get its own
    task = load_task(
        "induction?seq_len=3,num_symbols=3,num_train=1,num_validation=1,num_test=1", seed=seed
    )
    rows = {tuple(task.split(split).tensors[0][0].tolist()) for split in SPLITS}
    assert rows == {(3, 0, 3), (3, 1, 3), (3, 2, 3)}


def test_synthetic_task_that_cannot_have_enough_distinct_sequences():
    with pytest.raises(TaskError, match="induction.*only 0 distinct sequences for the test split"):
        load_task("induction?seq_len=3,num_symbols=2,num_train=1,num_validation=1,num_test=1")


def test_spec_options_are_typed_and_defaults_filled_in():
    name, options = parse_task_spec("mqar?seq_len=32, num_pairs=4")
    assert name == "mqar"
    assert options["seq_len"] == 32 and options["num_pairs"] == 4 and options["num_keys"] == 16
    assert (
        load_task("mqar", num_pairs="3", num_train=10, num_validation=5, num_test=5).options[
            "num_pairs"
        ]
        == 3
    )
    assert set(TASKS) == {"digits", "selective-copy", "induction", "mqar"}


# ---- text files ------------------------------------------------------------------------------


def write_csv(path, rows, header=("text", "label")):
    lines = [",".join(header)] + [",".join(str(value) for value in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def review_rows(n=30):
    moods = ["pos", "neg", "neutral"]
    return [(f"review {i} was {moods[i % 3]}", moods[i % 3]) for i in range(n)]


def decode(task: Task, split: str) -> list[str]:
    ids, mask, _ = task.split(split).tensors
    return [bytes(row[m.bool()].tolist()).decode() for row, m in zip(ids, mask, strict=True)]


def test_csv_file_with_string_labels(tmp_path):
    path = write_csv(tmp_path / "reviews.csv", review_rows())
    task = load_task(f"text:{path}", seed=2, max_length=20)
    check_layout(task)
    assert task.vocab_size == 257 and task.pad_id == 256 and task.seq_len == 20
    assert task.label_names == ("neg", "neutral", "pos")
    assert [len(task.split(split)) for split in SPLITS] == [24, 3, 3]
    label_of = {text[:20]: label for text, label in review_rows()}  # truncated to 20 bytes
    seen = []
    for split in SPLITS:
        labels = task.split(split).tensors[2].tolist()
        for text, label in zip(decode(task, split), labels, strict=True):
            assert task.label_names[label] == label_of[text]
            seen.append(text)
    assert sorted(seen) == sorted(label_of)  # every row in exactly one split
    padded = load_task(f"text:{path}", seed=2)
    check_layout(padded)
    assert sorted(text for split in SPLITS for text in decode(padded, split)) == sorted(
        text for text, _ in review_rows()
    )
    assert padded.train.tensors[0][0, -1] == 256  # short texts are padded up to 128
    assert same_tensors(padded, load_task(f"text:{path}", seed=2))
    other = load_task(f"text:{path}", seed=3)
    assert not torch.equal(padded.test.tensors[0], other.test.tensors[0])


def test_jsonl_file_with_int_labels_and_split_column(tmp_path):
    records = [
        {"body": f"héllo {i}", "stars": [1, 2, 10][i % 3], "split": SPLITS[i % 3]}
        for i in range(12)
    ]
    path = write_jsonl(tmp_path / "stars.jsonl", records)
    task = load_task(f"text:{path}?text_column=body,label_column=stars")
    check_layout(task)
    assert task.label_names == ("1", "2", "10")  # numeric order, not "1", "10", "2"
    for split in SPLITS:
        expected = [r for r in records if r["split"] == split]
        assert decode(task, split) == [r["body"] for r in expected]
        assert task.split(split).tensors[2].tolist() == [
            [1, 2, 10].index(r["stars"]) for r in expected
        ]
    # the split column wins over the seed
    assert torch.equal(
        task.test.tensors[0],
        load_task(f"text:{path}?text_column=body,label_column=stars", seed=9).test.tensors[0],
    )
    assert task.describe()["options"]["text_column"] == "body"


def test_local_tokenizer_directory(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    vocab = {"[PAD]": 0, "[UNK]": 1, "good": 2, "bad": 3, "film": 4}
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]"
    ).save_pretrained(tmp_path / "tok")
    rows = [("good film", "a"), ("bad film really", "b")] * 10
    path = write_csv(tmp_path / "films.csv", rows)
    task = load_task(f"text:{path}", tokenizer=str(tmp_path / "tok"), max_length=3)
    check_layout(task)
    assert task.vocab_size == 5 and task.pad_id == 0
    expected = {"a": [2, 4, 0], "b": [3, 4, 1]}
    for split in SPLITS:
        ids, mask, labels = task.split(split).tensors
        for row, m, label in zip(ids.tolist(), mask.tolist(), labels.tolist(), strict=True):
            assert row == expected[task.label_names[label]]
            assert m == ([1, 1, 0] if row[-1] == 0 else [1, 1, 1])


# ---- errors ----------------------------------------------------------------------------------


def raises(pattern: str):
    return pytest.raises(TaskError, match=pattern)


def test_task_error_is_an_autohm_error():
    assert issubclass(TaskError, AutohmError)


def test_unknown_task_lists_the_available_ones():
    with raises(r"unknown task 'mnist'; available: digits, selective-copy, induction, mqar, text:"):
        load_task("mnist")
    with raises("names nothing after text:"):
        load_task("text:")


@pytest.mark.parametrize(
    ("spec", "kwargs", "pattern"),
    [
        (
            "mqar?num_pair=4",
            {},
            r"mqar: unknown option 'num_pair'; valid options: seq_len, num_pairs",
        ),
        ("digits?seq_len=3", {}, r"digits: unknown option 'seq_len'; valid options: none"),
        ("mqar?seq_len=big", {}, r"option seq_len='big' must be an integer"),
        ("mqar", {"seq_len": 3.5}, r"option seq_len=3.5 must be an integer"),
        ("mqar?seq_len", {}, r"option 'seq_len' is not KEY=VALUE"),
        ("mqar?seq_len=3,seq_len=4", {}, r"option 'seq_len' is given twice"),
        ("mqar?seq_len=40", {"seq_len": 40}, r"option 'seq_len' is also a keyword argument"),
        ("mqar?num_pairs=20", {}, r"mqar: option num_pairs=20 is invalid: must be 1 to num_keys"),
        ("mqar?seq_len=16", {}, r"option seq_len=16 is invalid: must be at least 2 \* num_pairs"),
        ("selective-copy?position=8", {}, r"option position=8 is invalid"),
        ("selective-copy?num_tokens=64", {}, r"option num_tokens=64 is invalid"),
        ("induction?num_symbols=1", {}, r"option num_symbols=1 is invalid"),
        ("induction?num_test=0", {}, r"option num_test=0 is invalid"),
        ("induction", {"text_column": "x"}, r"induction: unknown option 'text_column'"),
    ],
)
def test_bad_options_name_the_option(spec, kwargs, pattern):
    with raises(pattern):
        load_task(spec, **kwargs)


@pytest.mark.parametrize("seed", [-1, 1.0, "0", True])
def test_bad_seed(seed):
    with raises("seed must be a non-negative integer"):
        load_task("digits", seed=seed)


def test_missing_file_and_unknown_extension(tmp_path):
    missing = tmp_path / "nope.csv"
    with raises(f"task file {re.escape(repr(str(missing)))} does not exist"):
        load_task(f"text:{missing}")
    other = tmp_path / "data.tsv"
    other.write_text("text\tlabel\n")
    with raises(r"data.tsv'.*unknown extension '.tsv'; use .csv, .jsonl"):
        load_task(f"text:{other}")


@pytest.mark.parametrize(
    ("name", "content", "options", "pattern"),
    [
        ("empty.csv", "", {}, r"empty.csv' has no data rows"),
        ("header.csv", "text,label\n", {}, r"header.csv' has no data rows"),
        ("blank.jsonl", "\n\n", {}, r"blank.jsonl' has no data rows"),
        (
            "cols.csv",
            "review,label\na,b\n",
            {},
            r"cols.csv' has no column 'text'; its columns: review, label",
        ),
        ("cols.csv", "text,label\na,b\n", {"label_column": "y"}, r"cols.csv' has no column 'y'"),
        (
            "gap.csv",
            "text,label\na,x\n,y\n",
            {},
            r"gap.csv': data row 2 has no value in column 'text'",
        ),
        ("short.csv", "text,label\na,x\nb\n", {}, r"data row 2 has no value in column 'label'"),
        (
            "one.csv",
            "text,label\n" + "a,x\n" * 20,
            {},
            r"one.csv': column 'label' holds a single label \('x'\)",
        ),
        (
            "tag.csv",
            "text,label,split\na,x,train\nb,y,dev\n",
            {},
            r"data row 2 has split='dev'; use train, validation, test",
        ),
        (
            "tags.csv",
            "text,label,split\na,x,train\nb,y,test\n",
            {},
            r"tags.csv': no rows for the validation split",
        ),
        (
            "few.csv",
            "text,label\na,x\nb,y\nc,x\n",
            {},
            r"few.csv': no rows for the validation split \(3 rows in all\)",
        ),
        (
            "bad.jsonl",
            '{"text": "a", "label": 1}\n{"text": \n',
            {},
            r"bad.jsonl' cannot be read: line 2 is not JSON",
        ),
        (
            "list.jsonl",
            '["a", 1]\n',
            {},
            r"list.jsonl' cannot be read: line 1 is not a JSON object",
        ),
        (
            "num.jsonl",
            '{"text": 5, "label": 1}\n',
            {},
            r"data row 1 holds 5 in column 'text'; expected str",
        ),
        (
            "flt.jsonl",
            '{"text": "a", "label": 1.5}\n',
            {},
            r"holds 1.5 in column 'label'; expected str or int",
        ),
        ("ok.csv", "text,label\na,x\nb,y\n", {"max_length": 0}, r"option max_length=0 is invalid"),
    ],
)
def test_bad_files_name_the_file_and_column(tmp_path, name, content, options, pattern):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with raises(pattern):
        load_task(f"text:{path}", **options)


def test_non_utf8_file(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("text,label\ncaf\xe9,x\n".encode("latin-1"))
    with raises(r"latin.csv' cannot be read: 'utf-8' codec"):
        load_task(f"text:{path}")


def test_bad_tokenizer_directory(tmp_path):
    path = write_csv(tmp_path / "r.csv", review_rows())
    with raises(r"option tokenizer='.*nowhere': no such directory"):
        load_task(f"text:{path}", tokenizer=str(tmp_path / "nowhere"))
    pytest.importorskip("transformers")
    (tmp_path / "empty").mkdir()
    with raises(r"option tokenizer='.*empty': not a tokenizer"):
        load_task(f"text:{path}", tokenizer=str(tmp_path / "empty"))


def test_hub_dataset_without_the_datasets_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` now fails
    with raises(r"Hugging Face dataset 'imdb' needs the datasets package"):
        load_task("hf:imdb")


def test_unknown_split_name():
    task = load_task("induction?num_train=10,num_validation=5,num_test=5")
    with raises("unknown split 'valid'"):
        task.unlabeled_sequences("valid")
    assert np.array_equal(task.unlabeled_sequences().numpy(), task.train.tensors[0].numpy())
