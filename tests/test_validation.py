"""validate_sources: every bad input gives a message naming file, column, rows and what to do,
and all problems come back at once."""

import numpy as np
import pytest

from mmcrl_core.datasets import MIN_SUBJECTS, load_tables, validate_sources
from mmcrl_core.errors import UserInputError
from mmcrl_core.problems import DataProblemsError, problems_frame


def table(tmp_path, name, n=30, columns=("a", "b", "c"), start=0, id_name="subject_id", rows=None, seed=0):
    rng = np.random.default_rng(seed)
    lines = [",".join([id_name, *columns])]
    for i in range(start, start + n):
        lines.append(",".join([f"S{i:03d}", *(f"{v:.3f}" for v in rng.normal(size=len(columns)))]))
    for row in rows or []:
        lines.append(row)
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def errors_of(problems):
    return [p for p in problems if p.is_error]


def the_error(problems, text):
    found = [p for p in errors_of(problems) if text in p.message]
    assert found, f"no error containing {text!r} in {[p.message for p in problems]}"
    return found[0]


def test_good_data_has_no_problem(tmp_path):
    problems = validate_sources([f"blood={table(tmp_path, 'b.csv')}", str(table(tmp_path, 'sleep.csv', seed=1))])
    assert problems == []


def test_duplicate_ids_are_listed(tmp_path):
    path = table(tmp_path, "b.csv", rows=["S001,1,2,3", "S002,1,2,3", "S001,4,5,6"])
    problem = the_error(validate_sources([path, table(tmp_path, "s.csv")]), "duplicate subject id")
    assert problem.file == "b.csv" and problem.column == "subject_id"
    assert "2 duplicate subject id(s): S001, S002" in problem.message
    assert problem.rows == "3, 4, 32, 33, 34"  # file rows, header is row 1
    assert "one row per subject" in problem.fix


def test_missing_ids_name_the_rows(tmp_path):
    path = table(tmp_path, "b.csv", rows=[",1,2,3", "NA,1,2,3"])
    problem = the_error(validate_sources([path, table(tmp_path, "s.csv")]), "no subject id")
    assert problem.message.startswith("2 row(s) have no subject id") and problem.rows == "32, 33"


def test_no_subject_shared_across_modalities(tmp_path):
    other = tmp_path / "s.csv"
    other.write_text("subject_id,x,y\n" + "".join(f"{i},{i},{i * 2 % 7}\n" for i in range(40)))
    problems = validate_sources([table(tmp_path, "b.csv"), other])
    problem = the_error(problems, "no subject is shared with the other modalities")
    assert "S000" in problem.message and "same subject ids" in problem.fix


def test_too_few_subjects_says_the_minimum(tmp_path):
    problems = validate_sources([table(tmp_path, "b.csv", n=5), table(tmp_path, "s.csv", n=5)])
    problem = the_error(problems, "too few subjects")
    assert f"5 subjects; at least {MIN_SUBJECTS} are needed" in problem.message


def test_complete_join_counts_only_subjects_with_every_modality(tmp_path):
    sources = [table(tmp_path, "b.csv", n=30), table(tmp_path, "s.csv", n=30, start=25)]
    assert errors_of(validate_sources(sources, join="mask")) == []
    problem = the_error(validate_sources(sources, join="complete"), "too few subjects")
    assert "5 subjects with every modality" in problem.message and "mask" in problem.fix


def test_too_few_columns_for_the_latents_asked(tmp_path):
    sources = [f"blood={table(tmp_path, 'b.csv', columns=('a', 'b'))}", table(tmp_path, "s.csv")]
    problem = the_error(validate_sources(sources, latents={"blood": 3, "s": 2}), "too few columns")
    assert "modality 'blood' has 2 usable column(s) but 3 latent(s) were asked" in problem.message
    assert "at most 2 latent(s)" in problem.fix
    assert errors_of(validate_sources(sources, latents=2)) == []


def test_modality_without_usable_columns(tmp_path):
    path = tmp_path / "b.csv"
    path.write_text("subject_id,const,empty\n" + "".join(f"S{i:03d},1,\n" for i in range(30)))
    problem = the_error(validate_sources([path, table(tmp_path, "s.csv")]), "no usable column")
    assert "const: dropped (constant" in problem.message


def test_mixed_type_and_inf_are_warnings_that_name_rows(tmp_path):
    path = table(tmp_path, "b.csv", rows=["S900,<5,1,2", "S901,inf,1,2"])
    problems = validate_sources([path, table(tmp_path, "s.csv")])
    assert errors_of(problems) == []
    mixed = next(p for p in problems if "mixed-type" in p.message)
    assert (mixed.file, mixed.column, mixed.rows) == ("b.csv", "a", "32")
    infinite = next(p for p in problems if "+-inf" in p.message)
    assert (infinite.column, infinite.rows) == ("a", "33") and "treated as missing" in infinite.message


def test_file_over_the_size_cap(tmp_path, monkeypatch):
    monkeypatch.setenv("MMCRL_MAX_UPLOAD_MB", "0.0005")
    problems = validate_sources([table(tmp_path, "b.csv"), table(tmp_path, "s.csv")])
    assert {p.file for p in errors_of(problems) if "MB cap" in p.message} == {"b.csv", "s.csv"}


def test_every_problem_is_reported_at_once(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    header = tmp_path / "header.csv"
    header.write_text("subject_id,a\n")
    binary = tmp_path / "binary.tsv"
    binary.write_bytes(b"\x00\x01\x02" * 100)
    semicolon_colon = tmp_path / "colon.csv"
    semicolon_colon.write_text("subject_id:a\n1:2\n")
    dup = table(tmp_path, "dup.csv", rows=["S001,1,2,3"])
    problems = validate_sources([empty, header, binary, semicolon_colon, dup, table(tmp_path, "ok.csv")])
    messages = {p.file: p.message for p in errors_of(problems)}
    assert "the file is empty" in messages["empty.csv"]
    assert "header row but no data rows" in messages["header.csv"]
    assert "binary" in messages["binary.tsv"]
    assert "wrong delimiter" in messages["colon.csv"]
    assert "duplicate subject id" in messages["dup.csv"]
    frame = problems_frame(problems)
    assert list(frame.columns) == ["severity", "file", "column", "rows", "message", "fix"]
    assert len(frame) == len(problems) >= 5


def test_chosen_id_column_must_exist_everywhere(tmp_path):
    problems = validate_sources([table(tmp_path, "b.csv"), table(tmp_path, "s.csv", id_name="eid")],
                                id_column="eid")
    problem = the_error(problems, "no subject-id column 'eid'")
    assert problem.file == "b.csv" and "subject_id, a, b, c" in problem.message


def test_no_id_column_found(tmp_path):
    path = tmp_path / "b.csv"
    path.write_text("x,y\n" + "".join(f"{i % 3}.5,{i}\n" for i in range(30)))
    problem = the_error(validate_sources([path]), "no subject-id column found")
    assert "--id-column" in problem.fix


def test_modality_given_twice(tmp_path):
    path = table(tmp_path, "b.csv")
    assert the_error(validate_sources([f"x={path}", f"x={table(tmp_path, 's.csv')}"]), "given twice")


def test_load_tables_raises_with_every_error_listed(tmp_path):
    with pytest.raises(DataProblemsError) as info:
        load_tables([table(tmp_path, "b.csv", n=3, rows=["S000,1,2,3"]), tmp_path / "missing.csv"])
    assert isinstance(info.value, UserInputError)
    text = str(info.value)
    assert "duplicate subject id" in text and "file not found" in text
    assert len(errors_of(info.value.problems)) == 2


def test_without_a_shared_id_column_each_file_is_still_checked(tmp_path):
    blood = table(tmp_path, "b.csv", rows=["S001,1,2,3"])
    sleep = table(tmp_path, "s.csv", id_name="eid")
    problems = validate_sources([blood, sleep])
    shared = the_error(problems, "no subject-id column found in every file")
    assert "b.csv: 'subject_id'; s.csv: 'eid'" in shared.message
    assert the_error(problems, "duplicate subject id").file == "b.csv"
