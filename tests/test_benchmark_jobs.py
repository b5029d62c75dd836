"""Benchmarks as background jobs, and the comparison with the truth the benchmark page draws."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from mmcrl_core import benchmark_artifacts as art
from mmcrl_core import benchmark_jobs as bj
from mmcrl_core.errors import UserInputError
from mmcrl_core.metrics import mcc_by_modality
from mmcrl_core.simulate import SimulationSettings


def _wait(bench_id: str, paths, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while True:
        bj.refresh(paths)
        run = bj.get_benchmark(bench_id, paths)
        if not run.is_active:
            return run
        assert time.monotonic() < deadline, f"benchmark still {run.status}: {bj.log_tail(run)}"
        time.sleep(0.5)


# ----------------------------------------------------------------------------- requests


def test_request_rejects_unknown_setting_and_clashing_custom_names():
    with pytest.raises(ValueError, match="unknown setting"):
        bj.BenchmarkRequest(setting="case99")
    with pytest.raises(ValueError, match="named setting 'case1'"):
        bj.BenchmarkRequest(custom=SimulationSettings(name="case1", modalities=3))
    with pytest.raises(ValueError, match="obs_dim"):
        bj.BenchmarkRequest(custom=SimulationSettings(name="mine", latents=3, nuisance=2, obs_dim=4))
    with pytest.raises(ValueError, match="custom setting name"):
        bj.BenchmarkRequest(custom=SimulationSettings(name="../evil"))


def test_request_validation_names_bad_methods_and_suites():
    with pytest.raises(UserInputError, match="unknown method lda;"):
        bj.validate_request(bj.BenchmarkRequest(methods=["pca", "lda"]))
    with pytest.raises(UserInputError, match="unknown suite"):
        bj.validate_request(bj.BenchmarkRequest(suite="huge"))
    with pytest.raises(UserInputError, match="at least one method"):
        bj.validate_request(bj.BenchmarkRequest(methods=[]))


def test_arguments_are_the_benchmark_command_line(tmp_path):
    named = bj.BenchmarkRequest(setting="case2", seeds=3, methods=["mmcrl", "pca"])
    assert bj.benchmark_arguments(named, tmp_path) == [
        "benchmark", "--suite", "quick", "--setting", "case2", "--seeds", "3",
        "--methods", "mmcrl", "pca", "--save-estimates", "--out", str(tmp_path),
    ]
    # a custom setting goes by value, with the subjects the user chose (the suite would fix them)
    custom = bj.BenchmarkRequest(custom=SimulationSettings(name="wide", modalities=3, n=700), suite="quick")
    args = bj.benchmark_arguments(custom, tmp_path)
    assert args[args.index("--settings-file") + 1] == str(tmp_path / "settings.json")
    assert args[args.index("--n") + 1] == "700"
    assert "--setting" not in args and "--methods" not in args
    assert bj.cli_command(named, tmp_path).startswith("python -m mmcrl_core benchmark --suite quick")


def test_expected_estimates_count_every_results_row():
    from mmcrl_core.benchmark import SUITES

    per_fit = SUITES["quick"].mmcrl_seeds  # mmcrl: each training seed, plus the reported one
    assert bj.expected_estimates(bj.BenchmarkRequest(seeds=2, methods=["mmcrl", "pca"])) == 2 * (per_fit + 2)
    assert bj.expected_estimates(bj.BenchmarkRequest(methods=["pca"])) == 1


# ----------------------------------------------------------------------------- comparing with the truth


def _square(names, edges):
    frame = pd.DataFrame(0, index=pd.Index(names, name="parent"), columns=names)
    for a, b in edges:
        frame.loc[a, b] = 1
    return frame


def test_edge_status_classifies_correct_missed_spurious_and_reversed():
    names = ["a:1", "a:2", "b:1", "b:2"]
    truth = _square(names, [("a:1", "b:1"), ("a:2", "b:2"), ("a:1", "a:2")])
    learned = _square(names, [("a:1", "b:1"), ("b:2", "a:2"), ("a:2", "b:1")])
    status = {(r.source, r.target): r.status for r in art.edge_status(truth, learned).itertuples()}
    assert status == {
        ("a:1", "b:1"): "correct",
        ("b:2", "a:2"): "reversed",  # listed in the learned direction
        ("a:1", "a:2"): "missed",
        ("a:2", "b:1"): "spurious",
    }
    edges = art.edge_status(truth, learned).set_index(["source", "target"])
    assert not edges.loc[("a:1", "a:2"), "cross_modal"] and edges.loc[("a:1", "b:1"), "cross_modal"]


def test_compare_aligns_a_permuted_estimate_to_the_truth():
    rng = np.random.default_rng(0)
    names = ["a:1", "a:2", "b:1"]
    z = pd.DataFrame(rng.normal(size=(500, 3)), columns=names)
    truth = art.Truth(z, _square(names, [("a:1", "b:1")]))
    # the estimate swaps the two latents of modality a and rescales them monotonically
    estimated = pd.DataFrame({"a:1": np.tanh(z["a:2"]), "a:2": -3 * z["a:1"], "b:1": z["b:1"] ** 3}, index=z.index)
    learned = _square(names, [("a:2", "b:1")])  # = true a:1 -> b:1 after matching
    comparison = art.compare(truth, art.MethodArtifacts("x", estimated, learned))
    assert comparison.matching == {"a:1": "a:2", "a:2": "a:1", "b:1": "b:1"}
    assert comparison.matched_corr["a:1"] == pytest.approx(1.0)
    assert comparison.edges[["source", "target", "status"]].values.tolist() == [["a:1", "b:1", "correct"]]
    scatter = art.scatter_frame(truth, art.MethodArtifacts("x", estimated, learned), comparison.matching)
    pair = scatter[scatter["true_latent"] == "a:2"]
    assert set(pair["estimated_latent"]) == {"a:1"} and np.allclose(pair["true"], np.arctanh(pair["estimated"]))


def test_circle_layout_groups_each_modality():
    names = ["m1:1", "m1:2", "m1:3", "m2:1", "m2:2", "m3:1"]
    pos = art.circle_layout(names)
    assert len(set(pos.values())) == len(names)

    def dist(a, b):
        return np.hypot(pos[a][0] - pos[b][0], pos[a][1] - pos[b][1])

    assert dist("m1:1", "m1:2") < dist("m1:1", "m2:1")
    assert dist("m2:1", "m2:2") < dist("m2:1", "m3:1")


def test_results_table_means_over_seeds_and_puts_the_paper_beside_mmcrl():
    rows = []
    for seed, (m_mcc, p_mcc) in enumerate([(0.8, 0.5), (0.9, 0.7)]):
        rows += [
            {"setting": "mod5", "method": "mmcrl", "seed": seed, "mcc": m_mcc, "mcc_spearman": m_mcc, "r2": 0.9,
             "shd": 2 + seed, "cross_f1": 0.5, "seconds": 1.0, "cross_f1_all_edges_ref": 0.3},
            {"setting": "mod5", "method": "mmcrl#1", "seed": seed, "mcc": m_mcc, "mcc_spearman": m_mcc, "r2": 0.9,
             "shd": 2, "cross_f1": 0.5, "seconds": 1.0, "cross_f1_all_edges_ref": 0.3},
            {"setting": "mod5", "method": "pca", "seed": seed, "mcc": p_mcc, "mcc_spearman": p_mcc, "r2": 0.6,
             "shd": 5, "cross_f1": 0.2, "seconds": 0.1, "cross_f1_all_edges_ref": 0.3},
        ]
    table = art.results_table(pd.DataFrame(rows)).set_index("method")
    assert list(table.index) == ["mmcrl", "pca"]
    assert table.loc["mmcrl", "MCC (Pearson)"] == pytest.approx(0.85)
    assert table.loc["pca", "MCC (Pearson)"] == pytest.approx(0.6)
    assert table.loc["mmcrl", "SHD"] == pytest.approx(2.5) and table.loc["mmcrl", "SHD sd"] > 0
    assert table.loc["mmcrl", "paper MCC"] == 0.84 and table.loc["mmcrl", "paper R²"] == 0.89
    assert pd.isna(table.loc["pca", "paper MCC"])
    assert "mmcrl#1" in set(art.results_table(pd.DataFrame(rows), include_training_seeds=True)["method"])
    assert art.all_edges_reference(pd.DataFrame(rows)) == {"mod5": pytest.approx(0.3)}


def test_estimate_writer_keeps_one_truth_per_data_set_and_one_folder_per_row(tmp_path):
    from mmcrl_core.benchmark import ScoredEstimate
    from mmcrl_core.simulate import simulate

    sim = simulate("tiny", seed=3, n=200)
    names = list(sim.latents.columns)
    writer = art.EstimateWriter(tmp_path, max_rows=150)
    graph = _square(names, [(names[0], names[2])])
    for method, latents in [("pca", -sim.latents), ("mmcrl#2", 2 * sim.latents)]:
        writer(ScoredEstimate("tiny", 3, method, latents, graph, sim, {"mcc": 1.0}))
    assert art.available(tmp_path).values.tolist() == [["tiny", 3, "mmcrl_2"], ["tiny", 3, "pca"]]
    truth = art.load_truth(tmp_path, "tiny", 3)
    assert len(truth.latents) == 150 and list(truth.adjacency.index) == names
    assert np.array_equal(truth.adjacency.to_numpy(), sim.adjacency.to_numpy())
    saved = art.load_method(tmp_path, "tiny", 3, "mmcrl#2")
    assert np.allclose(saved.latents.to_numpy(), 2 * sim.latents.iloc[:150].to_numpy(), rtol=1e-5)
    assert saved.adjacency.loc[names[0], names[2]] == 1 and saved.adjacency.to_numpy().sum() == 1
    assert art.load_method(tmp_path, "tiny", 3, "ica") is None and art.load_truth(tmp_path, "tiny", 4) is None
    with pytest.raises(ValueError, match="truth"):
        art.method_dir(tmp_path, "tiny", 3, "truth")


# ----------------------------------------------------------------------------- running for real


@pytest.mark.slow
def test_job_saves_the_latents_and_graphs_behind_its_scores(workspace):
    # equality with the command line itself is checked on the page (tests/test_page_benchmark.py)
    request = bj.BenchmarkRequest(setting="tiny", methods=["pca", "ica"])
    bench_id = bj.submit_benchmark(request, workspace)
    run = _wait(bench_id, workspace)
    assert run.status == "succeeded", run.error
    results = bj.read_results(run)
    assert results["method"].tolist() == ["pca", "ica"] and results["seed"].tolist() == [0, 0]
    truth = art.load_truth(run.out_dir, "tiny", 0)
    for row in results.itertuples():
        saved = art.load_method(run.out_dir, "tiny", 0, row.method)
        assert saved is not None and saved.adjacency is not None
        assert mcc_by_modality(truth.latents, saved.latents).value == pytest.approx(row.mcc, abs=1e-4)
    assert run.metrics["pca"]["mcc"] == pytest.approx(results.set_index("method").loc["pca", "mcc"], abs=1e-4)
    assert bj.read_progress(run).fraction == 1.0
    progress = json.loads((workspace.benchmarks_dir / bench_id / "progress.json").read_text())
    assert progress["done"] == progress["total"] == 2  # the hook counted every results row
    manifest = (workspace.benchmarks_dir / bench_id / "manifest.json").read_text()
    assert "python -m mmcrl_core benchmark --suite quick --setting tiny" in manifest
    assert "--save-estimates" in manifest  # the page draws files the command itself wrote


@pytest.mark.slow
def test_custom_settings_run_under_their_own_name_with_their_own_subjects(workspace):
    custom = SimulationSettings(name="three-mods", modalities=3, latents=1, nuisance=1, obs_dim=4, n=400,
                                cross_edge_prob=0.5)
    bench_id = bj.submit_benchmark(bj.BenchmarkRequest(custom=custom, suite="quick", methods=["pca"]), workspace)
    run = _wait(bench_id, workspace)
    assert run.status == "succeeded", run.error
    results = bj.read_results(run)
    # the quick suite simulates 5,000 subjects for named settings; the custom setting keeps its 400
    assert results["setting"].tolist() == ["three-mods"] and results["n"].tolist() == [400]
    truth = art.load_truth(run.out_dir, "three-mods", 0)
    assert list(truth.latents.columns) == ["m1:1", "m2:1", "m3:1"]
    saved = SimulationSettings.model_validate_json((workspace.benchmarks_dir / bench_id / "settings.json").read_text())
    assert saved == custom


def test_cancel_and_delete(workspace):
    request = bj.BenchmarkRequest(setting="case3", methods=["mmcrl"])  # minutes: it will not finish first
    bench_id = bj.submit_benchmark(request, workspace)
    assert bj.get_benchmark(bench_id, workspace).is_active
    with pytest.raises(UserInputError, match="cancel it before deleting"):
        bj.delete_benchmark(bench_id, workspace)
    bj.cancel_benchmark(bench_id, workspace)
    run = _wait(bench_id, workspace, timeout=60)
    assert run.status == "cancelled"
    assert [r.id for r in bj.list_benchmarks(workspace)] == [bench_id]
    bj.delete_benchmark(bench_id, workspace)
    assert bj.list_benchmarks(workspace) == []
    assert not (workspace.benchmarks_dir / bench_id).exists()


def test_training_run_listings_do_not_show_benchmarks(workspace):
    from mmcrl_core.run_store import list_runs

    bench_id = bj.submit_benchmark(bj.BenchmarkRequest(setting="case3", methods=["mmcrl"]), workspace)
    try:
        assert list_runs(workspace) == []
        assert bj.read_progress(bj.get_benchmark(bench_id, workspace)).fraction < 1
    finally:
        bj.cancel_benchmark(bench_id, workspace)
        _wait(bench_id, workspace, timeout=60)


def test_paper_columns_are_numeric_even_where_the_paper_reports_nothing():
    rows = [{"setting": "tiny", "method": m, "seed": 0, "mcc": 0.9, "mcc_spearman": 0.9, "r2": 0.9, "shd": 2,
             "cross_f1": 0.5, "seconds": 1.0, "cross_f1_all_edges_ref": 0.3} for m in ("mmcrl", "pca")]
    table = art.results_table(pd.DataFrame(rows))
    for column in ("paper MCC", "paper R²", "paper SHD"):
        assert table[column].dtype.kind == "f" and table[column].isna().all()  # blank cells, not "None"


def test_progress_bars_in_the_log_read_as_words():
    line = "tiny seed 0:  25%|##5       | 1/4 [00:08<00:24, 8.10s/method, mmcrl seed 0 epoch 15]"
    assert bj.readable_log_line(line) == "tiny seed 0, method 2 of 4: mmcrl seed 0 epoch 15"
    assert bj.readable_log_line("  0%|          | 0/4 [00:00<?, ?method/s]") == "method 1 of 4"
    assert bj.readable_log_line("wrote /tmp/b/results.csv and /tmp/b/results.md") == "writing the results"
    assert bj.readable_log_line("a plain line") == "a plain line"


def test_paper_columns_for_display_blank_where_missing_and_dropped_when_empty():
    table = pd.DataFrame({"method": ["mmcrl", "pca"], "paper MCC": [0.84, None], "paper R²": [None, None],
                          "paper SHD": [3.0, None], "paper note": ["", ""]})
    shown = art.readable_paper_columns(table)
    assert list(shown.columns) == ["method", "paper MCC", "paper SHD"]
    assert shown["paper MCC"].tolist() == ["0.84", ""] and shown["paper SHD"].tolist() == ["3", ""]
