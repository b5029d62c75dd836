"""The Data page driven through Streamlit's AppTest: upload, check, save, examples, manage."""

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from mmcrl_core import dataset_store
from mmcrl_core.workspace import WorkspacePaths

REPO = Path(__file__).resolve().parent.parent
PAGE = str(REPO / "pages" / "data.py")


def csv_bytes(columns, n=30, start=0, seed=0, extra_rows=()):
    rng = np.random.default_rng(seed)
    lines = ["subject_id," + ",".join(columns)]
    lines += [f"S{i:03d}," + ",".join(f"{v:.3f}" for v in rng.normal(size=len(columns))) for i in range(start, start + n)]
    lines += list(extra_rows)
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("MMCRL_HOME", str(tmp_path / "ws"))
    monkeypatch.syspath_prepend(str(REPO))
    return WorkspacePaths(tmp_path / "ws")


def run_page():
    app = AppTest.from_file(PAGE, default_timeout=60)
    app.run()
    assert not app.exception
    return app


def texts(elements):
    return " ".join(str(e.value) for e in elements)


def test_upload_two_csvs_and_save(workspace):
    app = run_page()
    app.file_uploader(key="data_files").set_value([
        ("blood.csv", csv_bytes(["hdl", "ldl", "tg"]), "text/csv"),
        ("sleep.csv", csv_bytes(["ahi", "tst"], start=5, seed=1), "text/csv"),
    ])
    app.run()
    assert not app.exception
    assert "Per-modality summary" in texts(app.subheader)
    assert "No problem found" in texts(app.success)
    app.text_input(key="data_upload_name").set_value("sleep and blood")
    app.button(key="data_upload_save").click()
    app.run()
    assert not app.exception
    assert "Saved **sleep and blood** (35 subjects, 2 modalities)" in texts(app.success)
    [record] = dataset_store.list_datasets(workspace)
    assert record.name == "sleep and blood" and record.modality_names == ["blood", "sleep"]
    assert app.session_state["dataset_id"] == record.id
    # the same files again are recognised, not stored twice
    app.button(key="data_upload_save").click()
    app.run()
    assert "already stored as **sleep and blood**" in texts(app.info)
    assert len(dataset_store.list_datasets(workspace)) == 1


def test_bad_upload_shows_the_validation_table_not_a_traceback(workspace):
    app = run_page()
    app.file_uploader(key="data_files").set_value([
        ("blood.csv", csv_bytes(["hdl"], extra_rows=["S001,2.0"]), "text/csv"),
        ("empty.csv", b"", "text/csv"),
    ])
    app.run()
    assert not app.exception
    assert "must be fixed" in texts(app.error)
    table = app.dataframe[-1].value
    assert {"severity", "file", "column", "rows", "message", "fix"} <= set(table.columns)
    messages = " ".join(table["message"])
    assert "duplicate subject id(s): S001" in messages and "the file is empty" in messages
    assert not any(b.key == "data_upload_save" for b in app.button)


def test_example_in_one_click_and_manage(workspace):
    app = run_page()
    app.button(key="example_linnerud").click()
    app.run()
    assert not app.exception
    assert "**Linnerud (scikit-learn)** is the active dataset" in texts(app.success)
    [record] = dataset_store.list_datasets(workspace)
    assert app.session_state["dataset_id"] == record.id
    app.text_input(key="data_rename").set_value("linnerud men")
    app.button(key="data_rename_button").click()
    app.run()
    assert dataset_store.get_dataset(record.id, workspace).name == "linnerud men"
    app.checkbox(key="data_delete_confirm").check()
    app.run()
    app.button(key="data_delete").click()
    app.run()
    assert not app.exception
    assert dataset_store.list_datasets(workspace) == []


def test_wide_table_split_by_prefix_and_saved(workspace):
    app = run_page()
    app.file_uploader(key="wide_file").set_value(
        ("cohort.csv", csv_bytes(["blood_hdl", "blood_ldl", "sleep_ahi", "sleep_tst"]), "text/csv"))
    app.run()
    assert not app.exception
    summary = next(d.value for d in app.dataframe if "modality" in d.value.columns and "subjects" in d.value.columns)
    assert summary["modality"].tolist() == ["blood", "sleep"]
    app.button(key="data_wide_save").click()
    app.run()
    assert not app.exception
    [record] = dataset_store.list_datasets(workspace)
    assert record.name == "cohort" and record.modality_names == ["blood", "sleep"]


def test_your_datasets_follows_the_dataset_just_loaded(workspace):
    app = run_page()
    app.button(key="example_linnerud").click().run()
    app.button(key="example_diabetes").click().run()
    assert not app.exception
    diabetes = next(d for d in dataset_store.list_datasets(workspace) if d.meta.get("example") == "diabetes")
    # the manage tab shows the active dataset, not the one picked before the example was loaded
    assert app.session_state["dataset_id"] == diabetes.id
    assert app.selectbox(key="data_pick").value == diabetes.id


def test_no_empty_missing_values_chart_when_nothing_is_missing(workspace):
    app = run_page()
    app.file_uploader(key="data_files").set_value([
        ("blood.csv", csv_bytes(["hdl", "ldl"]), "text/csv"),
        ("sleep.csv", csv_bytes(["ahi", "tst"], seed=1), "text/csv"),
    ])
    app.run()
    assert not app.exception
    assert "No missing values." in texts(app.info)
    assert not [c for c in app.get("plotly_chart") if "missing" in (c.proto.id or "")]


def test_delete_warns_when_runs_were_trained_on_the_dataset(workspace):
    from mmcrl_core.run_store import SUCCEEDED, create_run, finish_run
    from tests.jobs_fixtures import tiny_spec

    paths = workspace.ensure()
    record = dataset_store.save_example("linnerud", paths)
    finish_run(create_run(tiny_spec(paths, record), paths=paths).id, SUCCEEDED, paths)
    app = run_page()
    assert "1 run(s) were trained on this dataset" in texts(app.warning)
