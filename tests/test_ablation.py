"""The ablation: the factorial analysis recovers known effects on synthetic numbers, and a tiny
ablation runs end to end and writes its table, report and plots."""

from itertools import product

import numpy as np
import pandas as pd
import pytest

from autohm.ablation.factorial import effects_of_means, factorial_effects


def synthetic_runs(seeds: int = 4, noise: float = 0.0) -> pd.DataFrame:
    """y = 1 + 0.5 order + 0.2 masks - 0.1 peft + 0.3 order*masks + 0.25 order*masks*peft."""
    rng = np.random.default_rng(0)
    rows = []
    for order, masks, peft in product((-1, 1), repeat=3):
        for _ in range(seeds):
            y = 1 + 0.5 * order + 0.2 * masks - 0.1 * peft + 0.3 * order * masks
            y += 0.25 * order * masks * peft + noise * rng.normal()
            rows.append({"order": order, "masks": masks, "peft": peft, "accuracy": y})
    return pd.DataFrame(rows)


def test_effects_are_twice_the_model_coefficients():
    table = factorial_effects(synthetic_runs(), "accuracy", bootstrap=50)
    effects = dict(zip(table["effect"], table["estimate"], strict=True))
    expected = {
        "order": 1.0, "masks": 0.4, "peft": -0.2, "order x masks": 0.6, "order x peft": 0.0,
        "masks x peft": 0.0, "order x masks x peft": 0.5,
    }  # fmt: skip
    assert effects == pytest.approx(expected, abs=1e-12)
    # without noise every bootstrap resample is the same: zero-width intervals
    assert np.allclose(table["low"], table["high"])


def test_bootstrap_intervals_have_the_width_of_the_sampling_error():
    noise, runs = 0.05, synthetic_runs(seeds=8, noise=0.05)
    table = factorial_effects(runs, "accuracy", bootstrap=1000).set_index("effect")
    standard_error = 2 * noise / np.sqrt(len(runs))  # of a contrast of two halves of the runs
    truth = {"order x masks x peft": 0.5, "order x peft": 0.0, "order": 1.0}
    for name, value in truth.items():
        row = table.loc[name]
        assert abs(row["estimate"] - value) < 4 * standard_error
        half_width = (row["high"] - row["low"]) / 2
        assert 0.5 < half_width / (1.96 * standard_error) < 1.5


def test_an_incomplete_factorial_is_an_error():
    with pytest.raises(ValueError, match="incomplete"):
        effects_of_means({(1, 1, 1): 1.0})


def test_a_tiny_ablation_runs_end_to_end_and_writes_its_report(tmp_path):
    from test_trial import tiny_config_for_trials, tiny_workload

    from autohm.ablation import ablate, write_report

    runs, notes = ablate(tiny_config_for_trials(), tiny_workload(), seeds=[0, 1])
    factorial = runs[runs["group"] == "factorial"]
    cells = factorial.groupby(["order", "masks", "peft"]).size()
    assert len(cells) == 8 and (cells == 2).all()
    assert notes["peft_reference"] in ("lora", "ia3") and notes["matched_lora_rank"] >= 1
    assert notes["order_can_matter"]  # the tiny configuration uses block masks
    assert {"solver=identity", "granularity=channel"} <= set(runs["variant"])
    files = write_report(runs, notes, tmp_path)
    report = files["markdown"].read_text()
    assert "order x masks x peft" in report and "±" in report
    assert files["bars"].stat().st_size > 10_000


def test_the_command_needs_exactly_one_source_of_configuration(tmp_path):
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-m", "autohm", "ablate", "--out", str(tmp_path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 2
    assert run.stderr.strip() == "error: give either --config FILE or --study NAME (with --storage)"
