"""Task names and specs: the built-in tasks, the file and Hub sources, and the one spec string
the command line passes, NAME?KEY=VALUE,KEY=VALUE, turned into a Task."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import partial

from autohm.tasks.base import Task, TaskError
from autohm.tasks.digits import digits
from autohm.tasks.synthetic import induction, mqar, selective_copy
from autohm.tasks.text import hf_dataset, text_file

TASKS: dict[str, Callable[..., Task]] = {
    "digits": digits,
    "selective-copy": selective_copy,
    "induction": induction,
    "mqar": mqar,
}
SOURCES: dict[str, Callable[..., Task]] = {"text": text_file, "hf": hf_dataset}  # PREFIX:ARG


def _builder(name: str) -> Callable[..., Task]:
    """The function that builds task `name`: a built-in, or a source with its argument bound."""
    prefix, colon, argument = name.partition(":")
    if colon and prefix in SOURCES:
        if not argument:
            raise TaskError(f"task {name!r} names nothing after {prefix}:")
        return partial(SOURCES[prefix], argument)
    if name not in TASKS:
        known = ", ".join([*TASKS, *(f"{prefix}:..." for prefix in SOURCES)])
        raise TaskError(f"unknown task {name!r}; available: {known}")
    return TASKS[name]


def _split_spec(spec: str) -> tuple[str, dict[str, str]]:
    """NAME?KEY=VALUE,... as the name and the options, values still text."""
    name, _, tail = spec.partition("?")
    options: dict[str, str] = {}
    for item in filter(None, tail.split(",")):
        key, equals, value = item.partition("=")
        key = key.strip()
        if not (equals and key):
            raise TaskError(f"task spec {spec!r}: option {item!r} is not KEY=VALUE")
        if key in options:
            raise TaskError(f"task spec {spec!r}: option {key!r} is given twice")
        options[key] = value.strip()
    return name.strip(), options


def _options(
    name: str, builder: Callable[..., Task], given: Mapping[str, object]
) -> dict[str, object]:
    """Every option of the task: its defaults, overridden by `given` (checked by name; text
    turned into an integer where the default is one)."""
    defaults = {
        parameter.name: parameter.default
        for parameter in inspect.signature(builder).parameters.values()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }
    options = dict(defaults)
    for key, value in given.items():
        if key not in defaults:
            valid = ", ".join(defaults) or "none"
            raise TaskError(f"task {name}: unknown option {key!r}; valid options: {valid}")
        options[key] = _coerce(name, key, value, defaults[key])
    return options


def _coerce(name: str, key: str, value: object, default: object) -> object:
    """`value` as the option's type: an integer where the default is one (text is parsed),
    text otherwise (or the default itself, e.g. None)."""
    if isinstance(default, int):
        if type(value) is int:
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise TaskError(f"task {name}: option {key}={value!r} must be an integer")
    if isinstance(value, str) or value is default:
        return value
    raise TaskError(f"task {name}: option {key}={value!r} must be text")


def parse_task_spec(spec: str) -> tuple[str, dict[str, object]]:
    """The task name and its full options (defaults filled in) from a spec NAME?KEY=VALUE,...;
    raises TaskError for an unknown name, an unknown option or a value of the wrong type."""
    name, given = _split_spec(spec)
    return name, _options(name, _builder(name), given)


def load_task(spec: str = "digits", seed: int = 0, **options: object) -> Task:
    """The task named by `spec` (NAME or NAME?KEY=VALUE,...), its options also accepted as
    keyword arguments (as values or as text), with splits fixed by `seed`."""
    if type(seed) is not int or seed < 0:
        raise TaskError(f"seed must be a non-negative integer, got {seed!r}")
    name, given = _split_spec(spec)
    twice = sorted(given.keys() & options.keys())
    if twice:
        raise TaskError(f"task spec {spec!r}: option {twice[0]!r} is also a keyword argument")
    builder = _builder(name)
    resolved = _options(name, builder, {**given, **options})
    return replace(builder(seed, **resolved), options=resolved)
