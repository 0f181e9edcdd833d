"""Bad input through the command line, as a careless or hostile user gives it: every case ends
with exit status 2 and exactly one `error:` line on stderr (the last; progress lines of phases
that ran may come before it), no traceback, and every study database exactly as it was (byte
for byte) and no output file written."""

import json
import shlex
import shutil
import sqlite3
import sys

import optuna
import pytest
import torch
from fake_trials import FakeRunner, FakeWorkload
from helpers import tiny_config
from safetensors.torch import load_file, save_file

from autohm import cli
from autohm.config import TrialConfig
from autohm.model import MambaLM
from autohm.search import progress
from autohm.search.space import load_space
from autohm.search.study import SearchSettings, run_search


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    """A directory with a finished autohm study (autohm.db), a foreign single-objective study,
    a trial configuration, broken YAML files and broken checkpoints."""
    root = tmp_path_factory.mktemp("bad")
    settings = SearchSettings(budget=3, space=load_space("quick"), out=root, heartbeat_s=None)
    run_search(settings, workload=FakeWorkload(), runner=FakeRunner())
    _garbled_copy(root / "autohm.db", root / "garbled.db")
    foreign = optuna.create_study(storage=f"sqlite:///{root / 'foreign.db'}", study_name="x")
    foreign.add_trial(optuna.trial.create_trial(value=1.0))
    TrialConfig().save(root / "config.yaml")
    (root / "diverges.yaml").write_text("train: {lr: 1.0e+6, steps: 3}\nmasking: {steps: 2}\n")
    (root / "twice.yaml").write_text("train:\n  steps: 3\n  steps: 4\n")
    (root / "broken.yaml").write_text("train: [\n  steps: 3\n")
    (root / "boolean.yaml").write_text("train:\n  steps: true\n")
    (root / "blok.yaml").write_text(
        "parameters:\n  masking.granularity: {choices: [channel, block]}\n"
        "  masking.block_size: {choices: [4, 8], when: {masking.granularity: blok}}\n"
    )
    (root / "a-file").write_text("not a directory\n")
    _checkpoints(root)
    return root


def _garbled_copy(database, copy):
    """`database` with one trial's stored outcome garbled (an accuracy that is not a number)."""
    shutil.copy(database, copy)
    garbled = json.dumps({"accuracy": "high", "flops": 1, "params": 1})
    with sqlite3.connect(copy) as connection:
        connection.execute("UPDATE trial_user_attributes SET value_json = ? WHERE key = 'metrics' "
                           "AND trial_id = (SELECT MIN(trial_id) FROM trial_user_attributes)",
                           (garbled,))  # fmt: skip
    connection.close()


def _checkpoints(root):
    """ckpt-text (a text file for weights), ckpt-int (int32 weights), ckpt-escape (a shard
    index pointing out of the directory), ckpt-huge (a config far beyond its weights)."""
    lm = MambaLM(tiny_config())
    for name in ("text", "int", "escape", "huge"):
        lm.save_pretrained(root / f"ckpt-{name}")
    (root / "ckpt-text" / "model.safetensors").unlink()
    (root / "ckpt-text" / "pytorch_model.bin").write_text("hello world\n")
    weights = root / "ckpt-int" / "model.safetensors"
    save_file({k: (v * 100).to(torch.int32) for k, v in load_file(str(weights)).items()},
              str(weights))  # fmt: skip
    (root / "ckpt-escape" / "model.safetensors").unlink()
    index = {"weight_map": {"backbone.embedding.weight": "../../../../etc/passwd"}}
    (root / "ckpt-escape" / "model.safetensors.index.json").write_text(json.dumps(index))
    config = json.loads((root / "ckpt-huge" / "config.json").read_text())
    huge = {"hidden_size": 100_000, "intermediate_size": 200_000, "num_hidden_layers": 100}
    (root / "ckpt-huge" / "config.json").write_text(json.dumps(config | huge))


BAD = [  # (arguments, what the error line says); {db}, {root}: the fixture's paths
    ("search --budget 0", "'--budget'"),
    ("search --budget lots", "'--budget'"),
    ("search --seed 4294967296", "--seed must be in [0, 2**32)"),
    ("search --seed -1", "--seed must be in [0, 2**32)"),
    ("search --max-latency-ms nan", "--max-latency-ms must be a positive number"),
    ("search --max-latency inf", "--max-latency must be a positive number"),
    ("search --max-params -5", "--max-params must be a positive number"),
    ("search --latency-batch 0", "--latency-batch must be a positive integer"),
    ("search --latency-seq-len 2.5", "'--latency-seq-len'"),
    ("search --latency-batch 1000000000", "the latency shape 1000000000 x 64"),
    ("search --storage ://", "is not a database URL"),
    ("search --storage postgres:/bad", "is not a database URL"),
    ("search --storage sqlite:/relative?x=1", "is not a database URL"),
    ("search --sampler best", "--sampler 'best' is not one of"),
    ("search --prune sometimes", "--prune 'sometimes' is not one of"),
    ("search --space {root}/blok.yaml", "'blok' is not a value masking.granularity takes"),
    ("search --space {root}/twice.yaml", "key 'steps' given twice"),
    ("search --task text:{root}/missing.txt --storage {root}/new.db", "missing.txt"),
    ("search --storage {root}/foreign.db --study x", "not an autohm search"),
    ("search --out {root}/a-file", "is a file, not a directory"),
    ("export --storage {db} --out {db}", "would overwrite the study's own autohm.db"),
    ("export --storage {db} --format csv --out {db}", "would overwrite the study's own"),
    ("export --storage {db} --format parquet --out {db}", "would overwrite the study's own"),
    ("export --storage {db} --out {root}/autohm_artifacts/x.yaml", "would overwrite"),
    ("export --storage {db} --out {root}", "is a directory; give a file name"),
    ("export --storage {db} --format xlsx --out {root}/t.xlsx", "--format 'xlsx'"),
    ("export --storage {db} --pick trial:-1 --out {root}/t.yaml", "trial:-1: the study has no"),
    ("export --storage {root}/foreign.db --out {root}/t.yaml", "not an autohm search"),
    ("export --storage {root}/missing.db --out {root}/t.yaml", "no study storage at"),
    ("export --storage {root}/garbled.db --out {root}/t.yaml", "metrics: accuracy: Input should"),
    ("train --config {root}/broken.yaml --out {root}/run", "not valid YAML"),
    ("train --config {root}/twice.yaml --out {root}/run", "key 'steps' given twice"),
    ("train --config {root}/boolean.yaml --out {root}/run", "train.steps: true is not"),
    ("train --config {root}/config.yaml --out {root}/a-file", "is a file, not a directory"),
    ("train --config {root}/config.yaml --latency-batch -1 --out {root}/run", "--latency-batch"),
    ("train --config {root}/diverges.yaml --out {root}/run", "non-finite loss"),
    ("info --model {root}/ckpt-text", "not a PyTorch weight file"),
    ("info --model {root}/ckpt-int", "torch.int32; weights must be floating point"),
    ("info --model {root}/ckpt-escape", "lies outside the checkpoint directory"),
    ("info --model {root}/ckpt-huge", "missing tensor"),
    ("bench scan --device tpu", "--device 'tpu' is not cpu, cuda or cuda:N"),
    ("bench deploy --fractions 1.5 --models built-in", "--fractions: 1.5 is not in"),
    ("bench deploy --json {root}", "--json {root} is a directory"),
    ("bench scan --json {db}", "is a database (a study's storage?): not overwritten"),
    ("app --storage {root}/foreign.db", "no autohm study in the storage"),
    ("ablate --out {root}/run", "give either --config FILE or --study NAME"),
]


@pytest.mark.parametrize("arguments, message", BAD, ids=[a for a, _ in BAD])
def test_bad_input_is_one_error_line_and_changes_nothing(
    place, arguments, message, monkeypatch, capsys
):
    before = {path: path.read_bytes() for path in place.glob("*.db")}
    listed = {path for path in place.rglob("*")}
    values = {"db": place / "autohm.db", "root": place}
    argv = [part.format(**values) for part in shlex.split(arguments)]
    monkeypatch.setattr(sys, "argv", ["autohm", *argv])
    monkeypatch.chdir(place)
    with pytest.raises(SystemExit) as exit:
        cli.main()
    err = capsys.readouterr().err
    assert exit.value.code == 2, err
    lines = err.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert errors == lines[-1:] and "Traceback" not in err, err
    assert message.format(**values) in lines[-1], err
    assert {path: path.read_bytes() for path in place.glob("*.db")} == before
    assert {path for path in place.rglob("*")} == listed  # nothing written, nothing left


def test_user_values_print_literally(place, monkeypatch, capsys):
    """No Rich markup or emoji codes in what a user typed: [bold] and :-1: stay as they are."""
    monkeypatch.setattr(sys, "argv", ["autohm", "export", "--storage", str(place / "autohm.db"),
                                      "--pick", "trial:[bold]:-1:", "--out", "x.yaml"])  # fmt: skip
    with pytest.raises(SystemExit):
        cli.main()
    assert "trial:[bold]:-1:" in capsys.readouterr().err


def test_the_eta_of_a_budget_beyond_any_clock_is_never():
    line = progress.SearchProgress(console=None, budget=2**63)
    line.done_here, line.started = 1, line.started - 10  # ten seconds a trial
    assert line._eta(1) == "never"


def test_a_write_the_system_refuses_is_one_error_naming_the_file(tmp_path, monkeypatch):
    """Disk full, or a file system that takes no files: an AutohmError, nothing left behind."""
    from autohm.errors import AutohmError
    from autohm.files import write_text

    def refuse(self, text):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(tmp_path), "write_text", refuse)
    with pytest.raises(AutohmError, match=r"cannot write .*out.json: No space left on device"):
        write_text(tmp_path / "out.json", "{}")
    assert list(tmp_path.iterdir()) == []
