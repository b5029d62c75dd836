"""Preprocessor: a decision and a reason for every column, fitted on the training subjects only."""

import json

import numpy as np
import pandas as pd
import pytest

from mmcrl_core.errors import UserInputError
from mmcrl_core.preprocessing import Preprocessor, plan_column


def ids(n, start=0):
    return pd.Index([f"s{i}" for i in range(start, start + n)], name="subject_id")


@pytest.fixture
def mixed():
    rng = np.random.default_rng(0)
    n = 40
    return pd.DataFrame({
        "weight": rng.normal(70, 10, n),
        "sex": rng.choice(["F", "M"], n),
        "smoker": rng.choice([0.0, 1.0], n),
        "blood_group": rng.choice(["A", "B", "AB", "O"], n),
        "city": [f"city {i % 15}" for i in range(n)],
        "notes": [f"patient reported something different number {i}" for i in range(n)],
        "visit": pd.date_range("2020-01-01", periods=n).astype(str),
        "patient_id": [f"P{i}" for i in range(n)],
        "row": np.arange(1, n + 1),
        "constant": 5.0,
        "empty": np.nan,
    }, index=ids(n))


def decision_of(pre, column):
    row = pre.decisions.set_index("column").loc[column]
    return row["decision"], row["reason"]


def test_every_column_gets_a_decision_and_a_reason(mixed):
    pre = Preprocessor.fit({"m": mixed})
    expected = {
        "weight": ("numeric", "standardised"),
        "sex": ("binary", "indicator of 'M'"),
        "smoker": ("numeric", "binary numeric"),
        "blood_group": ("one-hot", "4 values"),
        "city": ("excluded", "over the cap of 10"),
        "notes": ("excluded", "free text"),
        "visit": ("excluded", "dates"),
        "patient_id": ("excluded", "id-like"),
        "row": ("excluded", "row counter"),
        "constant": ("dropped", "constant"),
        "empty": ("dropped", "all values missing"),
    }
    for column, (decision, words) in expected.items():
        got, reason = decision_of(pre, column)
        assert got == decision and words in reason, (column, got, reason)
    assert list(pre.decisions.columns[:4]) == ["modality", "column", "decision", "reason"]
    assert pre.feature_names["m"] == ["weight", "sex=M", "smoker", "blood_group=A", "blood_group=AB",
                                      "blood_group=B", "blood_group=O"]


def test_the_category_cap_is_a_parameter(mixed):
    assert decision_of(Preprocessor.fit({"m": mixed}, max_categories=15), "city")[0] == "one-hot"
    assert decision_of(Preprocessor.fit({"m": mixed}, max_categories=3), "blood_group")[0] == "excluded"


def test_datetime_dtype_is_excluded():
    values = pd.Series(pd.date_range("2020-01-01", periods=30))
    assert plan_column("m", "when", values).decision == "excluded"


def test_scaling_uses_training_subjects_only():
    frame = pd.DataFrame({"x": np.r_[np.zeros(20), np.full(20, 10.0)] + np.tile([0.0, 1.0], 20)}, index=ids(40))
    train = frame.index[:20]
    pre = Preprocessor.fit({"m": frame}, train)
    subject_ids, arrays = pre.transform({"m": frame})
    x = arrays["m"][:, 0]
    assert arrays["m"].dtype == np.float32 and list(subject_ids) == list(frame.index)
    assert x[:20].mean() == pytest.approx(0, abs=1e-6) and x[:20].std() == pytest.approx(1, abs=1e-5)
    assert x[20:].mean() > 15  # the held-out subjects are scaled with the training statistics


def test_inf_becomes_missing_with_the_reason_saying_so():
    frame = pd.DataFrame({"x": np.r_[np.arange(29.0) ** 1.5, np.inf]}, index=ids(30))
    pre = Preprocessor.fit({"m": frame})
    assert "1 +-inf value(s) treated as missing" in decision_of(pre, "x")[1]
    _, arrays = pre.transform({"m": frame})
    assert np.isnan(arrays["m"][29, 0]) and np.isfinite(arrays["m"][:29]).all()


def test_missing_cells_and_modalities_stay_missing():
    a = pd.DataFrame({"x": np.arange(30.0) ** 2, "c": ["u", "v", None] * 10}, index=ids(30))
    b = pd.DataFrame({"y": np.sin(np.arange(20.0))}, index=ids(20, start=20))
    pre = Preprocessor.fit({"a": a, "b": b}, join="mask")
    subject_ids, arrays = pre.transform({"a": a, "b": b})
    assert len(subject_ids) == 40
    assert np.isnan(arrays["b"][:20]).all() and np.isnan(arrays["a"][30:]).all()  # absent modality rows
    assert np.isnan(arrays["a"][2, 1])  # the missing category cell, not imputed, not a zero
    complete = Preprocessor.fit({"a": a, "b": b}, join="complete")
    subject_ids, arrays = complete.transform({"a": a, "b": b})
    assert list(subject_ids) == [f"s{i}" for i in range(20, 30)]
    assert not np.isnan(arrays["b"]).any()


def test_json_round_trip_transforms_identically(mixed):
    pre = Preprocessor.fit({"m": mixed}, mixed.index[:30], join="complete", id_column="subject_id")
    again = Preprocessor.from_dict(json.loads(json.dumps(pre.to_dict())))
    assert again.join == "complete" and again.id_column == "subject_id"
    first, second = pre.transform({"m": mixed}), again.transform({"m": mixed})
    np.testing.assert_array_equal(first[1]["m"], second[1]["m"])
    assert again.feature_names == pre.feature_names


def test_new_data_is_encoded_like_training_data(mixed):
    pre = Preprocessor.fit({"m": mixed})
    new = mixed.iloc[:3].copy()
    new["blood_group"] = ["A", "unseen", None]
    _, arrays = pre.transform({"m": new})
    names = pre.feature_names["m"]
    group = arrays["m"][:, [names.index(f"blood_group={g}") for g in ("A", "AB", "B", "O")]]
    raw = (group * np.array([pre.plans["m"][3].std])) + np.array([pre.plans["m"][3].mean])
    np.testing.assert_allclose(raw[0], [1, 0, 0, 0], atol=1e-5)
    np.testing.assert_allclose(raw[1], [0, 0, 0, 0], atol=1e-5)  # unseen value: no indicator set
    assert np.isnan(raw[2]).all()
    with pytest.raises(UserInputError, match="lacks column"):
        pre.transform({"m": new.drop(columns=["weight"])})


def test_a_modality_with_nothing_usable_is_an_error():
    frame = pd.DataFrame({"k": 1.0, "e": np.nan}, index=ids(25))
    with pytest.raises(UserInputError, match="no usable column in modality 'm'"):
        Preprocessor.fit({"m": frame})
