"""The trial pipeline end to end on a tiny model and task: every metric present, deterministic
for a seed, clean failures and early stops, and FLOPs equal to a hand computation."""

import json
import math

import pytest
import torch
from helpers import randomise_, tiny_config, tiny_config_for_trials, tiny_workload

from autohm import memory
from autohm.deploy import compact
from autohm.errors import AutohmError
from autohm.masking import attach_masks
from autohm.masking.masks import mixers
from autohm.measure import analytic_flops, count_flops, dense_and_effective_flops
from autohm.model import MambaClassifier
from autohm.peft import load_adapter
from autohm.runs import BASELINES, baseline_config
from autohm.training import EVAL_ACTIVATION, EVAL_BATCH, accuracy, evaluation_batch
from autohm.trial import TrialFailed, TrialPruned, run_trial

METRIC_KEYS = {
    "accuracy", "test_accuracy", "flops", "flops_sparse", "flops_dense", "flops_convention",
    "channels", "states", "params", "params_masked", "params_total", "latency", "latency_ms",
    "latency_iqr_ms", "latency_dense_ms", "latency_batch", "latency_seq_len", "device",
    "allocation", "sparsity", "scan_order", "timings", "task", "model",
}  # fmt: skip


def test_a_trial_runs_end_to_end_and_saves_its_artefacts(tmp_path):
    reports = []
    result = run_trial(
        tiny_config_for_trials(), tiny_workload(), test=True,
        report=lambda step, accuracy, costs: reports.append((step, costs())) or False,
    )  # fmt: skip
    metrics = result.outcome.stored()
    assert metrics.keys() >= METRIC_KEYS
    # step 0 comes right after mask learning; the costs a stop rule weighs mid-training are
    # the ones measured at the end
    costs = {"flops": metrics["flops"], "params": metrics["params"]}
    assert reports == [(0, costs), (3, costs)]
    assert 0 <= metrics["accuracy"] <= 1 and 0 <= metrics["test_accuracy"] <= 1
    assert metrics["flops_sparse"] <= metrics["flops"] <= metrics["flops_dense"]
    assert metrics["flops"] == count_flops(result.deployed, seq_len=12).total
    assert metrics["channels"] == [m.d_inner for m in mixers(result.deployed)]
    assert 0 < metrics["params"] < metrics["params_total"]
    assert {a["method"] for a in metrics["allocation"].values()} == {"lora", "ia3", "frozen"}
    adapters = sum(a["params"] for a in metrics["allocation"].values())
    head = sum(p.numel() for p in result.model.score.parameters())
    assert adapters + head == metrics["params"] + metrics["params_masked"]
    order = metrics["scan_order"]
    assert order["path_cost_after"] <= order["path_cost_before"] + 1e-9
    assert math.isfinite(metrics["latency"]) and metrics["latency"] > 0
    saved = {p.name for p in result.save(tmp_path)}
    assert {"metrics.json", "config.yaml", "order.json", "adapter.safetensors"} <= saved
    assert "masks.safetensors" in saved


def test_latency_is_the_compact_model_beside_the_dense_base_at_the_deployment_shape():
    """latency is the ratio of the compact model's time to the dense base classifier's, timed
    in turns at the workload's deployment shape; both medians and the shape are recorded."""
    workload = tiny_workload(latency_batch=3, latency_seq_len=5)
    state = torch.random.get_rng_state()
    reference = workload.latency_reference
    assert torch.equal(torch.random.get_rng_state(), state)  # building it draws nothing
    assert workload.latency_reference is reference
    assert workload.latency_inputs().shape == (3, 5)
    metrics = run_trial(tiny_config_for_trials(), workload).outcome.stored()
    device = metrics["device"]
    assert (metrics["latency_batch"], metrics["latency_seq_len"]) == (3, 5)
    assert (device["batch"], device["seq_len"]) == (3, 5)
    assert metrics["latency"] == device["relative"] and 0 < metrics["latency"] < 10
    assert metrics["latency_ms"] == device["median_ms"]
    assert metrics["latency_dense_ms"] == device["reference_median_ms"]
    assert tiny_workload().deployment_seq_len == 12  # default: the task's length


@pytest.mark.parametrize("shape", [{"latency_batch": 0}, {"latency_seq_len": 0},
                                   {"latency_seq_len": -1},
                                   {"latency_batch": 2.5}, {"latency_batch": 10**9}])  # fmt: skip
def test_a_bad_deployment_shape_is_refused_before_any_work(shape):
    with pytest.raises(AutohmError, match="latency"):
        tiny_workload(**shape)


def test_the_same_seed_gives_the_same_metrics():
    workload = tiny_workload()
    runs = [run_trial(tiny_config_for_trials(), workload, latency=False) for _ in range(2)]
    keep = ("accuracy", "flops", "flops_dense", "params", "params_masked", "allocation", "sparsity")
    first, second = ({k: r.outcome.stored()[k] for k in keep} for r in runs)
    assert first == second
    assert runs[0].orders == runs[1].orders


def test_a_non_finite_loss_fails_the_trial_cleanly():
    workload = tiny_workload()
    with torch.no_grad():
        workload.base.backbone.embedding.weight[0, 0] = float("nan")
    with pytest.raises(TrialFailed, match="non-finite calibration statistics"):
        run_trial(tiny_config_for_trials(), workload, latency=False)
    no_order = tiny_config_for_trials(scan_order={"method": "identity"})
    with pytest.raises(TrialFailed, match="non-finite loss .* at mask learning step 0"):
        run_trial(no_order, workload, latency=False)


def test_the_report_callback_stops_a_trial_early():
    with pytest.raises(TrialPruned) as stopped:
        run_trial(tiny_config_for_trials(), tiny_workload(), report=lambda *progress: True)
    assert stopped.value.step == 0  # right after mask learning, before any fine-tuning step
    assert str(stopped.value).startswith("stopped early after mask learning (validation accuracy")

    def stop_after_fine_tuning_began(step: int, *progress) -> bool:
        return step > 0

    with pytest.raises(TrialPruned) as stopped:
        run_trial(tiny_config_for_trials(), tiny_workload(), report=stop_after_fine_tuning_began)
    assert stopped.value.step == 3


def test_without_masks_the_first_fidelity_step_is_a_fine_tuning_step():
    """Step 0 is reported only after mask learning, which trains the head; without masks
    the head is still untrained there and its accuracy would say nothing."""
    steps = []
    config = tiny_config_for_trials(masking={"enabled": False})
    run_trial(config, tiny_workload(), latency=False,
              report=lambda step, *progress: steps.append(step) or False)  # fmt: skip
    assert steps == [3]


def test_effective_flops_drop_by_the_hand_computed_path_of_a_dead_channel():
    # d_model 16, d_inner 32, d_state 4, dt_rank 1, d_conv 4; one sequence of 8 tokens
    model = randomise_(MambaClassifier(tiny_config(), num_labels=3)).eval()
    masks = attach_masks(model, ["in_proj.x", "in_proj.z", "x_proj.dt", "x_proj.B", "x_proj.C",
                                 "dt_proj", "out_proj", "conv1d"], layers=[0])  # fmt: skip
    with torch.no_grad():
        masks[0].logits["channel"][7] = -1.0
    dense, effective = dense_and_effective_flops(model, seq_len=8)
    assert dense.total == sum(analytic_flops(tiny_config(), 8, num_labels=3).values())
    saved = {
        "in_proj": 2 * 16 * 8,  # the channel's x and z rows over 8 tokens
        "conv1d": 4 * (8 + 3),  # 4 taps over the 11 outputs nn.Conv1d computes
        "": 8,  # its SiLU
        "x_proj": (1 + 2 * 4) * 8,  # its column in the dt, B and C rows
        "dt_proj": 1 * 8,
        "selective_scan": 5 * 8 * 4 + 5 * 8,  # 5 per state entry, 5 per step
        "out_proj": 16 * 8,
    }
    for key, value in saved.items():
        name = "backbone.layers.0.mixer" + (f".{key}" if key else "")
        assert dense.by_module[name] - effective.by_module[name] == value, key
    assert dense.total - effective.total == sum(saved.values()) == 716


def test_compact_flops_drop_by_the_whole_path_of_a_removed_channel():
    """The objective counts the compact model: removing channel 7 of layer 0 saves its path
    (as above) and its row of A = -exp(A_log) (2 * d_state), nothing more."""
    model = randomise_(MambaClassifier(tiny_config(), num_labels=3)).eval()
    masks = attach_masks(model, ["in_proj.x", "in_proj.z", "out_proj"], layers=[0])
    with torch.no_grad():
        masks[0].logits["channel"][7] = -1.0
    dense = sum(analytic_flops(tiny_config(), 8, num_labels=3).values())
    small = compact(model)
    assert small.config.layer_d_inner == [31, 32]
    assert dense - count_flops(small, seq_len=8).total == 716 + 2 * 4


@pytest.mark.parametrize("mode", BASELINES)
def test_every_baseline_runs_and_is_measured(mode):
    """full and head have no adapted projections (no masks, no adapters): plain nn.Linear."""
    metrics = run_trial(
        baseline_config(mode, tiny_config_for_trials()), tiny_workload()
    ).outcome.stored()
    assert metrics["flops"] == metrics["flops_dense"] and metrics["latency"] > 0
    adapters = sum(entry["params"] for entry in metrics["allocation"].values())
    assert (adapters == 0) == (mode in ("full", "head"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_the_compact_model_is_timed_there_with_its_kernels():
    result = run_trial(tiny_config_for_trials(), tiny_workload(latency_batch=4))
    device = result.outcome.stored()["device"]
    assert device["device"].startswith("cuda") and device["scan_backend"] in ("triton", "mamba_ssm")
    assert next(result.deployed.parameters()).device.type == "cpu"  # handed back on the CPU


@torch.no_grad()
def test_a_trained_trial_is_rebuilt_from_its_files(tmp_path):
    """load_adapter applies the saved channel order itself: the base classifier with the
    trial's files computes the trained model's outputs."""
    workload = tiny_workload()
    with torch.enable_grad():
        result = run_trial(tiny_config_for_trials(), workload, latency=False)
    result.save(tmp_path)
    assert any(
        order != sorted(order) for order in json.loads((tmp_path / "order.json").read_text())
    )
    rebuilt = workload.new_classifier()
    load_adapter(rebuilt, tmp_path)
    ids, mask, _ = workload.task.validation[:8]
    expected = result.model.eval()(ids, mask)
    torch.testing.assert_close(rebuilt.eval()(ids, mask), expected, rtol=0, atol=1e-6)


def test_evaluation_batches_shrink_for_wide_models_and_give_the_same_accuracy():
    """256 sequences per forward, fewer where one layer's activations would pass
    EVAL_ACTIVATION elements (mamba-130m's d_inner of 1536 at 64 tokens: 85)."""
    wide = MambaClassifier(tiny_config(d_model=768, n_layer=1), num_labels=3)
    assert evaluation_batch(wide, 64) == EVAL_ACTIVATION // (64 * 1536) == 85
    small = MambaClassifier(tiny_config(), num_labels=3)
    assert evaluation_batch(small, 64) == EVAL_BATCH == 256
    split = tiny_workload().task.validation
    assert accuracy(small, split) == accuracy(small, split, batch_size=3)


def test_a_trial_that_cannot_fit_in_memory_fails_before_it_allocates(monkeypatch):
    """One line saying what the trial needs, what there is and what to lower."""
    monkeypatch.setattr(memory, "available_bytes", lambda: 2**10)
    workload = tiny_workload()
    with pytest.raises(TrialFailed, match=r"train.batch_size 8 x \d+ tokens needs about .* GiB"):
        run_trial(tiny_config_for_trials(train={"batch_size": 8}), workload, latency=False)
    config = workload.base.config
    assert memory.trial_bytes(config, 8, 16) > memory.trial_bytes(config, 4, 16)
    assert memory.trial_bytes(config, 4, 16) > 4 * memory.weight_bytes(config)


def test_a_search_stores_no_whole_model_for_full_fine_tuning(tmp_path):
    config = tiny_config_for_trials(peft={"mode": "full"}, masking={"enabled": False})
    result = run_trial(config, tiny_workload(), latency=False)
    lean = {path.name for path in result.save(tmp_path / "lean", lean=True)}
    assert lean == {"metrics.json", "config.yaml", "order.json", "WEIGHTS.txt"}
    assert "autohm train" in (tmp_path / "lean" / "WEIGHTS.txt").read_text()
    assert "adapter.safetensors" in {path.name for path in result.save(tmp_path / "all")}
