"""load_tables / wide tables / the `validate` command: what comes out when the data is good."""

import hashlib

import numpy as np
import pandas as pd
import pytest

from mmcrl_core.cli import main
from mmcrl_core.datasets import (
    COVARIATES,
    assign_by_patterns,
    assign_by_prefix,
    inspect_wide_table,
    load_tables,
    load_wide_table,
    parse_source,
    read_tables,
)
from mmcrl_core.errors import UserInputError


def frame(n=30, columns=("a", "b"), start=0, seed=0):
    rng = np.random.default_rng(seed)
    ids = [f"{i:03d}" for i in range(start, start + n)]
    return pd.DataFrame(rng.normal(size=(n, len(columns))), columns=list(columns)).assign(
        subject_id=ids)[["subject_id", *columns]]


def test_parse_source_forms():
    assert parse_source("blood=data/b.csv").modality == "blood"
    assert parse_source("data/sleep.tsv").modality == "sleep"
    source = parse_source("omics=data/book.xlsx#proteins")
    assert (source.path, source.sheet) == ("data/book.xlsx", "proteins")
    assert parse_source("/tmp/a=b/x.csv").path == "/tmp/a=b/x.csv"  # '=' inside a path is not a name


def test_tables_are_indexed_by_text_ids_and_keep_raw_values(tmp_path):
    frame(30).to_csv(tmp_path / "blood.csv", index=False)
    frame(30, ("x", "y", "z"), start=10, seed=1).to_parquet(tmp_path / "sleep.parquet")
    tables = load_tables([tmp_path / "blood.csv", f"sleep={tmp_path / 'sleep.parquet'}"])
    assert tables.modalities == ["blood", "sleep"] and tables.id_column == "subject_id"
    assert tables.tables["blood"].index[0] == "000"  # leading zeros kept: ids are text
    assert tables.sha256["blood"] == hashlib.sha256((tmp_path / "blood.csv").read_bytes()).hexdigest()
    assert len(tables.subject_ids("mask")) == 40 and len(tables.subject_ids("complete")) == 20
    summary = tables.summary().set_index("modality")
    assert summary.loc["sleep", "columns"] == 3 and summary.loc["blood", "subjects"] == 30
    overlap = tables.overlap().set_index("modalities")["subjects"].to_dict()
    assert overlap == {"blood + sleep": 20, "blood": 10, "sleep": 10}
    assert tables.overlap_matrix().loc["blood", "sleep"] == 20


def test_integer_and_float_ids_match_across_files(tmp_path):
    rng = np.random.default_rng(0)
    a = pd.DataFrame({"eid": range(25), "v": rng.normal(size=25)})
    b = pd.DataFrame({"eid": [float(i) for i in range(25)], "w": rng.normal(size=25)})
    a.to_csv(tmp_path / "a.csv", index=False)
    b.to_parquet(tmp_path / "b.parquet")
    b.rename(columns={"w": "u"}).to_csv(tmp_path / "c.csv", index=False)  # ids written as "3.0"
    assert "3.0," in (tmp_path / "c.csv").read_text()
    tables = load_tables([tmp_path / "a.csv", tmp_path / "b.parquet", tmp_path / "c.csv"])
    assert len(tables.subject_ids("complete")) == 25


def test_missing_values_are_kept_not_dropped(tmp_path):
    data = frame(30)
    data.loc[[3, 7], "a"] = np.nan
    data.to_csv(tmp_path / "m.csv", index=False)
    frame(30, ("c",)).to_csv(tmp_path / "n.csv", index=False)
    tables = load_tables([tmp_path / "m.csv", tmp_path / "n.csv"])
    assert tables.tables["m"]["a"].isna().sum() == 2
    assert tables.summary().set_index("modality").loc["m", "missing_cells"] == 2


def test_covariates_are_kept_apart(tmp_path):
    frame(30).to_csv(tmp_path / "m.csv", index=False)
    frame(30, ("c",)).to_csv(tmp_path / "n.csv", index=False)
    pd.DataFrame({"subject_id": [f"{i:03d}" for i in range(30)], "age": range(30), "sex": ["F", "M"] * 15}).to_csv(
        tmp_path / "cov.csv", index=False)
    tables = load_tables([tmp_path / "m.csv", tmp_path / "n.csv"], covariates=str(tmp_path / "cov.csv"))
    assert tables.modalities == ["m", "n"]
    assert list(tables.covariates.columns) == ["age", "sex"] and tables.covariates.index[5] == "005"


def test_wide_table_by_prefix_pattern_and_hand(tmp_path):
    wide = frame(30, ("blood_hdl", "blood_ldl", "sleep_ahi", "sleep_tst", "age"))
    wide.to_csv(tmp_path / "wide.csv", index=False)
    by_prefix = assign_by_prefix(wide.columns, "_", id_column="subject_id")
    assert by_prefix == {"subject_id": "", "blood_hdl": "blood", "blood_ldl": "blood", "sleep_ahi": "sleep",
                         "sleep_tst": "sleep", "age": ""}
    by_pattern = assign_by_patterns(wide.columns, {"lipids": "hdl|ldl", "sleep": "^sleep"}, "subject_id")
    assert by_pattern["blood_ldl"] == "lipids" and by_pattern["sleep_tst"] == "sleep" and by_pattern["age"] == ""
    by_hand = {**by_prefix, "age": COVARIATES}
    tables = load_wide_table(tmp_path / "wide.csv", by_hand)
    assert tables.modalities == ["blood", "sleep"]
    assert list(tables.tables["sleep"].columns) == ["sleep_ahi", "sleep_tst"]
    assert list(tables.covariates.columns) == ["age"]
    # the assignment is part of the identity: same file, other split, other fingerprint
    other = load_wide_table(tmp_path / "wide.csv", by_pattern)
    assert other.fingerprint() != tables.fingerprint()


def test_wide_table_problems(tmp_path):
    frame(30, ("x_a", "x_b")).to_csv(tmp_path / "wide.csv", index=False)
    _, problems = inspect_wide_table(tmp_path / "wide.csv", {"nope": "m"})
    messages = " ".join(p.message for p in problems)
    assert "not in the file: nope" in messages and "no column is assigned" in messages
    with pytest.raises(UserInputError, match="not a valid regular expression"):
        assign_by_patterns(["a"], {"m": "("})


def test_validate_command_reports_and_exits(tmp_path, capsys):
    frame(30).to_csv(tmp_path / "m.csv", index=False)
    frame(30, ("c", "d")).to_csv(tmp_path / "n.csv", index=False)
    assert main(["validate", str(tmp_path / "m.csv"), f"other={tmp_path / 'n.csv'}"]) == 0
    out = capsys.readouterr().out
    assert "OK: 30 subjects" in out and "other" in out
    assert main(["validate", str(tmp_path / "m.csv"), f"other={tmp_path / 'n.csv'}", "--show-columns"]) == 0
    assert "numeric: standardised with the training mean and sd" in capsys.readouterr().out
    (tmp_path / "bad.csv").write_text("subject_id,a\n1,2\n1,3\n")
    assert main(["validate", str(tmp_path / "m.csv"), str(tmp_path / "bad.csv"), "--latents", "m=3"]) == 2
    out = capsys.readouterr().out
    assert "ERROR" in out and "duplicate subject id(s): 1" in out and "too few columns" in out
    assert "fix:" in out
    assert main(["validate", str(tmp_path / "m.csv"), "--latents", "m=x"]) == 2


def test_id_column_detection(tmp_path):
    (tmp_path / "a.csv").write_text("code,v\n" + "".join(f"X{i},{i * 0.37 % 1:.3f}\n" for i in range(25)))
    assert load_tables([tmp_path / "a.csv"]).id_column == "code"  # unique first column of labels
    (tmp_path / "b.csv").write_text("weight,v\n" + "".join(f"{60 + i * 0.37:.2f},{i % 4}\n" for i in range(25)))
    with pytest.raises(UserInputError, match="no subject-id column found"):
        load_tables([tmp_path / "b.csv"])  # unique decimals are a measurement, not an id


def test_excel_sheet_source_and_covariates_from_the_command_line(tmp_path, capsys):
    with pd.ExcelWriter(tmp_path / "book.xlsx") as writer:
        frame(25).to_excel(writer, sheet_name="blood", index=False)
        frame(25, ("x", "y", "z"), seed=3).to_excel(writer, sheet_name="sleep", index=False)
    tables = load_tables([f"blood={tmp_path / 'book.xlsx'}#blood", f"sleep={tmp_path / 'book.xlsx'}#sleep"])
    assert list(tables.tables["sleep"].columns) == ["x", "y", "z"]
    assert tables.tables["blood"].index[0] == "000"  # id text kept, not read as the number 0
    pd.DataFrame({"subject_id": range(25), "age": range(40, 65)}).to_csv(tmp_path / "cov.csv", index=False)
    code = main(["validate", f"blood={tmp_path / 'book.xlsx'}#blood", f"sleep={tmp_path / 'book.xlsx'}#sleep",
                 "--covariates", str(tmp_path / "cov.csv"), "--join", "complete"])
    assert code == 0 and "OK: 25 subjects (complete join)" in capsys.readouterr().out


def test_read_tables_accepts_a_few_new_subjects_but_still_checks_ids(tmp_path):
    frame(3).to_csv(tmp_path / "m.csv", index=False)
    tables = read_tables([tmp_path / "m.csv"])
    assert len(tables.subject_ids()) == 3
    with pytest.raises(UserInputError, match="too few subjects"):
        load_tables([tmp_path / "m.csv"])
    frame(3).assign(subject_id="001").to_csv(tmp_path / "dup.csv", index=False)
    with pytest.raises(UserInputError, match="duplicate subject id"):
        read_tables([tmp_path / "dup.csv"])
