"""Search-space files: YAML that maps dotted TrialConfig keys to what a trial may choose, checked
on load (one error naming the file, the key and the problem), and `suggest` that turns an Optuna
trial into a TrialConfig.

    description: what the space is for
    settings:                       # defaults the command line can override
      task: digits
      model: null                   # a checkpoint directory or Hub id; null: the built-in model
      prune: median                 # median | halving | pareto | none (multi-fidelity early stops)
      prune_min_trials: 4           # completed trials needed at a step before comparing
      latency_batch: null           # deployment shape latency is timed at: sequences (null:
                                    # the model's default)...
      latency_seq_len: null         # ...of this many tokens (null: the task's length)
    parameters:                     # in order; a `when` may only look at keys above it
      train.steps: 20                                   # fixed value
      masking.sites: {value: [in_proj.x, out_proj]}     # fixed value, explicit form
      masking.granularity: {choices: [element, channel, block]}
      masking.block_size: {choices: [4, 8, 16], when: {masking.granularity: block}}
      train.lr: {low: 1.0e-3, high: 1.0e-2, log: true}  # int or float from the config field
      peft.ia3_quantile: {low: 0.0, high: 0.3, step: 0.05}
    baselines:                      # enqueued with --baselines; overrides on the defaults
      lora: {peft.mode: lora, masking.enabled: false}

Keys not in the file keep TrialConfig's defaults. A parameter whose `when` does not hold is not
suggested (the trial keeps the default). Choices that are lists or mappings are stored in Optuna
as their JSON text.
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import optuna
from pydantic import BaseModel, ValidationError

from autohm.config import TrialConfig
from autohm.errors import AutohmError
from autohm.search.fidelity import RULES as PRUNE_RULES
from autohm.yaml_text import load_yaml

BUILT_IN_PACKAGE = "autohm.search_spaces"
SECTIONS = ("description", "settings", "parameters", "baselines")
SETTINGS = {
    "task": (str,), "model": (str, type(None)), "prune": (str,), "prune_min_trials": (int,),
    "latency_batch": (int,), "latency_seq_len": (int, type(None)),
}  # fmt: skip
ENTRY_KEYS = ("choices", "low", "high", "log", "step", "value", "when")
_UNSET = object()


class SearchSpaceError(AutohmError):
    """A search-space file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class Parameter:
    """One dotted key: a fixed value, a categorical choice or a numeric range, maybe conditional."""

    key: str
    value: Any = _UNSET
    choices: tuple = ()
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    integer: bool = False
    when: dict[str, tuple] = field(default_factory=dict)

    @property
    def fixed(self) -> bool:
        return self.value is not _UNSET

    def applies(self, lookup: typing.Callable[[str], Any]) -> bool:
        """Whether every `when` condition holds for the values chosen so far."""
        return all(lookup(key) in allowed for key, allowed in self.when.items())

    def sample(self, trial: optuna.Trial) -> Any:
        """The fixed value, or the trial's suggestion."""
        if self.fixed:
            return self.value
        if self.choices:
            encoded = [_encode(c) for c in self.choices]
            return self.choices[encoded.index(trial.suggest_categorical(self.key, encoded))]
        if self.integer:
            low, high, step = int(self.low), int(self.high), int(self.step or 1)
            return trial.suggest_int(self.key, low, high, step=step, log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    def encoded(self, value: Any) -> Any | None:
        """`value` as this parameter's Optuna value, or None when the space cannot produce it."""
        if self.fixed:
            return None
        if self.choices:
            return _encode(value) if value in self.choices else None
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return value if self.low <= value <= self.high else None


@dataclass(frozen=True)
class SearchSpace:
    """A validated search-space file."""

    name: str
    source: str
    description: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    parameters: tuple[Parameter, ...] = ()
    baselines: dict[str, dict[str, Any]] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    def resolve(
        self, overrides: dict[str, Any] | None = None, trial: optuna.Trial | None = None
    ) -> dict[str, Any]:
        """Dotted values of every parameter that applies: fixed values, `overrides` (where the
        parameter is searched), and with a trial the suggested ones."""
        chosen: dict[str, Any] = {}
        defaults = TrialConfig().model_dump(mode="json")

        def lookup(key: str) -> Any:
            return chosen[key] if key in chosen else _get(defaults, key)

        for parameter in self.parameters:
            if not parameter.applies(lookup):
                continue
            if trial is not None:
                chosen[parameter.key] = parameter.sample(trial)
            elif parameter.fixed:
                chosen[parameter.key] = parameter.value
            elif overrides and parameter.key in overrides:
                chosen[parameter.key] = overrides[parameter.key]
        return chosen

    def warm_start(self, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """Optuna params that reproduce TrialConfig's defaults (with `overrides`) as far as the
        space can; values the space cannot produce are left to the sampler."""
        defaults = TrialConfig().model_dump(mode="json")
        values = {p.key: _get(defaults, p.key) for p in self.parameters} | (overrides or {})
        chosen = self.resolve(values)
        params = {}
        for parameter in self.parameters:
            if parameter.key in chosen:
                encoded = parameter.encoded(chosen[parameter.key])
                if encoded is not None:
                    params[parameter.key] = encoded
        return params

    def default_config(self) -> TrialConfig:
        """The warm start's configuration, with the first choice (or the low end) where the
        space cannot produce TrialConfig's default: a trial this space could run."""
        first = {
            p.key: _encode(p.choices[0]) if p.choices else (int(p.low) if p.integer else p.low)
            for p in self.parameters
            if not p.fixed
        }
        return suggest(optuna.trial.FixedTrial(first | self.warm_start()), self)

    def baseline_config(self, name: str, trial: optuna.Trial) -> TrialConfig:
        """A baseline: the trial's suggestions with the baseline's overrides on top."""
        values = self.resolve(trial=trial) | self.baselines[name]
        return build_config(values, f"{self.source}: baselines.{name}")


def suggest(trial: optuna.Trial, space: SearchSpace) -> TrialConfig:
    """The trial's configuration: TrialConfig's defaults, then the space's values and choices.
    A combination the config rejects (e.g. ia3_quantile above lora_quantile) raises ConfigError."""
    baseline = trial.user_attrs.get("baseline")
    if baseline in space.baselines:
        return space.baseline_config(baseline, trial)
    return build_config(space.resolve(trial=trial), f"trial {trial.number}")


def build_config(values: dict[str, Any], source: str) -> TrialConfig:
    """A TrialConfig from dotted values over the defaults."""
    data = TrialConfig().model_dump(mode="json")
    for key, value in values.items():
        _set(data, key, value)
    return TrialConfig.from_dict(data, source=source)


def built_in_spaces() -> list[str]:
    """Names of the search spaces shipped with autohm."""
    files = resources.files(BUILT_IN_PACKAGE).iterdir()
    return sorted(f.name.removesuffix(".yaml") for f in files if f.name.endswith(".yaml"))


def load_space(spec: str | Path) -> SearchSpace:
    """A space by built-in name (`quick`) or by path to a YAML file."""
    path = Path(spec)
    if not path.is_file():
        if str(spec) not in built_in_spaces():
            raise SearchSpaceError(
                f"search space {str(spec)!r}: no such file, and no built-in space of that name "
                f"(built-in: {', '.join(built_in_spaces())})"
            )
        resource = resources.files(BUILT_IN_PACKAGE) / f"{spec}.yaml"
        return parse_space(resource.read_text(), name=str(spec), source=str(resource))
    return parse_space(path.read_text(), name=path.stem, source=str(path))


def parse_space(text: str, name: str, source: str) -> SearchSpace:
    """Validate the YAML text of a space; errors read `source: key: problem`."""
    data = load_yaml(text, source, SearchSpaceError)
    if not isinstance(data, dict):
        raise SearchSpaceError(f"{source}: expected a mapping with keys {', '.join(SECTIONS)}")
    _check(source, "(top level)", not (set(data) - set(SECTIONS)), _unknown(data, SECTIONS))
    _check(source, "parameters", isinstance(data.get("parameters", {}), dict), "not a mapping")
    description = data.get("description") or ""
    _check(source, "description", isinstance(description, str), "not text")
    settings = _settings(source, data.get("settings") or {})
    parameters: list[Parameter] = []
    for key, entry in (data.get("parameters") or {}).items():
        parameters.append(_parameter(source, str(key), entry, parameters))
    baselines = _baselines(source, data.get("baselines") or {})
    return SearchSpace(name, source, description, settings, tuple(parameters), baselines, data)


def _settings(source: str, settings: Any) -> dict[str, Any]:
    _check(source, "settings", isinstance(settings, dict), "not a mapping")
    for key, value in settings.items():
        where = f"settings.{key}"
        _check(source, where, key in SETTINGS, f"unknown key (known: {', '.join(SETTINGS)})")
        kinds = SETTINGS[key]
        ok = isinstance(value, kinds) and not isinstance(value, bool)
        _check(source, where, ok, f"{value!r} is not {' or '.join(k.__name__ for k in kinds)}")
    prune = settings.get("prune", "median")
    _check(source, "settings.prune", prune in PRUNE_RULES, f"{prune!r} is not one of "
           f"{', '.join(PRUNE_RULES)}")  # fmt: skip
    for key in ("prune_min_trials", "latency_batch", "latency_seq_len"):
        value = settings.get(key)
        _check(source, f"settings.{key}", value is None or value >= 1, "< 1")
    return dict(settings)


def _parameter(source: str, key: str, entry: Any, earlier: list[Parameter]) -> Parameter:
    where = f"parameters.{key}"
    members = _field_types(source, where, key)
    takes_mapping = any(typing.get_origin(m) is dict or _is_section(m) for m in members)
    if not isinstance(entry, dict) or (takes_mapping and not set(entry) & set(ENTRY_KEYS)):
        _check_value(source, where, key, entry)
        return Parameter(key, value=entry)
    _check(source, where, not (set(entry) - set(ENTRY_KEYS)), _unknown(entry, ENTRY_KEYS))
    ranged = {"low/high"} if {"low", "high"} & set(entry) else set()
    forms = {"choices", "value"} & set(entry) | ranged
    _check(source, where, len(forms) == 1, "give exactly one of choices, value or low/high")
    when = _conditions(source, where, entry.get("when") or {}, earlier)
    if "value" in entry:
        _check_value(source, where, key, entry["value"])
        return Parameter(key, value=entry["value"], when=when)
    if "choices" in entry:
        choices = entry["choices"]
        ok = isinstance(choices, list) and len(choices) > 0
        _check(source, f"{where}.choices", ok, "needs a non-empty list")
        for choice in choices:
            _check_value(source, f"{where}.choices", key, choice)
        return Parameter(key, choices=tuple(choices), when=when)
    integer = int in members and float not in members
    return _range(source, where, key, entry, integer, when)


def _range(
    source: str, where: str, key: str, entry: dict, integer: bool, when: dict[str, tuple]
) -> Parameter:
    low, high, step = (_number(entry.get(name)) for name in ("low", "high", "step"))
    log = entry.get("log")
    for name, value in (("low", low), ("high", high)):
        number = isinstance(value, int | float) and not isinstance(value, bool)
        _check(source, f"{where}.{name}", number, f"needs a number, got {value!r}")
        _check_value(source, f"{where}.{name}", key, value)
    _check(source, where, low <= high, f"low ({low}) is above high ({high})")
    _check(source, f"{where}.log", log in (None, True, False), "must be true or false")
    _check(source, f"{where}.log", not log or low > 0, "log scale needs low > 0")
    positive = step is None or (isinstance(step, int | float) and step > 0)
    _check(source, f"{where}.step", positive, f"must be a positive number, got {step!r}")
    _check(source, where, not (log and step), "log and step cannot be combined")
    integer = integer and all(isinstance(v, int) for v in (low, high, step or 1))
    return Parameter(key, low=low, high=high, log=bool(log), step=step, integer=integer, when=when)


def _conditions(source: str, where: str, when: Any, earlier: list[Parameter]) -> dict[str, tuple]:
    """The `when` mapping, checked: keys listed above, values that key can take (a condition
    no trial can meet would silently never search the parameter)."""
    _check(source, f"{where}.when", isinstance(when, dict), "needs a mapping of key: value(s)")
    above = {parameter.key: parameter for parameter in earlier}
    conditions = {}
    for other, allowed in when.items():
        _field_types(source, f"{where}.when", str(other))
        _check(
            source, f"{where}.when", other in above,
            f"{other!r} must be a parameter listed above this one",
        )  # fmt: skip
        values = tuple(allowed) if isinstance(allowed, list) else (allowed,)
        possible = above[other].choices or ((above[other].value,) if above[other].fixed else ())
        for value in values:
            _check(
                source, f"{where}.when.{other}", not possible or value in possible,
                f"{value!r} is not a value {other} takes here "
                f"({', '.join(repr(p) for p in possible)})",
            )  # fmt: skip
        conditions[str(other)] = values
    return conditions


def _baselines(source: str, baselines: Any) -> dict[str, dict[str, Any]]:
    _check(source, "baselines", isinstance(baselines, dict), "not a mapping")
    checked = {}
    for name, overrides in baselines.items():
        where = f"baselines.{name}"
        _check(source, where, isinstance(overrides, dict), "needs a mapping of key: value")
        for key, value in overrides.items():
            _field_types(source, f"{where}.{key}", str(key))
            _check_value(source, f"{where}.{key}", str(key), value)
        checked[str(name)] = {str(k): v for k, v in overrides.items()}
    return checked


def _field_types(source: str, where: str, key: str) -> set:
    """The types a config key accepts (the members of its annotation); unknown keys are errors."""
    model: type[BaseModel] = TrialConfig
    parts = key.split(".")
    for depth, part in enumerate(parts):
        fields = model.model_fields
        if part not in fields:
            prefix = ".".join(parts[:depth])
            known = "known: " + ", ".join(f"{prefix}.{f}" if prefix else f for f in fields)
            raise SearchSpaceError(f"{source}: {where}: unknown config key {key!r} ({known})")
        annotation = fields[part].annotation
        if depth < len(parts) - 1:
            if not _is_section(annotation):
                raise SearchSpaceError(
                    f"{source}: {where}: {'.'.join(parts[: depth + 1])!r} has no sub-keys"
                )
            model = annotation
    union = isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union
    return set(typing.get_args(annotation)) if union else {annotation}


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _check_value(source: str, where: str, key: str, value: Any) -> None:
    """Validate one value in the defaults' context; only problems at `key` itself count (a
    combination of keys, such as the quantile order, is checked per trial)."""
    data: dict = {}
    _set(data, key, value)
    try:
        TrialConfig.model_validate(data)
    except ValidationError as error:
        parts = tuple(key.split("."))
        for problem in error.errors():
            if tuple(str(p) for p in problem["loc"][: len(parts)]) == parts:
                message = problem["msg"].removeprefix("Value error, ")
                raise SearchSpaceError(f"{source}: {where}: {value!r}: {message}") from None


def _check(source: str, where: str, ok: bool, message: str) -> None:
    if not ok:
        raise SearchSpaceError(f"{source}: {where}: {message}")


def _unknown(mapping: dict, known: tuple[str, ...]) -> str:
    extra = ", ".join(repr(k) for k in mapping if k not in known)
    return f"unknown key {extra} (known: {', '.join(known)})"


def _encode(choice: Any) -> Any:
    """Optuna stores None, bool, int, float and str; anything else as JSON text."""
    if choice is None or isinstance(choice, bool | int | float | str):
        return choice
    return json.dumps(choice, sort_keys=True)


def _number(value: Any) -> Any:
    """YAML 1.1 (PyYAML) reads 1e-3 as text: accept numbers written that way."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _get(data: dict, key: str) -> Any:
    for part in key.split("."):
        data = data[part]
    return data


def _set(data: dict, key: str, value: Any) -> None:
    *parents, last = key.split(".")
    for part in parents:
        data = data.setdefault(part, {})
    data[last] = value
