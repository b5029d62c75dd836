"""The Runs page driven by Streamlit's AppTest over runs made by real (stand-in) training processes."""

from __future__ import annotations

import io
import json
import sys
import zipfile
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from mmcrl_core.jobs import LocalSubprocessExecutor
from mmcrl_core.run_compare import config_differences, zip_run_folder
from mmcrl_core.run_store import FAILED, SUCCEEDED, get_run, list_runs, run_folder
from mmcrl_core.workspace import WorkspacePaths
from tests.jobs_fixtures import tiny_spec

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "runs.py")
FAKE_TRAIN = Path(__file__).with_name("jobs_fake_train.py")

pytestmark = pytest.mark.slow  # every case starts training processes first


@pytest.fixture(scope="module")
def module_workspace(tmp_path_factory):
    """One workspace for the module (making runs costs seconds); tests add runs, never remove these."""
    with pytest.MonkeyPatch.context() as patch:
        home = tmp_path_factory.mktemp("runs_page") / "workspace"
        patch.setenv("MMCRL_HOME", str(home))
        patch.setenv("MMCRL_TRAIN_COMMAND", json.dumps([sys.executable, str(FAKE_TRAIN)]))
        yield WorkspacePaths(home).ensure()


@pytest.fixture(scope="module")
def runs(module_workspace):
    """A succeeded run (seed 0), a second one (seed 1) and a failed one, oldest first."""
    executor = LocalSubprocessExecutor(module_workspace, max_concurrent=2)
    spec = tiny_spec(module_workspace, epochs=3, name="fake-ok")
    ids = [
        executor.submit(spec),
        executor.submit(spec.model_copy(update={"train": spec.train.model_copy(update={"seed": 1})})),
        executor.submit(spec.model_copy(update={"name": "fake-crash"})),
    ]
    done = [executor.wait(i, timeout=60) for i in ids]
    assert [r.status for r in done] == [SUCCEEDED, SUCCEEDED, FAILED]
    return done


@pytest.fixture
def workspace(module_workspace):
    return module_workspace


@pytest.fixture
def app():
    return AppTest.from_file(PAGE, default_timeout=60)


def test_table_lists_every_run_with_its_columns(runs, app):
    app.run()
    assert not app.exception
    table = app.dataframe[0].value
    assert {r.id for r in runs} <= set(table["run"])
    assert list(table.columns[:6]) == ["name", "status", "dataset", "validation loss", "duration", "device"]
    row = table.set_index("run").loc[runs[0].id]
    assert row["status"] == SUCCEEDED and row["dataset"] == "Linnerud (scikit-learn)"
    assert row["device"] == "cpu" and row["validation loss"] == pytest.approx(runs[0].val_loss)
    assert row["duration"]


def test_failed_run_detail_shows_its_error_and_log(runs, app):
    app.run()
    app.selectbox(key="runs_pick").set_value(runs[2].id).run()
    assert "the fake model exploded" in app.error[0].value
    assert any("fake model exploded" in c.value for c in app.code)


def test_succeeded_run_detail_has_config_curves_and_download(runs, app):
    app.run()
    app.selectbox(key="runs_pick").set_value(runs[0].id).run()
    assert not app.exception
    assert app.get("plotly_chart")
    assert any(w.key == "runs_download" for w in app.get("download_button"))
    assert any("--run-id" in c.value for c in app.code)
    outcome = f"Outcome: best validation loss {runs[0].val_loss:.4f}"
    assert any(c.value.startswith(outcome) for c in app.caption)
    app.button(key="runs_activate").click().run()
    assert app.session_state["run_id"] == runs[0].id


def test_compare_shows_config_differences_and_overlaid_curves(runs, app):
    app.run()
    app.multiselect(key="runs_compare").set_value([runs[0].id, runs[1].id]).run()
    assert not app.exception
    differences = app.dataframe[1].value
    assert list(differences.index) == ["train.seed"]
    assert app.get("plotly_chart")


def test_rerun_starts_the_same_configuration(runs, app, workspace):
    app.run()
    app.selectbox(key="runs_pick").set_value(runs[0].id).run()
    app.button(key="runs_rerun").click().run()
    new_id = app.session_state["runs_pick"]
    assert new_id not in {r.id for r in runs}
    rerun = LocalSubprocessExecutor(workspace).wait(new_id, timeout=60)
    assert rerun.status == SUCCEEDED
    assert config_differences([runs[0], rerun]).empty
    # a re-run of the re-run keeps one suffix
    app.button(key="runs_rerun").click().run()
    again = get_run(app.session_state["runs_pick"], workspace)
    assert again.name == rerun.name and again.name.count("(re-run)") == 1
    LocalSubprocessExecutor(workspace).wait(again.id, timeout=60)


def test_delete_needs_confirmation_and_removes_the_folder(runs, app, workspace):
    executor = LocalSubprocessExecutor(workspace)
    target = executor.wait(executor.submit(runs[0].run_spec.model_copy(update={"run_id": None})), timeout=60)
    app.run()
    app.selectbox(key="runs_pick").set_value(target.id).run()
    assert app.button(key="runs_delete").disabled
    app.checkbox(key="runs_delete_confirm").check().run()
    app.button(key="runs_delete").click().run()
    assert not app.exception
    assert get_run(target.id, workspace) is None
    assert not run_folder(workspace, target.id).exists()
    assert target.id not in set(app.dataframe[0].value["run"])


def test_a_new_app_session_sees_everything(runs, app):
    """Restarting the app loses nothing: a fresh session lists the same runs and results."""
    app.run()
    again = AppTest.from_file(PAGE, default_timeout=60)
    again.run()
    assert set(again.dataframe[0].value["run"]) == set(app.dataframe[0].value["run"])
    assert {r.id for r in runs} <= set(again.dataframe[0].value["run"])


def test_zip_holds_the_whole_run_folder(runs):
    archive = zipfile.ZipFile(io.BytesIO(zip_run_folder(runs[0])))
    names = set(archive.namelist())
    assert f"{runs[0].id}/manifest.json" in names and f"{runs[0].id}/train.log" in names


def test_empty_workspace_points_to_train(tmp_path, monkeypatch, app):
    monkeypatch.setenv("MMCRL_HOME", str(tmp_path / "empty"))
    app.run()
    assert not app.exception
    assert "No run yet" in app.info[0].value
    assert list_runs(WorkspacePaths(tmp_path / "empty")) == []
