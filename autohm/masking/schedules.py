"""Temperature schedules for the mask-learning steps: tau goes from `start` at step 0 to `end`
at the last step, constant, linearly, exponentially (geometrically) or along a half cosine."""

from __future__ import annotations

import math
from dataclasses import dataclass

SCHEDULES = ("constant", "linear", "exponential", "cosine")


@dataclass(frozen=True)
class TemperatureSchedule:
    """tau(step) over `steps` mask-learning steps; step 0 gives start, step steps - 1 gives end
    (exactly; a single step uses end), and tau is monotone in between. `constant` stays at start."""

    kind: str = "exponential"
    start: float = 1.0
    end: float = 0.1

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(f"unknown temperature schedule {self.kind!r}; choose from {SCHEDULES}")
        for name in ("start", "end"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"temperature {name} must be positive and finite, got {value!r}")

    def __call__(self, step: int, steps: int) -> float:
        if self.kind == "constant":
            return self.start
        if step <= 0 and steps > 1:
            return self.start
        if step >= steps - 1:
            return self.end
        t = step / (steps - 1)
        if self.kind == "linear":
            return self.start + (self.end - self.start) * t
        if self.kind == "exponential":
            return self.start * (self.end / self.start) ** t
        return self.end + (self.start - self.end) * 0.5 * (1.0 + math.cos(math.pi * t))
