import json

import pandas as pd
import pytest

from mmcrl_core import benchmark_artifacts as art
from mmcrl_core import metrics
from mmcrl_core.benchmark import (
    METHODS,
    RESULT_COLUMNS,
    SUITES,
    load_settings_file,
    results_markdown,
    run_benchmark,
    run_single_setting,
    score,
)
from mmcrl_core.cli import main
from mmcrl_core.errors import UserInputError
from mmcrl_core.simulate import SETTINGS, SimulationSettings

SCORES = ["mcc", "mcc_spearman", "r2", "shd", "cross_f1", "cross_f1_pc"]


def test_tiny_benchmark_writes_results_with_the_exact_columns(tmp_path):
    results = run_benchmark("quick", seeds=1, out_dir=tmp_path, settings=["tiny"], methods=["pca", "ica"])
    written = pd.read_csv(tmp_path / "results.csv")
    assert list(written.columns[: len(RESULT_COLUMNS)]) == RESULT_COLUMNS
    assert list(written["method"]) == ["pca", "ica"] and set(written["setting"]) == {"tiny"}
    assert written["mcc"].between(0.4, 1).all() and written["r2"].between(0, 1).all()
    # the trivial reference is the same for every method of a data set, and is a real F1 in (0, 1]
    assert written["cross_f1_all_edges_ref"].nunique() == 1 and 0 < written["cross_f1_all_edges_ref"].iloc[0] <= 1
    assert (written["graph_readout"] == "lasso").all()
    report = (tmp_path / "results.md").read_text()
    assert "## tiny" in report and "| pca |" in report
    assert len(results) == 2


def test_single_setting_is_deterministic_and_hands_over_what_it_scored():
    a = run_single_setting("tiny", seed=1, methods=["pca"])
    estimates = []
    b = run_single_setting("tiny", seed=1, methods=["pca", "ica"], on_estimate=estimates.append)
    pd.testing.assert_frame_equal(a[SCORES], b[SCORES].iloc[:1])  # the hook changes no number
    assert [(e.setting, e.seed, e.method) for e in estimates] == [("tiny", 1, "pca"), ("tiny", 1, "ica")]
    for estimate, row in zip(estimates, b.itertuples()):
        assert estimate.latents.shape == estimate.truth.latents.shape
        # scoring the handed-over latents again gives the row; the graph is the one behind its SHD
        again = score(estimate.truth, estimate.latents, None, seed=1)
        assert again["mcc"] == row.mcc and again["r2"] == row.r2
        matching = metrics.mcc_by_modality(estimate.truth.latents, estimate.latents).matching
        assert metrics.graph_scores(estimate.truth.adjacency, estimate.adjacency, matching).shd == row.shd
        assert estimate.scores["cross_f1"] == row.cross_f1


def test_unknown_names_are_user_errors(tmp_path, capsys):
    with pytest.raises(UserInputError, match="case1"):
        run_single_setting("nope", methods=["pca"])
    with pytest.raises(UserInputError, match="betavae"):
        run_benchmark("quick", settings=["tiny"], methods=["magic"])
    assert main(["benchmark", "--suite", "huge", "--out", str(tmp_path)]) == 2
    assert "quick" in capsys.readouterr().err


def test_suites_cover_the_papers_experiments():
    assert set(SUITES["paper"].settings) == set(SETTINGS) - {"tiny"}
    assert {"mmcrl", "pca", "ica", "betavae"} <= set(SUITES["paper"].methods)
    assert set(SUITES["quick"].settings) == {"case1", "case2", "case3"}
    assert set(SUITES["quick"].methods) == set(METHODS)  # "ahead of every baseline" is checked by the quick suite


def test_markdown_puts_paper_numbers_beside_ours():
    rows = pd.DataFrame([
        {"setting": "mod5", "method": "pca", "seed": s, "mcc": m, "mcc_spearman": m, "r2": 0.5, "shd": 3,
         "cross_f1": 0.4, "seconds": 1.0}
        for s, m in [(0, 0.5), (1, 0.7)]
    ])
    report = results_markdown(rows)
    assert "0.60 ± 0.14" in report  # mean and sd of 0.5 and 0.7
    assert "| paper (mmcrl) | 0.84 |" in report and "0.89" in report


def test_cli_benchmark_tiny(tmp_path):
    out = tmp_path / "bench"
    assert main(["benchmark", "--setting", "tiny", "--methods", "pca", "--seeds", "1", "--out", str(out)]) == 0
    written = pd.read_csv(out / "results.csv")
    assert list(written.columns[:9]) == RESULT_COLUMNS and len(written) == 1
    assert not (out / art.ESTIMATES).exists()  # scores only, unless asked


def test_cli_saves_the_estimates_behind_each_row(tmp_path):
    out = tmp_path / "bench"
    assert main(["benchmark", "--setting", "tiny", "--methods", "pca", "ica", "--save-estimates",
                 "--out", str(out)]) == 0
    written = pd.read_csv(out / "results.csv")
    assert (out / "estimates" / "tiny" / "0" / "truth" / "latents.csv").is_file()
    assert art.available(out).values.tolist() == [["tiny", 0, "ica"], ["tiny", 0, "pca"]]
    truth = art.load_truth(out, "tiny", 0)
    assert truth.latents.shape == (SETTINGS["tiny"].n, 4) and set(truth.adjacency.stack().unique()) <= {0, 1}
    for row in written.itertuples():
        saved = art.load_method(out, "tiny", 0, row.method)
        # files round to 6 significant digits: the scores agree to far better than the page shows
        block = metrics.mcc_by_modality(truth.latents, saved.latents)
        assert block.value == pytest.approx(row.mcc, abs=1e-4)
        assert metrics.graph_scores(truth.adjacency, saved.adjacency, block.matching).shd == row.shd


def _settings_file(tmp_path, content) -> str:
    path = tmp_path / "settings.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def test_a_setting_given_by_value_scores_as_the_same_setting_by_name(tmp_path):
    tiny = SETTINGS["tiny"].model_dump()
    by_value = tmp_path / "by-value"
    by_name = tmp_path / "by-name"
    assert main(["benchmark", "--settings-file", _settings_file(tmp_path, tiny), "--methods", "pca",
                 "--out", str(by_value)]) == 0
    assert main(["benchmark", "--setting", "tiny", "--methods", "pca", "--out", str(by_name)]) == 0
    a, b = pd.read_csv(by_value / "results.csv"), pd.read_csv(by_name / "results.csv")
    assert a["setting"].tolist() == ["tiny"]
    pd.testing.assert_frame_equal(a[SCORES], b[SCORES])


def test_settings_file_runs_under_its_name_and_n_overrides_the_subjects(tmp_path):
    custom = SimulationSettings(name="three-mods", modalities=3, latents=1, nuisance=1, obs_dim=4, n=400)
    path = _settings_file(tmp_path, [json.loads(custom.model_dump_json())])
    out = tmp_path / "bench"
    assert main(["benchmark", "--setting", "tiny", "--settings-file", path, "--n", "300", "--methods", "pca",
                 "--save-estimates", "--out", str(out)]) == 0
    written = pd.read_csv(out / "results.csv")
    assert written["setting"].tolist() == ["tiny", "three-mods"] and written["n"].tolist() == [300, 300]
    assert list(art.load_truth(out, "three-mods", 0).latents.columns) == ["m1:1", "m2:1", "m3:1"]
    # without --n the paper suite keeps the setting's own subjects (the quick suite fixes 5,000)
    own = run_benchmark("paper", seeds=1, settings=load_settings_file(path), methods=["pca"])
    assert own["n"].tolist() == [400]


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "not valid JSON"),
    ({"name": "mine", "modalitees": 3}, "modalitees"),
    ({"name": "case1", "modalities": 3}, "'case1' is a named setting"),
    ({"name": "../evil"}, "setting name '../evil'"),
    ({"name": "mine", "latents": 3, "nuisance": 2, "obs_dim": 4}, "obs_dim 4 < latents 3"),
    ([{"name": "ok"}, {"name": "bad", "n": 1}], "entry 2: n:"),
    ([], "expected a JSON object"),
])
def test_bad_settings_files_name_the_file_and_the_problem(tmp_path, capsys, content, message):
    path = _settings_file(tmp_path, content)
    with pytest.raises(UserInputError, match="settings.json") as error:
        load_settings_file(path)
    assert message in str(error.value)
    assert main(["benchmark", "--settings-file", path, "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err


def test_bad_subject_counts_and_repeated_settings_are_user_errors(tmp_path, capsys):
    assert main(["benchmark", "--setting", "tiny", "--n", "20", "--out", str(tmp_path)]) == 2
    assert "at least 100 subjects" in capsys.readouterr().err
    path = _settings_file(tmp_path, SETTINGS["tiny"].model_dump())
    assert main(["benchmark", "--setting", "tiny", "--settings-file", path, "--out", str(tmp_path)]) == 2
    assert "'tiny' given twice" in capsys.readouterr().err
    assert main(["benchmark", "--settings-file", str(tmp_path / "missing.json"), "--out", str(tmp_path)]) == 2
    assert "missing.json not found" in capsys.readouterr().err
    assert not (tmp_path / "results.csv").exists()


@pytest.mark.slow
def test_mmcrl_in_the_benchmark_reports_best_and_each_seed():
    estimates = []
    results = run_single_setting("tiny", seed=0, methods=["mmcrl"], on_estimate=estimates.append)
    seeds = [f"mmcrl#{i + 1}" for i in range(SUITES["quick"].mmcrl_seeds)]
    assert list(results["method"]) == ["mmcrl", *seeds]
    per_seed = results.iloc[1:]
    assert per_seed["selected"].sum() == 1
    chosen = per_seed[per_seed["selected"].astype(bool)].iloc[0]
    assert results.iloc[0]["mcc"] == chosen["mcc"]
    assert chosen["best_val_loss"] == per_seed["best_val_loss"].min()
    assert (results["graph_readout"] == "learned").all()
    assert results["mcc"].between(0, 1).all()
    # one estimate per row; the reported row hands over the selected seed's latents and learned graph
    assert [e.method for e in estimates] == ["mmcrl", *seeds]
    selected = 1 + int(per_seed["selected"].astype(bool).to_numpy().argmax())
    pd.testing.assert_frame_equal(estimates[0].latents, estimates[selected].latents)
    assert estimates[0].adjacency.equals(estimates[selected].adjacency)
    assert estimates[0].scores["mcc"] == results.iloc[0]["mcc"]
    # the app's benchmark page relies on this: same setting and seed, same numbers
    again = run_single_setting("tiny", seed=0, methods=["mmcrl"])
    pd.testing.assert_frame_equal(results.drop(columns="seconds"), again.drop(columns="seconds"))
