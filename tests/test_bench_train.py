"""`autohm bench train`: the step variants run on the same weights (equal first losses where
the adapters start at zero), are timed in rotating rounds, and the quick trial reports its
phases and the bytes a search stores for it."""

import json
import subprocess
import sys

import pytest
import torch

from autohm.bench import train as bench_train
from autohm.errors import AutohmError


def test_the_step_variants_share_the_weights_and_rotate():
    base, source = bench_train.base_model(None, "32x2")
    assert "d_model 32, 2 layers" in source and base.config.vocab_size == bench_train.VOCAB
    rows, notes = bench_train.run_steps(base, batch=2, seq_len=8, rounds=2)
    names = [row.variant for row in rows]
    assert names[:2] == ["autohm fine-tune (LoRA)", "autohm mask learning"]
    if notes:  # transformers or peft missing: said, not silently dropped
        assert "transformers + PEFT left out" in notes[0] and len(rows) == 2
    else:
        assert names[2].startswith("transformers + PEFT")
        torch.testing.assert_close(rows[2].first_loss, rows[0].first_loss, rtol=1e-5, atol=1e-6)
    for row in rows:
        assert 0 < row.min_s <= row.median_s
    assert rows[0].vs_fine_tune == 1.0


def test_time_steps_rotates_the_order_and_skips_the_first_round():
    order = []
    steps = {name: (lambda name=name: order.append(name) or 1.0) for name in "abc"}
    rows = bench_train.time_steps(steps, rounds=2)
    assert order == list("abc") + list("bca") + list("cab")
    assert [row.first_loss for row in rows] == [1.0] * 3


def test_a_bad_size_is_one_error():
    with pytest.raises(AutohmError, match="--size: 'huge'"):
        bench_train.base_model(None, "huge")


def test_autohm_bench_train_prints_steps_and_the_trial_phases(tmp_path):
    out = tmp_path / "bench.json"
    command = [sys.executable, "-m", "autohm", "bench", "train", "--size", "32x2", "--batch", "2",
               "--seq-len", "8", "--rounds", "1", "--json", str(out)]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "one training step" in run.stdout and "quick-space trial" in run.stdout
    document = json.loads(out.read_text())
    trial = document["trial"]
    assert {"scan_order_s", "masks_s", "fine_tune_s", "evaluation_s", "measure_s"} <= set(
        trial["timings"])  # fmt: skip
    assert trial["stored_bytes"] == sum(trial["files"].values()) > 0
    assert "adapter.safetensors" in trial["files"]


def test_a_size_below_one_is_one_error():
    with pytest.raises(AutohmError, match="--size: '0x2': d_model must be a positive integer"):
        bench_train.base_model(None, "0x2")
