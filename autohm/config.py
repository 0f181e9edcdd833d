"""The trial configuration: every knob of the recipe in one typed, validated object that
round-trips through YAML. Unknown keys and out-of-range values are rejected with the key named.

    scan_order: {method, source, calibration_batches, time_limit}
    masking:    {enabled, sites, granularity, block_size, distribution, init_logit, schedule,
                 penalty, steps, lr, joint}
    peft:       {mode, importance, lora_quantile, ia3_quantile, rank, alpha}
    train:      {steps, lr, batch_size, seed, eval_every, weight_decay}
"""

from __future__ import annotations

import typing
from collections.abc import Collection
from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from autohm.errors import AutohmError
from autohm.files import write_text
from autohm.masking.sites import SITES
from autohm.peft import POLICIES
from autohm.scan_order import SOLVERS, SOURCES
from autohm.yaml_text import load_yaml

PEFT_TARGETS = ("in_proj", "x_proj", "dt_proj", "out_proj")


class ConfigError(AutohmError):
    """A configuration file or value that does not validate."""


class Section(BaseModel):
    """Strict: unknown keys are errors, values are checked on assignment too, and true/false
    are not numbers (pydantic would take `steps: true` for 1)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @field_validator("*", mode="before")
    @classmethod
    def _booleans_only_where_asked(cls, value: object, info: ValidationInfo) -> object:
        if isinstance(value, bool) and bool not in _members(cls.model_fields[info.field_name]):
            raise ValueError(f"{str(value).lower()} is not a number or a name")
        return value


class ScanOrderConfig(Section):
    """Pillar 1: the solver ("identity" turns the order off) and its calibration."""

    method: str = "best"
    source: str = "state"
    calibration_batches: int = Field(4, ge=1)
    time_limit: float | None = Field(None, gt=0)

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        return _one_of(value, SOLVERS)

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        return _one_of(value, SOURCES)


class ScheduleConfig(Section):
    """The temperature schedule of the relaxed masks (see autohm.masking.schedules)."""

    kind: Literal["constant", "linear", "exponential", "cosine"] = "exponential"
    start: float = Field(1.0, gt=0)
    end: float = Field(0.1, gt=0)


class PenaltyConfig(Section):
    """The sparsity term (see autohm.masking.objective)."""

    kind: Literal["l0", "target", "lagrangian"] = "target"
    weight: float = Field(5.0, ge=0)
    sparsity: float = Field(0.5, ge=0, lt=1)


class MaskingConfig(Section):
    """Pillar 2: where masks sit, their granularity and distribution, and how they learn."""

    enabled: bool = True
    sites: list[str] = Field(default_factory=lambda: ["in_proj.x", "in_proj.z", "out_proj"])
    granularity: Literal["element", "channel", "block"] = "channel"
    block_size: int = Field(8, ge=1)
    distribution: Literal["concrete", "hard_concrete"] = "concrete"
    init_logit: float = Field(3.0, gt=0)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    penalty: PenaltyConfig = Field(default_factory=PenaltyConfig)
    steps: int = Field(60, ge=1)
    lr: float = Field(0.1, gt=0)
    joint: bool = False  # keep training the masks during fine-tuning (else hard masks fixed)

    @field_validator("sites")
    @classmethod
    def _known_sites(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one mask site is needed")
        for site in value:
            _one_of(site, SITES)
        if len(set(value)) != len(value):
            raise ValueError(f"sites repeat: {value}")
        return value


class PeftConfig(Section):
    """Pillar 3: "hybrid" allocates LoRA / IA3 / frozen by importance quantiles; "lora",
    "ia3", "full" (every weight) and "head" (linear probe) are the reference points."""

    mode: str = "hybrid"  # a name of autohm.peft.POLICIES
    importance: Literal["logit", "mean_gate"] = "mean_gate"
    lora_quantile: float = Field(0.5, ge=0, le=1)
    ia3_quantile: float = Field(0.0, ge=0, le=1)
    rank: int | dict[str, int] = 4
    alpha: float | None = Field(None, gt=0)  # LoRA scaling numerator; None: 2 * rank

    @field_validator("rank")
    @classmethod
    def _positive_ranks(cls, value: int | dict[str, int]) -> int | dict[str, int]:
        ranks = value.values() if isinstance(value, dict) else [value]
        if any(r < 1 for r in ranks):
            raise ValueError(f"LoRA ranks must be >= 1, got {value}")
        if isinstance(value, dict):
            for module in value:
                _one_of(module, PEFT_TARGETS)
            missing = [module for module in PEFT_TARGETS if module not in value]
            if missing:
                raise ValueError(
                    f"a rank per module names every module (missing: {', '.join(missing)}), "
                    "or give one number"
                )
        return value

    @field_validator("mode")
    @classmethod
    def _known_mode(cls, value: str) -> str:
        return _one_of(value, POLICIES)

    @model_validator(mode="after")
    def _ordered_quantiles(self) -> PeftConfig:
        if self.ia3_quantile > self.lora_quantile:
            raise ValueError(
                f"ia3_quantile ({self.ia3_quantile}) must not exceed lora_quantile "
                f"({self.lora_quantile})"
            )
        return self


class TrainConfig(Section):
    """Fine-tuning: steps, optimiser, batch, seed, and the fidelity steps to evaluate at."""

    steps: int = Field(150, ge=1)
    lr: float = Field(3e-3, gt=0)
    batch_size: int = Field(32, ge=1)
    seed: int = 0
    eval_every: int = Field(50, ge=1)
    weight_decay: float = Field(0.0, ge=0)


class TrialConfig(Section):
    """One candidate of the search; `autohm train --config FILE` reads the same structure."""

    scan_order: ScanOrderConfig = Field(default_factory=ScanOrderConfig)
    masking: MaskingConfig = Field(default_factory=MaskingConfig)
    peft: PeftConfig = Field(default_factory=PeftConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    @classmethod
    def from_dict(cls, data: dict, source: str = "configuration") -> TrialConfig:
        """Validate `data`; errors name the source and the dotted key."""
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            raise ConfigError(_describe(error, source)) from None

    @classmethod
    def load(cls, path: str | Path) -> TrialConfig:
        """Read a YAML file (a `config:` key at the top level is also accepted)."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        data = load_yaml(path.read_text(), str(path), ConfigError) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        return cls.from_dict(data.get("config", data), source=str(path))

    def with_changes(self, **sections: dict) -> TrialConfig:
        """A validated copy with some keys of some sections replaced."""
        data = self.model_dump()
        for section, values in sections.items():
            data[section] |= values
        return TrialConfig.from_dict(data)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def save(self, path: str | Path) -> None:
        write_text(path, self.to_yaml())


def _members(field: FieldInfo) -> set:
    """The types a field accepts, unions unpacked."""
    annotation = field.annotation
    return set(typing.get_args(annotation)) | {annotation}


def _one_of(value: str, allowed: Collection[str]) -> str:
    if value not in allowed:
        raise ValueError(f"{value!r} is not one of {', '.join(allowed)}")
    return value


def _describe(error: ValidationError, source: str) -> str:
    """The first validation problem as `source: key.path: message`."""
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "(top level)"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{source}: {key}: {message}{more}"
