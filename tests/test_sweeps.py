"""Sweeps: seeds x latent grid x bootstrap resamples as one group, the choice of the number of
latents by validation loss, and stability over the chosen setting's runs."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from mmcrl_core import cli
from mmcrl_core.datasets import load_tables
from mmcrl_core.errors import UserInputError
from mmcrl_core.jobs import Executor, LocalSubprocessExecutor
from mmcrl_core.run_store import QUEUED, RUNNING, SUCCEEDED, list_runs
from mmcrl_core.runfolder import read_latents
from mmcrl_core.sweeps import (
    BOOTSTRAP_RUN,
    SEED_RUN,
    Sweep,
    SweepMember,
    choose_latents,
    latent_settings,
    launch_sweep,
    parse_latent_grid,
    resample_subjects,
    summarise,
    sweep_folder,
    write_bootstrap_tables,
)
from tests.jobs_fixtures import tiny_spec


class RecordingExecutor(Executor):
    """Takes submissions without running anything."""

    name = "recording"

    def __init__(self, paths):
        super().__init__(paths)
        self.specs = []

    def submit(self, spec):
        self.specs.append(spec)
        return f"run-{len(self.specs)}"

    def cancel(self, run_id):
        raise NotImplementedError

    def reconcile(self):
        pass


def test_resample_subjects_draws_with_replacement_and_keeps_ids_unique():
    ids = [f"s{i}" for i in range(200)]
    drawn = resample_subjects(ids, seed=4)
    originals = [original for original, _ in drawn]
    new_ids = [new for _, new in drawn]
    assert len(drawn) == 200
    assert len(set(new_ids)) == 200
    assert set(originals) < set(ids)  # some subjects are left out...
    repeated = [new for original, new in drawn if new != original]
    assert repeated and all("#" in new for new in repeated)  # ...and some drawn more than once
    assert 0.55 < len(set(originals)) / 200 < 0.72  # about 1 - 1/e of them appear
    assert resample_subjects(ids, seed=4) == drawn
    assert resample_subjects(ids, seed=5) != drawn


def test_bootstrap_tables_repeat_the_original_rows(workspace, tmp_path):
    spec = tiny_spec(workspace)
    original = load_tables(spec.sources, spec.id_column)
    sources = write_bootstrap_tables(spec, seed=1, folder=tmp_path)
    resampled = load_tables(sources, original.id_column)  # passes validation: ids are unique
    assert resampled.modalities == original.modalities
    for modality, frame in resampled.tables.items():
        assert len(frame) == len(original.tables[modality])
        source_ids = [subject.split("#")[0] for subject in frame.index]
        expected = original.tables[modality].loc[source_ids].to_numpy()
        pd.testing.assert_frame_equal(
            frame.reset_index(drop=True), pd.DataFrame(expected, columns=frame.columns), check_dtype=False
        )


def test_latent_grid_is_every_combination_and_checks_values():
    assert latent_settings({"a": [1, 2], "b": [3]}) == [{"a": 1, "b": 3}, {"a": 2, "b": 3}]
    assert latent_settings(None) is None
    assert parse_latent_grid(["a=1,2", "b=3"]) == {"a": [1, 2], "b": [3]}
    with pytest.raises(UserInputError, match=">= 1"):
        latent_settings({"a": [0, 1]})
    with pytest.raises(UserInputError, match="NAME=K"):
        parse_latent_grid(["a:1,2"])


def test_launch_puts_seeds_grid_and_bootstraps_in_one_group(workspace):
    spec = tiny_spec(workspace)
    first = spec.modalities[0].name
    executor = RecordingExecutor(workspace)
    sweep = launch_sweep(executor, spec, seeds=[3, 4], bootstraps=2, latent_grid={first: [1, 2]})

    # 2 settings x 2 seeds on the data, then 2 settings x 2 resamples with the first seed
    assert len(executor.specs) == 8
    assert {s.group_id for s in executor.specs} == {sweep.group_id}
    roles = [(m.role, m.seed, m.setting.split(",")[0], m.bootstrap) for m in sweep.members]
    assert roles[:4] == [(SEED_RUN, 3, f"{first}=1", None), (SEED_RUN, 4, f"{first}=1", None),
                         (SEED_RUN, 3, f"{first}=2", None), (SEED_RUN, 4, f"{first}=2", None)]
    assert sorted(roles[4:]) == sorted([(BOOTSTRAP_RUN, 3, f"{first}={k}", b) for k in (1, 2) for b in (1, 2)])
    for spec_, member in zip(executor.specs, sweep.members):
        if member.role == BOOTSTRAP_RUN:
            assert all(f"bootstrap-{member.bootstrap}" in s.path for s in spec_.sources)
        else:
            assert spec_.sources == spec.sources
    assert Sweep.load(sweep.group_id, workspace) == sweep
    with pytest.raises(UserInputError, match="does not have"):
        launch_sweep(executor, spec, seeds=[0], latent_grid={"nope": [1]})


def test_number_of_latents_is_chosen_by_the_seed_runs_lowest_validation_loss():
    members = [
        SweepMember("a0", SEED_RUN, 0, "x=1"), SweepMember("a1", SEED_RUN, 1, "x=1"),
        SweepMember("b0", SEED_RUN, 0, "x=2"), SweepMember("b1", SEED_RUN, 1, "x=2"),
        SweepMember("bb", BOOTSTRAP_RUN, 0, "x=1", bootstrap=1),
    ]
    runs = {
        "a0": SimpleNamespace(status=SUCCEEDED, val_loss=5.0), "a1": SimpleNamespace(status=SUCCEEDED, val_loss=4.0),
        "b0": SimpleNamespace(status=SUCCEEDED, val_loss=4.5), "b1": SimpleNamespace(status="failed", val_loss=1.0),
        "bb": SimpleNamespace(status=SUCCEEDED, val_loss=0.1),  # bootstraps do not vote
    }
    table = choose_latents(members, runs).set_index("setting")
    assert table.loc["x=1", "best_val_loss"] == 4.0 and table.loc["x=1", "mean_val_loss"] == 4.5
    assert table.loc["x=2", "succeeded"] == 1 and table.loc["x=2", "best_val_loss"] == 4.5
    assert table["chosen"].tolist() == [True, False]


@pytest.mark.slow
def test_sweep_with_grid_and_bootstrap_feeds_stability(workspace, capsys):
    spec = tiny_spec(workspace, epochs=3)
    first = spec.modalities[0].name
    executor = LocalSubprocessExecutor(workspace, max_concurrent=2)
    try:
        sweep = launch_sweep(executor, spec, seeds=[0], bootstraps=1, latent_grid={first: [1, 2]})
        finished = [executor.wait(run_id, timeout=240, poll_s=0.5) for run_id in sweep.run_ids]
    finally:
        for run in list_runs(workspace, statuses=[QUEUED, RUNNING]):
            executor.cancel(run.id)
    assert [run.status for run in finished] == [SUCCEEDED] * 4, [run.error for run in finished]

    summary = summarise(sweep.group_id, workspace)
    choice = summary.latent_choice
    assert choice["succeeded"].tolist() == [1, 1]
    assert summary.chosen_setting == choice.loc[choice["best_val_loss"].idxmin(), "setting"]
    # the chosen setting's seed run and its bootstrap run
    assert len(summary.stability.run_ids) == 2
    assert set(summary.stability.latent_stability["latent"]) == set(
        read_latents(finished[0].out_dir).columns if summary.chosen_setting.startswith(f"{first}=1")
        else read_latents(finished[1].out_dir).columns
    )
    assert summary.stability.latent_stability["stability"].between(0, 1).all()
    bootstrap = next(m for m in sweep.members if m.role == BOOTSTRAP_RUN and m.setting == summary.chosen_setting)
    bootstrap_ids = read_latents(next(r.out_dir for r in finished if r.id == bootstrap.run_id)).index.astype(str)
    assert bootstrap_ids.str.contains("#").any()  # repeated subjects made it through training

    assert cli.main(["sweep", "--summarise", sweep.group_id]) == 0
    assert f"chosen latents: {summary.chosen_setting}" in capsys.readouterr().out
    written = pd.read_csv(sweep_folder(workspace, sweep.group_id) / "latent_choice.csv")
    assert written["setting"].tolist() == choice["setting"].tolist()
    assert (sweep_folder(workspace, sweep.group_id) / "edge_support.csv").is_file()
