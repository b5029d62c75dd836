"""run_compare: settings that differ between runs, shown as a researcher reads them."""

from mmcrl_core.run_compare import NOT_SET, config_differences, curve_label
from mmcrl_core.run_store import RunRecord


def _run(run_id: str, spec: dict) -> RunRecord:
    return RunRecord(id=run_id, name=run_id, dataset_id=None, group_id=None, kind="train", status="succeeded",
                     executor="local", created_at="2026-01-01T00:00:00+00:00", started_at=None, finished_at=None,
                     heartbeat_at=None, pid=None, device=None, spec=spec, command=[], out_dir="", log_path=None,
                     error=None, val_loss=None)


def test_differences_keep_integers_and_mark_settings_an_older_run_lacks():
    old = _run("old", {"train": {"epochs": 5000}})
    new = _run("new", {"train": {"epochs": 30, "kl_warmup": 0}})
    table = config_differences([new, old])
    assert list(table.index) == ["train.epochs", "train.kl_warmup"]
    epochs = table.loc["train.epochs"].astype(str).tolist()
    assert epochs == ["30", "5000"]  # not 5000.0
    assert table.loc["train.kl_warmup"].tolist() == [0, NOT_SET]


def test_curve_labels_are_readable():
    assert curve_label("val_loss") == "validation loss"
    assert curve_label("some_new_term") == "some new term"
