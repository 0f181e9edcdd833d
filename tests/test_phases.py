"""Progress of long phases: what a run reports (every phase, in order, with steps), how a log
shows it (timestamped lines, throttled, after a while), and that --quiet silences it."""

import io
import re
import sys

import pytest
from helpers import TINY_TASK, tiny_config, tiny_config_for_trials, tiny_workload
from rich.console import Console

from autohm import cli
from autohm.model import MambaLM
from autohm.phases import PhaseLog, labelled
from autohm.tasks import load_task
from autohm.trial import run_trial


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def log(**options):
    clock, out = Clock(), io.StringIO()
    console = Console(file=out, width=200)
    return PhaseLog(console, live=False, clock=clock, **options), clock, out


def test_plain_lines_are_timestamped_throttled_and_estimate_the_time_left():
    progress, clock, out = log(every=10)
    progress("fine-tuning", 1, 100, "loss 1.000")
    clock.now += 4
    progress("fine-tuning", 40, 100, "loss 0.800")  # within 10 s of the last line: not shown
    clock.now += 6
    progress("fine-tuning", 50, 100, "loss 0.700")
    progress("measurement")  # a new phase is shown at once
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d "
    assert re.fullmatch(stamp + r"fine-tuning 1/100 loss 1.000 \(0 s, ETA 0 s\)", lines[0])
    assert lines[1].endswith("fine-tuning 50/100 loss 0.700 (10 s, ETA 10 s)")
    assert lines[2].endswith("measurement (0 s)")


def test_a_watched_trial_shows_nothing_before_its_time_and_says_which_it_is():
    progress, clock, out = log(every=30, after=30, label="trial 7")
    progress("mask learning", 5, 60)
    clock.now += 29
    progress("fine-tuning", 1, 150)
    assert out.getvalue() == ""
    clock.now += 2
    progress("fine-tuning", 20, 150)
    assert out.getvalue().strip().endswith("trial 7: fine-tuning 20/150 (2 s, ETA 13 s)")


def test_quiet_shows_nothing():
    progress, _, out = log(quiet=True)
    progress("fine-tuning", 1, 2)
    assert out.getvalue() == ""


def test_a_trial_reports_every_phase_in_order():
    seen = []

    def progress(phase, done=None, total=None, detail=""):
        seen.append((phase, done, total))

    run_trial(tiny_config_for_trials(), tiny_workload(), progress=labelled(progress, "run"),
              latency=False)  # fmt: skip
    phases = list(dict.fromkeys(phase for phase, _, _ in seen))
    assert phases == ["run: calibration", "run: scan order", "run: mask learning",
                      "run: fine-tuning", "run: evaluation", "run: measurement"]  # fmt: skip
    assert ("run: mask learning", 4, 4) in seen and ("run: fine-tuning", 6, 6) in seen
    assert ("run: scan order", 1, 2) in seen and ("run: scan order", 2, 2) in seen


@pytest.mark.parametrize("quiet", [False, True])
def test_autohm_train_logs_its_phases_unless_quiet(tmp_path, monkeypatch, capsys, quiet):
    MambaLM(tiny_config(vocab_size=load_task(TINY_TASK).vocab_size)).save_pretrained(
        tmp_path / "base"
    )
    tiny_config_for_trials().save(tmp_path / "config.yaml")
    argv = ["autohm", "train", "--config", str(tmp_path / "config.yaml"), "--task", TINY_TASK,
            "--model", str(tmp_path / "base"), "--out", str(tmp_path / "run"),
            "--latency-batch", "2"] + (["--quiet"] if quiet else [])  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit:
        cli.main()
    assert exit.value.code == 0
    err = capsys.readouterr().err
    if quiet:
        assert err == ""
    else:
        for phase in ("loading", "calibration", "mask learning", "fine-tuning", "measurement"):
            assert re.search(rf"\d\d:\d\d:\d\d {phase}", err), phase
