"""Turning Train-page choices into RunSpecs, comparing runs, and the pre-flight estimate."""

from __future__ import annotations

import pytest

from mmcrl_core.config import ModalitySpec, RunSpec, TrainConfig
from mmcrl_core.errors import UserInputError
from mmcrl_core.hardware import detect_hardware, format_seconds, preflight
from mmcrl_core.run_compare import config_differences, flatten
from mmcrl_core.run_setup import build_spec, latent_grid, parse_int_list
from mmcrl_core.run_store import create_run
from tests.jobs_fixtures import tiny_dataset


@pytest.mark.parametrize(
    ("text", "expected"), [("0", [0]), ("0, 1,2", [0, 1, 2]), ("1-3, 3, 5", [1, 2, 3, 5]), ("2..4", [2, 3, 4])]
)
def test_parse_int_list_accepts_lists_and_ranges(text, expected):
    assert parse_int_list(text, "seeds") == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "at least one"), ("one", "not a whole number"), ("4-2", "not a whole number"), ("9", "between 1 and 3")],
)
def test_parse_int_list_explains_bad_input(text, message):
    with pytest.raises(UserInputError, match=message):
        parse_int_list(text, "latents", low=1, high=3)


def test_latent_grid_is_every_combination_and_bounded():
    assert latent_grid({"a": [1, 2], "b": [3]}) == [{"a": 1, "b": 3}, {"a": 2, "b": 3}]
    with pytest.raises(UserInputError, match="combinations"):
        latent_grid({m: list(range(1, 5)) for m in "abcd"})  # 256


def test_build_spec_from_a_stored_dataset(workspace):
    dataset = tiny_dataset(workspace)
    names = dataset.modality_names
    spec = build_spec(
        dataset, workspace, latents={n: 2 for n in names}, nuisance={names[0]: 0},
        model={"a_sp": 0.1}, train={"epochs": 7, "seed": 3}, causal_order=names[::-1], name="  my run ",
    )
    assert spec.name == "my run" and spec.dataset_id == dataset.id
    assert [s.modality for s in spec.sources] == names and all(s.path.endswith(".parquet") for s in spec.sources)
    assert spec.modality_order() == names[::-1]
    assert spec.modalities[0].nuisance == 0 and spec.model.a_sp == 0.1 and spec.train.epochs == 7
    with pytest.raises(UserInputError, match="every modality once"):
        build_spec(dataset, workspace, latents={n: 2 for n in names}, nuisance={}, causal_order=names[:1])
    with pytest.raises(UserInputError, match="lr: Input should be greater than 0"):
        build_spec(dataset, workspace, latents={n: 2 for n in names}, nuisance={}, train={"lr": -1})


def test_config_differences_lists_only_what_differs(workspace):
    base = RunSpec(modalities=[ModalitySpec(name="a"), ModalitySpec(name="b")], train=TrainConfig(seed=0))
    other = base.model_copy(
        update={"modalities": [ModalitySpec(name="a", latents=4), ModalitySpec(name="b")],
                "train": base.train.model_copy(update={"seed": 1}), "name": "renamed"}
    )
    runs = [create_run(base, paths=workspace), create_run(other, paths=workspace)]
    differences = config_differences(runs)
    assert sorted(differences.index) == ["modalities.a.latents", "train.seed"]
    assert differences.loc["train.seed"].tolist() == [0, 1]
    assert flatten({"modalities": [{"name": "x", "latents": 2}]}) == {"modalities.x.latents": 2}


@pytest.mark.slow
def test_preflight_times_the_real_model():
    spec = RunSpec(modalities=[ModalitySpec(name="a", latents=2), ModalitySpec(name="b", latents=2)],
                   train=TrainConfig(device="cpu", epochs=10, batch_size=64))
    small = preflight(spec, 200, {"a": 5, "b": 5}, timed_steps=1)
    large = preflight(spec, 20_000, {"a": 5, "b": 5}, timed_steps=1)
    assert small.batches_per_epoch == 3 and large.batches_per_epoch == 250
    assert small.parameters > 0 and small.parameters == large.parameters
    assert 0 < small.seconds_per_epoch < large.seconds_per_epoch
    assert small.memory_bytes < large.memory_bytes
    assert "per epoch on cpu" in small.describe()
    assert detect_hardware().cpu_cores >= 1


def test_format_seconds_reads_naturally():
    assert [format_seconds(s) for s in (0.25, 12.34, 600, 9000, None)] == ["250 ms", "12.3 s", "10 min", "2.5 h",
                                                                          "unknown"]


def test_a_range_longer_than_allowed_is_refused_with_the_count():
    assert parse_int_list("0-19", "seeds", max_count=20) == list(range(20))
    with pytest.raises(UserInputError, match="seeds: 101 values given; at most 20"):
        parse_int_list("0-100", "seeds", max_count=20)
