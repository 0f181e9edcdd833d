"""Progress of the long phases of one run: loading, calibration, scan order, mask learning,
fine-tuning, evaluation, measurement. A phase reports `progress(phase, done, total, detail)`;
a PhaseLog shows it with the time spent and an estimate of the time left: as rich's live line on
a terminal, as timestamped plain lines otherwise (a worker's log stays readable), or not at all
(--quiet)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from rich.console import Console
from rich.status import Status

Progress = Callable[..., None]
"""progress(phase, done=None, total=None, detail="") -> None"""


def ignore(phase: str, done: int | None = None, total: int | None = None, detail: str = "") -> None:
    """The Progress of a run nobody watches."""


def labelled(progress: Progress, label: str) -> Progress:
    """`progress` with every phase named as part of `label` (one baseline, one variant)."""

    def report(phase: str, *args: object, **kwargs: object) -> None:
        progress(f"{label}: {phase}", *args, **kwargs)

    return report


class PhaseLog:
    """A Progress for one run. Plain lines: a phase's first report, then one every `every`
    seconds, and nothing at all until the run is `after` seconds old (a search's short trials
    stay one line each). Live: one status line, updated on every report."""

    def __init__(
        self,
        console: Console,
        live: bool | None = None,
        every: float = 10.0,
        after: float = 0.0,
        label: str = "",
        quiet: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console, self.every, self.after, self.label, self.clock = (
            console, every, after, label, clock,
        )  # fmt: skip
        self.live = console.is_terminal if live is None else live
        self.started = clock()
        self.phase, self.phase_started, self.shown = "", self.started, -float("inf")
        self.status: Status | None = None
        self.quiet = quiet

    def __call__(
        self, phase: str, done: int | None = None, total: int | None = None, detail: str = ""
    ) -> None:
        if self.quiet:
            return
        now = self.clock()
        if phase != self.phase:
            self.phase, self.phase_started, self.shown = phase, now, -float("inf")
        line = self._line(now, done, total, detail)
        if self.live:
            if self.status is None:
                self.status = self.console.status(line)
                self.status.start()
            else:
                self.status.update(line)
            return
        if now - self.started < self.after or now - self.shown < self.every:
            return
        self.shown = now
        stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        self.console.print(f"{stamp} {line}", markup=False, highlight=False)

    def _line(self, now: float, done: int | None, total: int | None, detail: str) -> str:
        spent = now - self.phase_started
        parts = [f"{self.label}: " if self.label else "", self.phase]
        if done is not None and total:
            parts.append(f" {done}/{total}")
        if detail:
            parts.append(f" {detail}")
        timing = f"{spent:.0f} s"
        if done and total and done < total:
            timing += f", ETA {spent / done * (total - done):.0f} s"
        return "".join(parts) + f" ({timing})"

    def close(self) -> None:
        """Remove the live line (plain lines stay)."""
        if self.status is not None:
            self.status.stop()
            self.status = None

    def __enter__(self) -> PhaseLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def phase_log(quiet: bool = False, **options: object) -> PhaseLog:
    """The progress of a command, on stderr (nothing with --quiet)."""
    return PhaseLog(Console(stderr=True, soft_wrap=True), quiet=quiet, **options)
