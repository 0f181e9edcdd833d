"""The Streamlit app (autohm.app) and the views of a study behind it: rendered with
streamlit.testing on a real quick-space study, on studies built with a stand-in for training
(baselines, failures, constraints, early stops, an ablation report), on an empty study and a
failed-only one; widget interactions; the download bytes; 10,000 trials; `autohm app` itself
in headless Chromium."""

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from browser import Browser, chromium
from fake_trials import FakeRunner, FakeWorkload, fake_metrics
from optuna.trial import TrialState
from streamlit.testing.v1 import AppTest

from autohm import results
from autohm.app import figures, trial_page, trials_page, views
from autohm.config import TrialConfig
from autohm.errors import AutohmError
from autohm.export import export_trial
from autohm.objectives import DIRECTIONS, OBJECTIVES, front_mask, pareto_mask
from autohm.search.space import load_space
from autohm.search.study import SearchSettings, run_search
from autohm.storage import existing_study

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "autohm" / "app" / "streamlit_app.py"  # the script `autohm app` runs
optuna.logging.set_verbosity(optuna.logging.ERROR)


# ---- studies -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def real_study(tmp_path_factory):
    """A real quick-space search of two trials on the built-in digits task."""
    out = tmp_path_factory.mktemp("real")
    settings = SearchSettings(budget=2, space=load_space("quick"), out=out, heartbeat_s=None)
    study = run_search(settings)
    return f"sqlite:///{out / 'autohm.db'}", study.study_name


ABLATION = {
    "summary": [
        {"variant": name, "group": group, **{f"{m}_mean": v * scale for m, v in base.items()},
         **{f"{m}_std": 0.01 * v for m, v in base.items()}, "seeds": 2}
        for (name, group, scale) in [("all three", "factorial", 1.0), ("none", "factorial", 0.9),
                                     ("order: two_opt", "solver", 1.02)]
        for base in [{"accuracy": 0.8, "flops": 8e5, "params": 3000, "latency": 1.2,
                      "efficiency": 3e-10}]
    ],
    "effects": [
        {"metric": "accuracy", "effect": effect, "estimate": estimate, "low": estimate - 0.02,
         "high": estimate + 0.02}
        for effect, estimate in [("order", 0.001), ("masks", -0.03), ("peft", 0.05),
                                 ("order x masks x peft", 0.004)]
    ],
    "notes": ["The scan order cannot matter here: without block masks ..."],
    "runs": [],
}  # fmt: skip


@pytest.fixture(scope="module")
def fake_study(tmp_path_factory):
    """A quick-space study run with a stand-in for training: the warm start and baselines, a
    failure, early stops, a parameter constraint, and an ablation report."""
    out = tmp_path_factory.mktemp("fake")
    settings = SearchSettings(budget=16, space=load_space("quick"), out=out, heartbeat_s=None,
                              baselines=True, max_params=1500, prune_min_trials=8,
                              sampler="random")  # fmt: skip
    study = run_search(settings, workload=FakeWorkload(), runner=FakeRunner(fail_on=[6]))
    study.set_user_attr("ablation", ABLATION)
    return f"sqlite:///{out / 'autohm.db'}", study.study_name


@pytest.fixture(scope="module")
def baselines_file(tmp_path_factory):
    """baselines.json as `autohm baselines` writes it."""
    rows = [
        {"baseline": mode, "accuracy": accuracy, "test_accuracy": accuracy, "flops": 1e6,
         "flops_dense": 1e6, "params": params, "params_masked": 0, "params_total": 20000,
         "latency": latency, "latency_ms": 10 * latency, "latency_iqr_ms": 0.05}
        for mode, accuracy, params, latency in [
            ("full", 0.82, 20000, 1.6), ("head", 0.45, 500, 1.0), ("lora", 0.7, 4000, 1.5),
            ("ia3", 0.6, 900, 1.1),
        ]
    ]  # fmt: skip
    path = tmp_path_factory.mktemp("baselines") / "baselines.json"
    path.write_text(json.dumps(rows))
    return path


def _storage(tmp_path, name="s.db"):
    return f"sqlite:///{tmp_path / name}"


def _run(monkeypatch, storage, study=None, baselines=None, view=None) -> AppTest:
    """The app on `storage` as `autohm app` starts it (through the environment)."""
    monkeypatch.setenv("AUTOHM_STORAGE", storage)
    for name, value in (("AUTOHM_STUDY", study), ("AUTOHM_BASELINES", baselines)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, str(value))
    page = AppTest.from_file(str(APP), default_timeout=120)
    if view is not None:
        page.session_state["view"] = view
    return _rerun(page)


def _rerun(page: AppTest) -> AppTest:
    page.run()
    assert not page.exception, [e.message for e in page.exception]
    return page


def _charts(page: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in page.get("plotly_chart")]


def _trace_names(page: AppTest, charts: slice = slice(None)) -> set[str]:
    return {trace.get("name") for chart in _charts(page)[charts] for trace in chart["data"]}


def _view(page: AppTest, view: str) -> AppTest:
    page.session_state["view"] = view
    return _rerun(page)


# ---- the app on a real study ---------------------------------------------------------------


def test_the_app_renders_a_real_quick_study(monkeypatch, real_study):
    storage, name = real_study
    page = _run(monkeypatch, storage)
    assert page.title[0].value == f"autohm · {name}"
    assert [tab.label for tab in page.tabs] == ["Pareto front", "Progress", "Trials", "Trial"]
    metrics = {metric.label: metric.value for metric in page.metric}
    assert metrics["trials"] == "2" and metrics["complete"] == "2"
    charts = _charts(page)
    assert len(charts) == 4  # two 2-D fronts, the 3-D view, the scatter matrix
    assert "Pareto front (4 objectives)" in _trace_names(page)
    front = next(t for t in charts[0]["data"] if t["name"] == "Pareto front (4 objectives)")
    assert all("solver" in text and "tau" in text for text in front["hovertext"])
    _view(page, "Progress")
    assert len(page.get("plotly_chart")) == 2  # hypervolume, objectives over time
    _view(page, "Trials")
    assert len(page.dataframe) == 1
    assert page.get("download_button")[0].proto.label == "Download the table (CSV)"
    _view(page, "Trial")
    download = page.get("download_button")[0].proto
    assert download.label == "Download the configuration (YAML)" and not download.disabled
    assert len(page.get("plotly_chart")) >= 3  # allocation, masks or scan cost, timings
    assert "device_name" in page.dataframe[0].value.iloc[:, 0].tolist()


def test_the_yaml_download_is_the_file_autohm_export_writes(real_study, tmp_path):
    storage, name = real_study
    study = existing_study(storage, name)
    for trial in study.get_trials(states=[TrialState.COMPLETE]):
        path, _ = export_trial(study, f"trial:{trial.number}", tmp_path / "export.yaml")
        data = trial_page.config_yaml(storage, name, trial.number)
        assert data == path.read_bytes()
        assert yaml.safe_load(data)["source"]["trial"] == trial.number
        assert TrialConfig.load(path) == TrialConfig.from_dict(trial.user_attrs["config"])


def test_a_trial_s_measurements_as_tables(real_study):
    snapshot = views.snapshot(*real_study)
    row = snapshot.outcomes[int(snapshot.table.iloc[0]["number"])]
    grid = views.allocation(row)
    assert set(grid["method"]) <= {"lora", "ia3", "frozen"} and len(grid) == 2 * 4  # 2 layers
    phases = {"scan order", "masks", "fine tune", "evaluation", "measure"}
    assert set(views.timings(row)["phase"]) == phases
    assert views.latency_record(row)["device"] == "cpu"
    masks = views.sparsity(row)
    assert masks.empty or masks["sparsity"].between(0, 1).all()
    costs = views.scan_costs(row)
    assert costs.empty or (costs["after"] <= costs["before"] + 1e-9).all()


# ---- studies built with a stand-in for training ---------------------------------------------


def test_the_app_shows_baselines_failures_constraints_and_the_ablation(
    monkeypatch, fake_study, baselines_file
):
    storage, name = fake_study
    page = _run(monkeypatch, storage, name, baselines_file)
    names = _trace_names(page)
    assert {"baselines", "ablation variants", "infeasible (constraint)"} <= names
    baselines = next(t for t in _charts(page)[0]["data"] if t["name"] == "baselines")
    labels = ", ".join(baselines["text"])
    assert all(name in labels for name in ("full fine-tuning", "linear probe", "LoRA-only",
                                           "IA3-only"))  # fmt: skip
    assert [tab.label for tab in page.tabs][-1] == "Ablation"
    _view(page, "Ablation")
    assert page.dataframe[0].value["accuracy"].iloc[0] == "0.8 ± 0.008"
    assert "cannot matter" in page.markdown[-1].value
    _view(page, "Trial")
    failed = next(t.number for t in existing_study(storage, name).trials
                  if t.state == TrialState.FAIL and "fail_reason" in t.user_attrs)  # fmt: skip
    page.selectbox(key="w.trial").set_value(failed)
    _rerun(page)
    assert "non-finite loss" in page.error[0].value
    assert page.get("download_button")[0].proto.disabled


def test_widget_interactions_rerun_cleanly(monkeypatch, fake_study):
    storage, name = fake_study
    page = _run(monkeypatch, storage, name)
    page.selectbox(key="w.x0").set_value("latency")
    page.selectbox(key="w.y1").set_value("flops")
    page.selectbox(key="w.colour").set_value("choice.solver")
    _rerun(page)
    assert {"identity", "nearest_neighbor", "two_opt"} & _trace_names(page)
    page.selectbox(key="w.colour").set_value("cfg.train.lr")  # numeric: a colour scale
    page.selectbox(key="w.facet").set_value("choice.mode")
    page.checkbox(key="w.dominated").uncheck()
    _rerun(page)
    assert "dominated" not in _trace_names(page, slice(0, 2))  # the 2-D fronts
    accuracy = page.slider(key=f"{name}:accuracy")
    low, high = accuracy.value
    accuracy.set_range(low, (low + high) / 2)
    page.multiselect(key=f"{name}:state").set_value(["COMPLETE"])
    _rerun(page)
    _view(page, "Trials")
    shown = page.dataframe[0].value
    assert (shown["state"] == "COMPLETE").all() and shown["accuracy"].max() <= (low + high) / 2
    page.toggle(key=f"{name}:pareto_only").set_value(True)
    page.toggle(key="w.all_columns").set_value(True)
    _rerun(page)
    shown = page.dataframe[0].value
    assert shown["pareto"].all() and "cfg.train.lr" in shown
    for view in ("Progress", "Trial", "Pareto front"):
        _view(page, view)
    assert page.selectbox(key="w.x0").value == "latency"  # kept while another tab was open


def test_the_csv_download_is_the_filtered_table(fake_study):
    snapshot = views.snapshot(*fake_study)
    view = views.filtered(snapshot.table, pareto_only=True)
    lines = trials_page.table_csv(view).decode().splitlines()
    assert len(lines) == 1 + int(snapshot.table["pareto"].sum())
    assert lines[0].split(",")[:3] == ["number", "state", "accuracy"]
    assert "choice.solver" not in lines[0] and "cfg.peft.mode" in lines[0]


def test_an_empty_study_says_so(monkeypatch, tmp_path):
    storage = _storage(tmp_path)
    optuna.create_study(storage=storage, study_name="empty", directions=list(DIRECTIONS))
    page = _run(monkeypatch, storage)
    assert "has no trials yet" in page.info[0].value
    assert not page.get("plotly_chart")


def test_a_study_of_failed_trials_shows_the_reasons(monkeypatch, tmp_path):
    storage = _storage(tmp_path)
    study = optuna.create_study(storage=storage, study_name="failing", directions=list(DIRECTIONS))
    for reason in ("non-finite loss (nan) at fine-tuning step 3", "out of memory"):
        study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL,
                                                  user_attrs={"fail_reason": reason}))  # fmt: skip
    page = _run(monkeypatch, storage)
    assert "No trial of study failing has completed yet (2 fail)" in page.warning[0].value
    assert "out of memory" in page.dataframe[0].value["fail_reason"].tolist()


def test_the_study_picker_lists_every_study_and_refresh_reads_new_trials(monkeypatch, tmp_path):
    storage = _storage(tmp_path)
    for name in ("first", "second"):
        optuna.create_study(storage=storage, study_name=name, directions=list(DIRECTIONS))
    page = _run(monkeypatch, storage, study="second")
    assert page.selectbox(key="study").options == ["first", "second"]
    assert page.selectbox(key="study").value == "second"
    study = optuna.load_study(study_name="second", storage=storage)
    metrics = fake_metrics(TrialConfig())
    study.add_trial(optuna.trial.create_trial(
        values=[metrics[k] for k in OBJECTIVES],
        user_attrs={"config": TrialConfig().model_dump(mode="json"), "metrics": metrics},
    ))  # fmt: skip
    page.button[0].click()  # Refresh
    _rerun(page)
    assert {m.label: m.value for m in page.metric}["complete"] == "1"
    assert len(page.get("plotly_chart")) == 4


def test_a_missing_storage_is_a_message(monkeypatch, tmp_path):
    page = _run(monkeypatch, str(tmp_path / "missing.db"))
    assert "Cannot open the storage" in page.error[0].value and "missing.db" in page.error[0].value


# ---- size ----------------------------------------------------------------------------------


def _many_trials(count: int, seed: int = 0) -> list:
    """`count` completed trials with noisy stand-in metrics over a few varied knobs."""
    rng = np.random.default_rng(seed)
    trials = []
    for number in range(count):
        config = TrialConfig.from_dict({
            "scan_order": {"method": ["identity", "nearest_neighbor", "two_opt"][number % 3]},
            "masking": {"granularity": ["channel", "block"][number % 2],
                        "penalty": {"sparsity": float(rng.uniform(0.2, 0.7))}},
            "peft": {"lora_quantile": float(rng.uniform(0.4, 0.9)), "rank": [2, 4, 8][number % 3]},
        })  # fmt: skip
        metrics = fake_metrics(config)
        metrics |= {k: metrics[k] * rng.uniform(0.9, 1.1) for k in OBJECTIVES}
        trial = optuna.trial.create_trial(
            values=[metrics[k] for k in OBJECTIVES],
            user_attrs={"config": config.model_dump(mode="json"), "metrics": metrics,
                        "hypervolume": number / count},
        )  # fmt: skip
        trial.number = number
        trials.append(trial)
    return trials


def test_ten_thousand_trials_are_read_filtered_and_drawn():
    """The app's path at scale (its time is not asserted: a slow machine is no failure)."""
    trials = _many_trials(10_000)
    configs = {t.number: t.user_attrs["config"] for t in trials}
    table = results.trials_frame(trials)
    table = table.join(views.key_choices(table, configs).add_prefix("choice."))
    table["hover"] = views.hover_text(table)
    view = views.filtered(table, {"accuracy": (0.5, 1.0)}, {"choice.solver": ["two_opt"]})
    style = figures.Style(colour="choice.mode", facet="choice.masks")
    built = [
        figures.pareto_figure(view, "flops", "accuracy", style, views.references(view), None),
        figures.cube_figure(view),
        figures.matrix_figure(view),
        figures.history_figure(view, "number"),
    ]
    assert len(table) == 10_000 and table["pareto"].any() and len(built) == 4
    assert 0 < len(view) < len(table) and set(view["choice.solver"]) == {"two_opt"}


def test_the_chunked_front_is_the_front():
    rng = np.random.default_rng(1)
    for points in (rng.random((3000, 4)), np.repeat(rng.random((400, 3)), 3, axis=0)):
        assert (front_mask(points, chunk=256) == pareto_mask(points)).all()


def test_the_2d_front_and_the_histories():
    trials = _many_trials(60)
    table = results.trials_frame(trials)
    front = views.front_2d(table, "flops", "accuracy")
    assert front["flops"].is_monotonic_increasing and front["accuracy"].is_monotonic_increasing
    done = table[table["state"] == "COMPLETE"]
    for _, row in done.iterrows():  # nothing beats a front member on both
        beaten = (done["flops"] <= row["flops"]) & (done["accuracy"] >= row["accuracy"])
        beaten &= (done["flops"] < row["flops"]) | (done["accuracy"] > row["accuracy"])
        assert beaten.any() != (row["number"] in set(front["number"]))
    best = views.running_best(table)
    assert best["accuracy"].is_monotonic_increasing and best["flops"].is_monotonic_decreasing
    assert len(views.hypervolume_history(table)) == 60


def test_a_bad_baselines_file_is_one_error(tmp_path):
    path = tmp_path / "baselines.json"
    path.write_text(json.dumps([{"baseline": "full", "accuracy": 0.9}]))
    with pytest.raises(AutohmError, match="no flops, params, latency"):
        views.read_baselines(path)
    with pytest.raises(AutohmError, match="missing.json"):
        views.read_baselines(tmp_path / "missing.json")


# ---- the command and a real browser ----------------------------------------------------------


def _autohm(*args):
    command = [sys.executable, "-m", "autohm", *args]
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120)


def test_autohm_app_refuses_a_missing_storage_or_study(tmp_path, fake_study):
    missing = _autohm("app", "--storage", str(tmp_path / "none.db"))
    assert missing.returncode == 2 and "error:" in missing.stderr and "none.db" in missing.stderr
    unknown = _autohm("app", "--storage", fake_study[0], "--study", "nope")
    assert unknown.returncode == 2 and "no study 'nope'" in unknown.stderr
    no_file = _autohm("app", "--storage", fake_study[0], "--baselines", str(tmp_path / "b.json"))
    assert no_file.returncode == 2 and "baselines file" in no_file.stderr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return reply.read()


def _wait_healthy(url: str, server: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, f"autohm app ended (exit status {server.returncode})"
        try:
            if _fetch(f"{url}/_stcore/health").strip() == b"ok":
                return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} never became healthy")


RENDERED = "document.querySelectorAll('.js-plotly-plot .main-svg').length >= 2"
IDLE = "!document.querySelector('[data-testid=\"stStatusWidget\"]')"
ERRORS = "document.querySelectorAll('[data-testid=\"stException\"], .stException').length"


def _front_pixels(path: Path) -> int:
    """Pixels in the front's marker colour."""
    from PIL import Image

    red, green, blue = (int(figures.FRONT[i : i + 2], 16) for i in (1, 3, 5))
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    close = np.abs(pixels - [red, green, blue]).sum(axis=-1) < 30
    return int(close.sum())


@contextlib.contextmanager
def _serving(*options: str, log: Path):
    """`autohm app OPTIONS` on a free port; its URL once healthy. Stopped afterwards."""
    port = _free_port()
    command = [sys.executable, "-m", "autohm", "app", *options, "--port", str(port)]
    with log.open("w") as output:
        server = subprocess.Popen(command, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                  stdout=output, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        url = f"http://localhost:{port}"
        _wait_healthy(url, server)
        yield url
    finally:
        server.terminate()  # the streamlit server itself: autohm app execs it
        server.wait(timeout=30)


def test_autohm_app_serves_the_page_on_localhost(fake_study, tmp_path):
    with _serving("--storage", fake_study[0], log=tmp_path / "server.log") as url:
        page = _fetch(url)
    assert b"<html" in page.lower()
    assert "autohm app: http://localhost:" in (tmp_path / "server.log").read_text()


@pytest.mark.skipif(chromium() is None, reason="chromium is not installed (apt-get install "
                    "chromium; .ci/run installs it)")  # fmt: skip
def test_autohm_app_renders_the_front_in_headless_chromium(fake_study, baselines_file, tmp_path):
    storage, name = fake_study
    log = tmp_path / "server.log"
    options = ("--storage", storage, "--study", name, "--baselines", str(baselines_file))
    with _serving(*options, log=log) as url, Browser(width=1500, height=1600) as browser:
        browser.open(url)
        rendered = browser.wait_for(RENDERED, timeout=90) and browser.wait_for(IDLE)
        time.sleep(1)  # the last frame
        shot = browser.screenshot(tmp_path / "app.png")
        title = browser.evaluate("document.querySelector('h1') && "
                                 "document.querySelector('h1').innerText")  # fmt: skip
        errors = browser.evaluate(ERRORS)
    keep = os.environ.get("AUTOHM_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        (Path(keep) / "app.png").write_bytes(shot.read_bytes())
    assert rendered, f"no chart rendered; server log:\n{log.read_text()[-2000:]}"
    assert errors == 0 and title == f"autohm · {name}"
    assert _front_pixels(shot) > 100, "the screenshot shows no front markers"
