"""`autohm bench scan`: the mambapy baseline is a correct scan, the command runs end to end and
writes its rows, and bad options are one-line errors."""

import json
import subprocess
import sys
from collections import Counter

import pytest
import torch
from helpers import assert_close_relative, scan_inputs, scan_with_grads
from typer.testing import CliRunner

from autohm.bench import scan as bench_scan
from autohm.bench.baselines import selective_scan_mambapy
from autohm.bench.scan import parse_shapes
from autohm.cli import app
from autohm.errors import AutohmError
from autohm.ops import selective_scan


def test_mambapy_baseline_matches_reference():
    pytest.importorskip("mambapy", reason="the mambapy baseline needs mambapy (test extra)")
    inputs = scan_inputs(2, 6, 11, 4)
    y, last, grads = scan_with_grads(selective_scan_mambapy, inputs, delta_softplus=True)
    y_ref, last_ref, grads_ref = scan_with_grads(
        selective_scan, inputs, delta_softplus=True, backend="reference"
    )
    assert_close_relative(y, y_ref, 1e-5, "y")
    assert_close_relative(last, last_ref, 1e-5, "last")
    for name in grads:
        assert_close_relative(grads[name], grads_ref[name], 1e-4, name)


def test_parse_shapes():
    assert parse_shapes("4x256x256x16, 2X8X9X1") == [(4, 256, 256, 16), (2, 8, 9, 1)]
    with pytest.raises(AutohmError, match="'4x256' is not BATCHxD_INNERxLxD_STATE"):
        parse_shapes("4x256")


@pytest.mark.parametrize("count", range(1, 8))
def test_balanced_orders_let_every_variant_follow_every_other_equally_often(count):
    orders = bench_scan.balanced_orders(count)
    assert all(sorted(order) == list(range(count)) for order in orders)
    pairs = Counter((o[i], o[i + 1]) for o in orders for i in range(count - 1))
    assert len(pairs) == count * (count - 1) and len(set(pairs.values())) <= 1


def test_rounds_cycle_through_the_balanced_orders(monkeypatch):
    """After the warm-up, every round runs each variant once, in the next balanced order (a call
    after a memory-heavy one runs on cold caches, so none may always follow the same one)."""
    calls = []
    monkeypatch.setattr(bench_scan, "_scan_for", lambda variant, d_inner, device: variant)
    monkeypatch.setattr(
        bench_scan, "_time_once", lambda scan, inputs, device: calls.append(scan) or 1.0
    )
    variants = ["a", "b", "c", "d"]
    rows = bench_scan.run([(1, 2, 3, 1)], variants, torch.device("cpu"), repeats=5)
    orders = bench_scan.balanced_orders(4)
    expected = [[variants[i] for i in orders[r % 4]] for r in range(5)]
    assert calls == variants + sum(expected, [])  # the warm-up, then the rounds
    assert [row.variant for row in rows] == variants


def test_bench_scan_runs_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(
        app, ["bench", "scan", "--shapes", "1x70x9x4", "--repeats", "2", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    variants = {row["variant"] for row in report["rows"]}
    assert {"reference", "cpu"} <= variants
    assert any(v.startswith("cpu, ") and v.endswith("% dead") for v in variants)
    reference = next(row for row in report["rows"] if row["variant"] == "reference")
    assert reference["vs_reference"] == 1.0
    assert all(row["median_ms"] > 0 for row in report["rows"])
    assert "device" in report["environment"] and "x reference" in result.output


def test_bench_scan_bad_backend_is_one_line():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "autohm",
            "bench",
            "scan",
            "--shapes",
            "1x4x4x2",
            "--backends",
            "warp",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: --backends: 'warp' does not run on cpu; usable there: ")
    assert "cpu" in lines[0].split("usable there: ")[1]
