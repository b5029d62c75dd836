"""Reading single tables: encodings, delimiters, formats and every unreadable-file message."""

import numpy as np
import pandas as pd
import pytest

from mmcrl_core.readers import infer_column_types, peek_columns, read_table, sniff_delimiter


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def only_error(result):
    assert result.frame is None
    [problem] = result.problems
    assert problem.is_error
    return problem


@pytest.mark.parametrize(
    "raw, encoding",
    [
        ("id,name\n1,Zoë\n2,Ægir\n".encode(), "utf-8"),
        (b"\xef\xbb\xbf" + "id,name\n1,Zoë\n2,Ægir\n".encode(), "utf-8-sig"),
        ("id,name\n1,Zoë\n2,Ægir\n".encode("latin-1"), "latin-1"),
    ],
)
def test_encodings_are_sniffed(tmp_path, raw, encoding):
    result = read_table(write(tmp_path, "t.csv", raw))
    assert result.encoding == encoding
    assert list(result.frame.columns) == ["id", "name"]  # the BOM is not glued to the first name
    assert result.frame["name"].tolist() == ["Zoë", "Ægir"]


@pytest.mark.parametrize("delimiter", [",", "\t", ";", "|"])
def test_delimiters_are_sniffed(tmp_path, delimiter):
    text = delimiter.join(["id", "a", "b"]) + "\n" + "\n".join(delimiter.join([str(i), "1.5", "x y"]) for i in range(5))
    result = read_table(write(tmp_path, "t.txt", text))
    assert result.delimiter == delimiter
    assert result.frame.shape == (5, 3)


def test_quoted_delimiters_do_not_fool_the_sniffer():
    assert sniff_delimiter('id;note\n1;"a, b, c"\n2;"d, e"\n') == ";"


def test_semicolon_files_with_decimal_commas(tmp_path):
    result = read_table(write(tmp_path, "eu.csv", "id;hdl;ldl\n001;1,5;-2,25\n002;3;4,0\n"))
    assert result.frame["hdl"].tolist() == [1.5, 3.0] and result.frame["ldl"].tolist() == [-2.25, 4.0]
    assert result.frame["id"].tolist() == ["001", "002"]
    assert "decimal commas" in result.problems[0].message


def test_tsv_named_file_with_commas_is_read_with_a_warning(tmp_path):
    result = read_table(write(tmp_path, "t.tsv", "id,a\n1,2\n2,3\n"))
    assert result.frame.shape == (2, 2)
    assert "separated by commas" in result.problems[0].message
    assert not result.problems[0].is_error


def test_empty_file(tmp_path):
    problem = only_error(read_table(write(tmp_path, "empty.csv", b"")))
    assert problem.file == "empty.csv"
    assert "the file is empty" in problem.message


def test_blank_lines_only_is_empty(tmp_path):
    assert "empty" in only_error(read_table(write(tmp_path, "blank.csv", "\n\n  \n"))).message


def test_header_only(tmp_path):
    problem = only_error(read_table(write(tmp_path, "head.csv", "id,a,b\n")))
    assert "header row but no data rows" in problem.message


def test_binary_content_is_not_a_table(tmp_path):
    problem = only_error(read_table(write(tmp_path, "image.csv", bytes(range(256)) * 4)))
    assert "not a table: the content is binary" in problem.message


def test_parquet_content_under_a_csv_name_says_what_it_is(tmp_path):
    pd.DataFrame({"id": [1, 2]}).to_parquet(tmp_path / "real.parquet")
    problem = only_error(read_table(write(tmp_path, "t.csv", (tmp_path / "real.parquet").read_bytes())))
    assert "Parquet" in problem.message and ".parquet" in problem.fix


def test_no_delimiter_found_is_a_wrong_delimiter_error(tmp_path):
    problem = only_error(read_table(write(tmp_path, "t.csv", "id:a:b\n1:2:3\n2:3:4\n")))
    assert "only one column found" in problem.message and "wrong delimiter" in problem.message


def test_ragged_rows_name_the_rows(tmp_path):
    text = "id,a,b\n1,2,3\n2,3,4,5\n3,1,2\n4,1,2,3,4\n" + "".join(f"{i},1,2\n" for i in range(5, 60))
    problem = only_error(read_table(write(tmp_path, "t.csv", text)))
    assert "different number of values than the header" in problem.message
    assert problem.rows == "3, 5"


def test_size_cap_is_checked_before_reading(tmp_path, monkeypatch):
    monkeypatch.setenv("MMCRL_MAX_UPLOAD_MB", "0.001")  # about 1 kB
    path = write(tmp_path, "big.csv", "id,a\n" + "1,2\n" * 1000)
    problem = only_error(read_table(path))
    assert "over the" in problem.message and "MB cap" in problem.message
    assert "MMCRL_MAX_UPLOAD_MB" in problem.fix


def test_missing_file(tmp_path):
    assert "file not found" in only_error(read_table(tmp_path / "nope.csv")).message


def test_parquet_round_trip_keeps_a_named_index(tmp_path):
    frame = pd.DataFrame({"a": [1.0, 2.0]}, index=pd.Index(["x", "y"], name="subject_id"))
    frame.to_parquet(tmp_path / "t.parquet")
    result = read_table(tmp_path / "t.parquet")
    assert list(result.frame.columns) == ["subject_id", "a"]
    assert result.row_offset == 1


def test_broken_parquet(tmp_path):
    problem = only_error(read_table(write(tmp_path, "t.parquet", b"PAR1 not really")))
    assert "not a readable Parquet file" in problem.message


def test_excel_sheet_is_chosen(tmp_path):
    path = tmp_path / "book.xlsx"
    with pd.ExcelWriter(path) as writer:
        pd.DataFrame({"id": [1, 2], "a": [1.0, 2.0]}).to_excel(writer, sheet_name="first", index=False)
        pd.DataFrame({"id": [1, 2], "b": ["x", "y"]}).to_excel(writer, sheet_name="second", index=False)
    assert list(read_table(path).frame.columns) == ["id", "a"]
    assert list(read_table(path, sheet="second").frame.columns) == ["id", "b"]
    assert peek_columns(path, "second") == ["id", "b"]
    problem = only_error(read_table(path, sheet="third"))
    assert "no sheet 'third'" in problem.message and "first, second" in problem.message


def test_numbers_in_text_become_numbers_and_slips_are_reported():
    frame = pd.DataFrame({"a": ["1", "2.5", "<5", None, "4", "5", "6"], "b": ["x", "y", "x", "y", "x", "1", "2"],
                          "c": ["inf", "-inf", "1", "2", "3", "4", "5"]})
    out, problems = infer_column_types(frame, "t.csv", row_offset=2)
    assert out["a"].dtype == np.float64 and np.isnan(out["a"].iloc[2])
    assert np.isinf(out["c"].iloc[0])  # +-inf are numbers here; preprocessing treats them as missing
    assert out["b"].tolist() == ["x", "y", "x", "y", "x", "1", "2"]
    by_column = {p.column: p for p in problems}
    assert "mixed-type column" in by_column["a"].message and by_column["a"].rows == "4"
    assert "'<5'" in by_column["a"].message
    assert "read as text" in by_column["b"].message and by_column["b"].rows == "7, 8"


def test_peek_columns_reads_only_the_header(tmp_path):
    assert peek_columns(write(tmp_path, "t.tsv", "id\tx\ty\n1\t2\t3\n")) == ["id", "x", "y"]
    assert peek_columns(write(tmp_path, "b.csv", bytes(range(256)))) == []


def test_long_text_cells_are_read(tmp_path):
    result = read_table(write(tmp_path, "long.csv", "id,a\n1," + "x" * 300_000 + "\n2,y\n"))
    assert result.frame.shape == (2, 2) and len(result.frame["a"].iloc[0]) == 300_000


def test_parser_failures_are_problems_not_tracebacks(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("boom")

    monkeypatch.setattr(pd, "read_csv", broken)
    problem = only_error(read_table(write(tmp_path, "t.csv", "id,a\n1,2\n")))
    assert "could not be read as a table (ValueError: boom)" in problem.message


def test_uploads_get_safe_names_and_the_size_cap(tmp_path, monkeypatch):
    from mmcrl_core.uploads import safe_filename, stage_upload

    assert safe_filename("../../etc/pass wd.csv") == "pass wd.csv"
    assert safe_filename("..\\..\\x<y>.tsv") == "x_y_.tsv"
    assert safe_filename(".hidden.csv") == "hidden.csv"
    path, problem = stage_upload("../b.csv", b"id,a\n1,2\n", root=tmp_path)
    assert problem is None and path.parent.parent == tmp_path and path.read_bytes() == b"id,a\n1,2\n"
    assert stage_upload("b.csv", b"id,a\n1,2\n", root=tmp_path)[0] == path  # same bytes, same file
    _, problem = stage_upload("notes.docx", b"x", root=tmp_path)
    assert "unsupported file type" in problem.message
    monkeypatch.setenv("MMCRL_MAX_UPLOAD_MB", "0.000001")
    _, problem = stage_upload("big.csv", b"id,a\n1,2\n", root=tmp_path)
    assert problem.is_error and "MB cap" in problem.message


def test_guess_id_column_from_names():
    from mmcrl_core.validation import guess_id_column

    assert guess_id_column(["age", "participant_id", "x"]) == "participant_id"
    assert guess_id_column(["code", "x"]) == "code"
    assert guess_id_column([]) is None
