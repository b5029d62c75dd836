"""The Train page driven by Streamlit's AppTest, with real training processes.

Most cases swap the train command for tests/jobs_fake_train.py (MMCRL_TRAIN_COMMAND) so a run
takes a second; the slow case trains for real on a 20-subject dataset.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from mmcrl_core.config import ModelConfig, TrainConfig
from mmcrl_core.jobs import get_executor
from mmcrl_core.run_store import CANCELLED, QUEUED, RUNNING, SUCCEEDED, get_run, list_runs, progress
from tests.jobs_fixtures import tiny_dataset, wait_for

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "train.py")
FAKE_TRAIN = Path(__file__).with_name("jobs_fake_train.py")


@pytest.fixture
def dataset(workspace):
    return tiny_dataset(workspace)


@pytest.fixture
def fake_training(monkeypatch):
    monkeypatch.setenv("MMCRL_TRAIN_COMMAND", json.dumps([sys.executable, str(FAKE_TRAIN)]))
    monkeypatch.setenv("MMCRL_CANCEL_GRACE_S", "1")


@pytest.fixture
def app(workspace):
    at = AppTest.from_file(PAGE, default_timeout=60)
    yield at
    executor = get_executor(paths=workspace)
    for run in list_runs(workspace, statuses=[QUEUED, RUNNING]):
        executor.cancel(run.id)
        executor.wait(run.id, timeout=20)


def texts(at) -> str:
    parts = [e.value for e in (*at.markdown, *at.caption, *at.info, *at.error, *at.success)]
    parts += [p.proto.text for p in at.get("progress")]
    return "\n".join(str(p) for p in parts)


def test_without_datasets_the_page_points_to_data(workspace, app):
    app.run()
    assert not app.exception
    assert "No dataset yet" in texts(app)
    assert not [b for b in app.button if b.key == "train_start"]


def test_settings_per_modality_and_hardware_are_shown(dataset, app):
    app.run()
    assert not app.exception
    keys = {w.key for w in app.number_input}
    for modality in dataset.modality_names:
        assert f"train_latents_{modality}" in keys and f"train_nuisance_{modality}" in keys
    assert "Hardware found:" in texts(app) and "CPU core" in texts(app)
    assert app.multiselect(key="train_order").value == dataset.modality_names
    assert "1 run;" in texts(app)


def test_loss_and_training_defaults_are_the_estimators_own(dataset, app):
    # the app must train the same estimator as the CLI and the benchmark unless the user changes it
    app.run()
    model, train = ModelConfig(), TrainConfig()
    shown = {w.key: w.value for w in app.number_input}
    assert shown["train_a_sp"] == pytest.approx(model.a_sp)
    assert shown["train_a_ind"] == pytest.approx(model.a_ind) and shown["train_a_rec"] == pytest.approx(model.a_rec)
    assert (shown["train_hidden"], shown["train_depth"]) == (model.hidden, model.depth)
    assert (shown["train_epochs"], shown["train_batch"]) == (train.epochs, train.batch_size)
    assert shown["train_lr"] == pytest.approx(train.lr)


def test_preflight_estimate_is_measured_before_starting(dataset, app):
    app.run()
    app.button(key="train_estimate_button").click().run()
    assert not app.exception
    estimate = texts(app)
    assert "MB of memory" in estimate and "per epoch" in estimate and "parameters" in estimate
    assert list_runs() == []  # estimating starts nothing


@pytest.mark.slow
def test_start_runs_shows_progress_and_curves(dataset, fake_training, app, workspace):
    app.run()
    app.text_input(key="train_name").input("fake-ok")
    app.number_input(key="train_epochs").set_value(5)
    app.button(key="train_start").click().run()
    assert not app.exception
    (run_id,) = app.session_state["train_watch"]
    run = get_run(run_id, workspace)
    assert run.dataset_id == dataset.id and run.run_spec.train.epochs == 5
    assert get_executor(paths=workspace).wait(run_id, timeout=60).status == SUCCEEDED
    app.run()
    assert "succeeded, epoch 5/5" in texts(app)
    assert app.get("plotly_chart")
    # one click makes the finished run the one the Latents and Causal graph pages show
    app.button(key="train_make_active").click().run()
    assert app.session_state["run_id"] == run_id
    assert app.button(key="train_make_active").disabled


@pytest.mark.slow
def test_several_seeds_launch_one_group(dataset, fake_training, app, workspace):
    app.run()
    app.text_input(key="train_name").input("fake-ok")
    app.number_input(key="train_epochs").set_value(2)
    app.text_input(key="train_seeds").input("0-2").run()
    assert "3 runs in one group" in texts(app)
    app.button(key="train_start").click().run()
    runs = [get_run(i, workspace) for i in app.session_state["train_watch"]]
    assert sorted(r.seed for r in runs) == [0, 1, 2]
    assert len({r.group_id for r in runs}) == 1 and runs[0].group_id
    for run in runs:
        get_executor(paths=workspace).wait(run.id, timeout=60)
    app.run()
    assert "Lowest validation loss in this group" in texts(app)


def test_latent_grid_multiplies_runs(dataset, app):
    app.run()
    app.toggle(key="train_grid_mode").set_value(True).run()
    for modality in dataset.modality_names:
        app.text_input(key=f"train_grid_{modality}").input("1, 2")
    app.text_input(key="train_seeds").input("0, 1").run()
    assert not app.exception
    assert "8 runs in one group" in texts(app)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [("train_seeds", "zero", "not a whole number"), ("train_grid_mode", True, None)],
)
def test_bad_settings_show_an_error_and_no_start(dataset, app, key, value, message):
    app.run()
    if key == "train_grid_mode":
        app.toggle(key=key).set_value(True).run()
        key, value, message = f"train_grid_{dataset.modality_names[0]}", "7", "must be between 1 and 3"
    app.text_input(key=key).input(value).run()
    assert not app.exception
    assert message in texts(app)
    assert not [b for b in app.button if b.key == "train_start"]


def test_cuda_without_a_gpu_is_refused(dataset, app):
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    app.run()
    app.selectbox(key="train_device").set_value("cuda").run()
    assert "no CUDA GPU was found" in texts(app)


@pytest.mark.slow
def test_cancel_from_the_page(dataset, fake_training, app, workspace):
    app.run()
    app.text_input(key="train_name").input("fake-hang")
    app.button(key="train_start").click().run()
    (run_id,) = app.session_state["train_watch"]
    wait_for(lambda: progress(run_id, workspace), what="progress")
    app.run()
    app.button(key=f"train_cancel_{run_id}").click().run()
    assert get_executor(paths=workspace).wait(run_id, timeout=30).status == CANCELLED


@pytest.mark.slow
def test_real_training_from_the_page(dataset, app, workspace):
    app.run()
    app.number_input(key="train_epochs").set_value(3)
    app.number_input(key="train_hidden").set_value(16)
    app.number_input(key="train_depth").set_value(1)
    app.button(key="train_start").click().run()
    (run_id,) = app.session_state["train_watch"]
    run = get_executor(paths=workspace).wait(run_id, timeout=240)
    assert run.status == SUCCEEDED, run.error
    app.run()
    assert "succeeded, epoch 3/3" in texts(app)


def test_switching_dataset_resets_the_causal_order(workspace, app):
    from mmcrl_core import dataset_store

    first = dataset_store.save_example("linnerud", workspace)
    second = dataset_store.save_example("diabetes", workspace)
    app.session_state["dataset_id"] = first.id
    app.run()
    assert app.multiselect(key="train_order").value == first.modality_names
    app.selectbox(key="train_dataset").set_value(second.id).run()
    assert not app.exception
    # the order follows the new dataset instead of keeping only the modalities both share
    assert app.multiselect(key="train_order").value == second.modality_names
    assert not app.error
