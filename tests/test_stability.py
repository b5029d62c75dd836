"""stability.py: latent matching across seeds, latent stability and edge support."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from graph_run_fixture import LATENTS, TRUE_EDGES, make_run_folder, seed_group

from mmcrl_core import runfolder as rf
from mmcrl_core.errors import UserInputError
from mmcrl_core.stability import group_support_graph, match_latents, run_stability


def test_matching_recovers_the_permutation_of_a_seed(tmp_path):
    permutation = {"sleep:1": "sleep:2", "sleep:2": "sleep:3", "sleep:3": "sleep:1"}
    reference = rf.read_latents(make_run_folder(tmp_path / "a", seed=0))
    other = rf.read_latents(make_run_folder(tmp_path / "b", seed=1, permutation=permutation))
    to_reference, correlation = match_latents(reference, other)
    assert to_reference == {new: old for old, new in permutation.items()} | {"retina:1": "retina:1", "retina:2": "retina:2"}
    assert min(correlation.values()) > 0.9


def test_matching_stays_within_modality(tmp_path):
    reference = rf.read_latents(make_run_folder(tmp_path / "a"))
    other = reference.rename(columns={"sleep:1": "retina:9"})  # the same values, another modality
    to_reference, _ = match_latents(reference, other)
    assert to_reference.get("retina:9") != "sleep:1"


def test_support_is_one_for_an_edge_in_every_seed(tmp_path):
    runs = seed_group(tmp_path, seeds=3)
    report = run_stability(runs, reference=0)
    support = report.support_map()
    for edge in TRUE_EDGES:
        assert support[edge] == 1.0
    assert report.reference_run == "run-s0"
    assert report.edge_support["n_runs"].eq(3).all()
    stability = report.stability_map()
    assert set(stability) == set(LATENTS) and min(stability.values()) > 0.9


def test_an_edge_missing_in_one_seed_has_two_thirds_support(tmp_path):
    runs = seed_group(tmp_path, seeds=3, drop_in_last=(("sleep:2", "retina:2"),))
    support = run_stability(runs, reference=0).support_map()
    assert support[("sleep:2", "retina:2")] == pytest.approx(2 / 3)
    assert support[("sleep:1", "retina:1")] == 1.0


def test_support_is_reported_in_the_reference_runs_names(tmp_path):
    runs = seed_group(tmp_path, seeds=3)
    report = run_stability(runs, reference=runs[1])  # seed 1 renamed sleep:1 -> sleep:2
    assert report.reference_run == "run-s1"
    assert report.support_map()[("sleep:2", "retina:1")] == 1.0


def test_reference_defaults_to_lowest_validation_loss(tmp_path):
    runs = seed_group(tmp_path, seeds=3)
    for run_dir, loss in zip(runs, [3.0, 1.0, 2.0]):
        manifest = rf.read_manifest(run_dir)
        manifest["metrics"] = {"best_val_loss": loss}
        rf.write_json(run_dir / rf.MANIFEST, manifest)
    assert run_stability(runs).reference_run == "run-s1"


def test_bootstrap_resamples_with_repeated_subjects(tmp_path):
    reference = rf.read_latents(make_run_folder(tmp_path / "a"))
    rng = np.random.default_rng(0)
    resample = reference.iloc[rng.integers(0, len(reference), len(reference))]
    resample = resample + 0.1 * rng.normal(size=resample.shape)
    to_reference, correlation = match_latents(reference, resample)
    assert to_reference == {name: name for name in LATENTS}
    assert min(correlation.values()) > 0.9


def test_one_run_alone(tmp_path):
    report = run_stability([make_run_folder(tmp_path / "a")])
    assert all(value == 1.0 for value in report.support_map().values())
    assert all(math.isnan(v) for v in report.latent_stability["stability"])
    assert report.stability_map() == {}


def test_runs_without_common_subjects_are_a_user_error(tmp_path):
    reference = rf.read_latents(make_run_folder(tmp_path / "a"))
    other = reference.set_axis(pd.Index([f"X{i}" for i in range(len(reference))]), axis=0)
    with pytest.raises(UserInputError, match="subjects"):
        match_latents(reference, other)
    with pytest.raises(UserInputError):
        run_stability([])


def test_group_support_graph_puts_support_and_stability_on_the_graph(tmp_path):
    runs = seed_group(tmp_path, seeds=3, drop_in_last=(("sleep:2", "retina:2"),))
    graph, report = group_support_graph(runs[0], runs)
    assert graph.edges["sleep:1", "retina:1"]["support"] == 1.0
    assert graph.edges["sleep:2", "retina:2"]["support"] == pytest.approx(2 / 3)
    assert graph.graph["support_runs"] == 3
    assert graph.nodes["sleep:1"]["stability"] > 0.9
    alone, none = group_support_graph(runs[0], [runs[0]])
    assert none is None and alone.edges["sleep:1", "retina:1"]["support"] == 1.0
