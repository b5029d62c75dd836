"""Stored datasets: Parquet + registry row, re-uploads recognised, failures leave others intact."""

import numpy as np
import pandas as pd
import pytest

from mmcrl_core import dataset_store
from mmcrl_core.datasets import load_tables
from mmcrl_core.errors import UserInputError
from mmcrl_core.workspace import WorkspacePaths


@pytest.fixture
def paths(tmp_path):
    return WorkspacePaths(tmp_path / "ws").ensure()


@pytest.fixture
def tables(tmp_path):
    rng = np.random.default_rng(0)
    ids = [f"{i:03d}" for i in range(30)]
    blood = pd.DataFrame({"subject_id": ids, "hdl": rng.normal(size=30), "group": rng.choice(["a", "b"], 30)})
    blood.loc[4, "hdl"] = np.nan
    sleep = pd.DataFrame({"subject_id": ids[5:], "ahi": rng.normal(size=25), "tst": rng.normal(size=25)})
    blood.to_csv(tmp_path / "blood.csv", index=False)
    sleep.to_csv(tmp_path / "sleep.csv", index=False)
    pd.DataFrame({"subject_id": ids, "age": range(30)}).to_csv(tmp_path / "cov.csv", index=False)
    return load_tables([tmp_path / "blood.csv", tmp_path / "sleep.csv"], covariates=str(tmp_path / "cov.csv"))


def test_save_list_load_round_trip(paths, tables):
    record = dataset_store.save_dataset(tables, "sleep study", paths)
    assert not record.reused and record.n_subjects == 30
    assert record.modality_names == ["blood", "sleep"]
    assert {s["modality"]: s["sha256"] for s in record.sources}["blood"] == tables.sha256["blood"]
    folder = paths.data_dir / record.id
    assert sorted(p.name for p in folder.iterdir()) == ["blood.parquet", "covariates.parquet", "sleep.parquet"]
    assert [d.name for d in dataset_store.list_datasets(paths)] == ["sleep study"]
    loaded = dataset_store.load_dataset(record.id, paths)
    pd.testing.assert_frame_equal(loaded.tables["blood"], tables.tables["blood"], check_dtype=False)
    assert loaded.tables["sleep"].index[0] == "005" and loaded.covariates["age"].iloc[3] == 3
    sources = dataset_store.dataset_sources(record.id, paths)
    assert [s.modality for s in sources] == ["blood", "sleep"]
    assert sources[0].path == str(folder / "blood.parquet") and len(sources[0].sha256) == 64
    # what `train NAME=data/<id>/<modality>.parquet` will read
    again = load_tables([f"{s.modality}={s.path}" for s in sources])
    assert again.id_column == "subject_id" and len(again.subject_ids("complete")) == 25


def test_identical_reupload_is_recognised(paths, tables):
    first = dataset_store.save_dataset(tables, "one", paths)
    second = dataset_store.save_dataset(tables, "two", paths)
    assert second.reused and second.id == first.id
    assert len(dataset_store.list_datasets(paths)) == 1
    assert dataset_store.find_by_fingerprint(tables.fingerprint(), paths).id == first.id


def test_rename_and_delete(paths, tables, tmp_path):
    record = dataset_store.save_dataset(tables, "one", paths)
    assert dataset_store.rename_dataset(record.id, "  renamed  ", paths).name == "renamed"
    other = dataset_store.save_example("linnerud", paths)
    with pytest.raises(UserInputError, match="already exists"):
        dataset_store.rename_dataset(other.id, "renamed", paths)
    dataset_store.delete_dataset(record.id, paths)
    assert [d.id for d in dataset_store.list_datasets(paths)] == [other.id]
    assert not (paths.data_dir / record.id).exists()
    with pytest.raises(UserInputError, match="no dataset"):
        dataset_store.get_dataset(record.id, paths)


def test_a_failed_save_leaves_existing_datasets_intact(paths, tables, monkeypatch):
    kept = dataset_store.save_example("linnerud", paths)
    kept_files = sorted(p.name for p in (paths.data_dir / kept.id).iterdir())

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", broken)
    with pytest.raises(OSError):
        dataset_store.save_dataset(tables, "doomed", paths)
    monkeypatch.undo()
    assert [d.id for d in dataset_store.list_datasets(paths)] == [kept.id]
    assert sorted(p.name for p in (paths.data_dir / kept.id).iterdir()) == kept_files
    leftovers = [p.name for p in paths.data_dir.iterdir() if p.is_dir() and p.name != kept.id]
    assert leftovers == []  # no half-written folder either
    dataset_store.load_dataset(kept.id, paths)


def test_duplicate_name_is_refused_without_writing(paths, tables):
    dataset_store.save_example("linnerud", paths)
    with pytest.raises(UserInputError, match="already exists"):
        dataset_store.save_dataset(tables, "Linnerud (scikit-learn)", paths)
    with pytest.raises(UserInputError, match="give the dataset a name"):
        dataset_store.save_dataset(tables, "   ", paths)
    assert len([p for p in paths.data_dir.iterdir() if p.is_dir()]) == 1


def test_default_example_is_stored_once(paths):
    name = dataset_store.ensure_default_example(paths)
    assert name == "NHEFS smoking cessation cohort"
    [record] = dataset_store.list_datasets(paths)
    assert record.n_subjects == 1629 and len(record.modalities) >= 4 and record.meta["example"] == "nhefs"
    dataset_store.delete_dataset(record.id, paths)
    assert dataset_store.ensure_default_example(paths) is None  # the user deleted it: not brought back
    assert dataset_store.list_datasets(paths) == []


def test_delete_is_refused_while_a_run_trains_on_the_dataset(paths):
    from mmcrl_core.run_store import CANCELLED, create_run, finish_run
    from tests.jobs_fixtures import tiny_spec

    record = dataset_store.save_example("linnerud", paths)
    run = create_run(tiny_spec(paths, record), paths=paths)  # queued counts as training
    with pytest.raises(UserInputError, match="training on"):
        dataset_store.delete_dataset(record.id, paths)
    assert dataset_store.get_dataset(record.id, paths)
    finish_run(run.id, CANCELLED, paths)
    dataset_store.delete_dataset(record.id, paths)
    assert dataset_store.list_datasets(paths) == []
