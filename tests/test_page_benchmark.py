"""The benchmark page, driven by Streamlit's AppTest: start a tiny benchmark, read the results."""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from mmcrl_core import benchmark_jobs as bj

REPO_ROOT = Path(__file__).resolve().parent.parent
PAGE = str(REPO_ROOT / "pages" / "benchmark.py")
PAGE_TO_CSV = {"MCC (Pearson)": "mcc", "MCC (Spearman)": "mcc_spearman", "R²": "r2", "SHD": "shd",
               "cross-modal F1": "cross_f1"}


def _page() -> AppTest:
    return AppTest.from_file(PAGE, default_timeout=60).run()


def _no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _results_table(at: AppTest) -> pd.DataFrame | None:
    for frame in at.dataframe:
        if "MCC (Pearson)" in frame.value.columns:
            return frame.value
    return None


def _start(at: AppTest, setting: str, methods: list[str]) -> AppTest:
    at.selectbox(key="bench_setting").set_value(setting)
    at.multiselect(key="bench_methods").set_value(methods)
    at.button(key="bench_run").click().run()
    _no_errors(at)
    return at


def _wait_for_table(at: AppTest, timeout: float = 240) -> pd.DataFrame:
    deadline = time.monotonic() + timeout
    while True:
        at.run()
        _no_errors(at)
        table = _results_table(at)
        if table is not None and not bj.list_benchmarks()[0].is_active:
            return table
        failed = [e.value for e in at.error]
        assert not failed, failed
        assert time.monotonic() < deadline, "the benchmark did not finish in time"
        time.sleep(1)


def test_empty_workspace_invites_a_first_benchmark(workspace):
    at = _page()
    _no_errors(at)
    assert any("No benchmark yet" in i.value for i in at.info)
    assert at.selectbox(key="bench_setting").value == "tiny"


def test_custom_settings_are_checked_and_submitted(workspace):
    at = _page()
    at.radio(key="bench_mode").set_value("Custom").run()
    at.number_input(key="bench_latents").set_value(4)
    at.number_input(key="bench_nuisance").set_value(3)
    at.number_input(key="bench_obs_dim").set_value(5).run()
    assert any("cannot be simulated" in e.value and "obs_dim 5" in e.value for e in at.error)
    assert at.button(key="bench_run").disabled

    at.number_input(key="bench_obs_dim").set_value(12)
    at.selectbox(key="bench_cycles").set_value("across")
    at.text_input(key="bench_name").set_value("wide-cycles")
    at.multiselect(key="bench_methods").set_value(["mmcrl"]).run()
    assert not at.error and not at.button(key="bench_run").disabled
    at.button(key="bench_run").click().run()
    _no_errors(at)
    runs = bj.list_benchmarks()
    try:
        assert len(runs) == 1
        request = bj.request_of(runs[0])
        assert request.custom.name == "wide-cycles" and request.custom.cyclic == "across"
        assert (request.custom.latents, request.custom.nuisance, request.custom.obs_dim) == (4, 3, 12)
        assert request.methods == ["mmcrl"]
    finally:
        bj.cancel_benchmark(runs[0].id)


@pytest.mark.slow
def test_tiny_benchmark_end_to_end(workspace):
    at = _start(_page(), "tiny", ["mmcrl", "pca"])
    table = _wait_for_table(at)
    run = bj.list_benchmarks()[0]
    assert run.status == "succeeded", run.error
    assert table["method"].tolist() == ["mmcrl", "pca"]
    csv = bj.read_results(run).set_index("method")
    for heading, column in PAGE_TO_CSV.items():
        for method, value in zip(table["method"], table[heading]):
            assert value == pytest.approx(float(csv.loc[method, column]), rel=1e-12)
    assert table["MCC (Pearson)"].between(0, 1).all() and table["R²"].le(1).all()
    # side-by-side graphs and one scatter per true latent
    charts = at.get("plotly_chart")
    assert len(charts) == 3
    assert any("≙" in c.value for c in at.caption)  # learned nodes carry their matched true names
    at.selectbox(key="bench_cmp_method").set_value("pca").run()
    _no_errors(at)
    assert len(at.get("plotly_chart")) == 3


@pytest.mark.slow
def test_page_numbers_equal_the_command_line_for_the_same_setting_and_seed(workspace, tmp_path):
    at = _start(_page(), "tiny", ["pca", "ica"])
    table = _wait_for_table(at)
    command = shlex.split(at.code[0].value)  # the command the page shows to repeat the benchmark
    assert command[:4] == ["python", "-m", "mmcrl_core", "benchmark"]
    command[command.index("--out") + 1] = str(tmp_path / "cli")
    subprocess.run([sys.executable, *command[1:]], cwd=REPO_ROOT, check=True, capture_output=True, timeout=300)
    cli = pd.read_csv(tmp_path / "cli" / "results.csv").set_index("method")
    assert table["method"].tolist() == cli.index.tolist()
    for heading, column in PAGE_TO_CSV.items():
        assert table[heading].tolist() == cli[column].astype(float).tolist()
    # the latents and graphs the page draws are the files the command writes, byte for byte
    job = Path(bj.list_benchmarks()[0].out_dir) / "estimates" / "tiny" / "0"
    again = tmp_path / "cli" / "estimates" / "tiny" / "0"
    for name in ["truth", "pca", "ica"]:
        for file in ["latents.csv", "adjacency.csv"]:
            assert (job / name / file).read_bytes() == (again / name / file).read_bytes(), (name, file)


def _command_line_folder(workspace) -> tuple[Path, pd.DataFrame]:
    """A results folder as `python -m mmcrl_core benchmark` leaves it, plus saved artefacts."""
    import numpy as np

    from mmcrl_core import benchmark_artifacts as art
    from mmcrl_core.simulate import simulate

    folder = workspace.benchmarks_dir / "from-cli"
    folder.mkdir(parents=True)
    sim = simulate("tiny", seed=0, n=300)
    rng = np.random.default_rng(1)
    names = list(sim.latents.columns)
    swapped = [names[1], names[0], *names[2:]]  # the estimate names modality m1's latents the other way round
    estimate = sim.latents[swapped].set_axis(names, axis=1) + 0.1 * rng.normal(size=sim.latents.shape)
    learned = sim.adjacency.loc[swapped, swapped].set_axis(names, axis=0).set_axis(names, axis=1)
    art.save_truth(folder, "tiny", 0, sim.latents, sim.adjacency)
    art.save_method(folder, "tiny", 0, "pca", estimate, learned)
    art.save_method(folder, "tiny", 0, "ica", estimate)  # no graph saved
    results = pd.DataFrame({
        "setting": "tiny", "method": ["pca", "ica"], "seed": 0, "mcc": [0.91234567891, 0.5],
        "mcc_spearman": [0.9, 0.4], "r2": [0.8, 0.3], "shd": [0, 3], "cross_f1": [1.0, 0.25], "seconds": 1.0,
        "cross_f1_all_edges_ref": 0.5,
    })
    results.to_csv(folder / "results.csv", index=False)
    return folder, results


def test_command_line_results_are_listed_and_drawn(workspace):
    _, results = _command_line_folder(workspace)
    at = _page()
    _no_errors(at)
    assert at.selectbox(key="bench_selected").value == "from-cli"
    table = _results_table(at)
    assert table["method"].tolist() == ["pca", "ica"]
    assert table["MCC (Pearson)"].tolist() == results["mcc"].tolist()
    assert table["cross-modal F1"].tolist() == results["cross_f1"].tolist()
    assert len(at.get("plotly_chart")) == 3
    # the learned graph is the truth after matching: every edge correct, none missed or spurious
    summary = next(c.value for c in at.caption if "≙" in c.value)
    assert "0 missed, 0 spurious, 0 reversed" in summary and "0 correct" not in summary, summary
    at.selectbox(key="bench_cmp_method").set_value("ica").run()
    _no_errors(at)
    assert any("learns no graph" in i.value for i in at.info)
    assert len(at.get("plotly_chart")) == 2  # the true graph and the scatter plots
