"""Classification tasks for fine-tuning Mamba sequence classifiers, each with fixed, seeded,
disjoint train / validation / test splits of (input_ids, padding_mask, labels).

Tasks: `digits` (the default; scikit-learn's 8x8 digits as 64 pixel tokens), the synthetic
`selective-copy`, `induction` and `mqar` (see autohm.tasks.synthetic), `text:PATH` (a .csv or
.jsonl file with text and label columns, optionally a split column) and `hf:NAME` (a Hugging
Face dataset; needs the datasets package).

A task spec is NAME or NAME?KEY=VALUE,KEY=VALUE: everything before the first `?` is the name
(so a path may hold `:` but not `?`), options are comma-separated and a value cannot hold a
comma. Integer options take integer text. Examples:

    load_task("digits", seed=1)
    load_task("mqar?seq_len=32,num_pairs=4")
    load_task("text:reviews.csv?text_column=review,max_length=64")
    load_task("induction", num_symbols=8)            # options as keyword arguments, too

An unknown name, option, file or column, or a bad value, raises TaskError naming it.
"""

from autohm.tasks.base import SPLITS, Task, TaskError
from autohm.tasks.registry import SOURCES, TASKS, load_task, parse_task_spec
from autohm.tasks.splits import stratified_split

__all__ = [
    "SOURCES",
    "SPLITS",
    "TASKS",
    "Task",
    "TaskError",
    "load_task",
    "parse_task_spec",
    "stratified_split",
]
