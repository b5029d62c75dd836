"""Read one table from disk: CSV / TSV / TXT (encoding and delimiter sniffed), Parquet, Excel.

Every reader returns the problems it found instead of raising, so the caller can report all of
them at once. Text files are read as strings; turning columns into numbers happens in
`infer_column_types`, after the subject-id column is known (ids like "007" must stay text).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .preprocessing import looks_like_id_name
from .problems import Problem, error, list_items, warning

TEXT_SUFFIXES = {".csv", ".tsv", ".txt", ".tab", ".dat"}
PARQUET_SUFFIXES = {".parquet", ".pq"}
EXCEL_SUFFIXES = {".xlsx", ".xlsm", ".xls"}
TABLE_SUFFIXES = TEXT_SUFFIXES | PARQUET_SUFFIXES | EXCEL_SUFFIXES

DEFAULT_MAX_UPLOAD_MB = 200
DELIMITERS = [",", "\t", ";", "|"]
DELIMITER_NAMES = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe", r"\s+": "spaces"}
# Spellings of "no value" in exported tables; read as missing, never as a category.
NA_STRINGS = ["", "NA", "N/A", "n/a", "na", "NaN", "nan", "NAN", "null", "NULL", "Null", "None", "none",
              ".", "-", "?", "#N/A", "#NA", "missing", "Missing", "MISSING"]
# A column where at least this share of the filled cells are numbers is numeric; the rest are
# typing slips ("<5", "n.d.") turned into missing values with a warning.
NUMERIC_SHARE = 0.8
SNIFF_LINES = 50
DECIMAL_COMMA = re.compile(r"(^|;)\s*-?\d+,\d+\s*(;|$)", re.MULTILINE)
# Free-text cells can be long; the csv module's default 128 kB field limit would misread them.
csv.field_size_limit(2**31 - 1)


def max_upload_bytes() -> int:
    """The file size cap, MMCRL_MAX_UPLOAD_MB megabytes (default 200)."""
    try:
        megabytes = float(os.environ.get("MMCRL_MAX_UPLOAD_MB", DEFAULT_MAX_UPLOAD_MB))
    except ValueError:
        megabytes = DEFAULT_MAX_UPLOAD_MB
    return int(megabytes * 1024 * 1024)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class ReadResult:
    """A table as read (None if it could not be read), with how it was read and what went wrong."""

    frame: pd.DataFrame | None
    problems: list[Problem] = field(default_factory=list)
    encoding: str | None = None
    delimiter: str | None = None
    row_offset: int = 2  # file row of frame row 0 (header is row 1 in CSV and Excel)


def read_table(path: str | Path, sheet: str | None = None, label: str | None = None,
               text_columns: tuple[str, ...] = ()) -> ReadResult:
    """Read any supported table; `label` is how the file is named in messages (default: its name).

    In text files, `text_columns`, id-like names and the first column are kept as text (so that
    the id "007" stays "007"); the other columns are parsed as numbers where they are numbers."""
    path = Path(path)
    label = label or path.name
    if not path.is_file():
        return ReadResult(None, [error(label, "file not found", f"check the path {str(path)!r}")])
    size = path.stat().st_size
    cap = max_upload_bytes()
    if size > cap:
        return ReadResult(None, [error(
            label, f"file is {size / 1e6:.1f} MB, over the {cap / 1e6:.0f} MB cap",
            "split it into modalities, save it as Parquet, or raise MMCRL_MAX_UPLOAD_MB")])
    if size == 0:
        return ReadResult(None, [error(label, "the file is empty", "upload the file that holds the data")])
    suffix = path.suffix.lower()
    try:
        if suffix in PARQUET_SUFFIXES:
            return _read_parquet(path, label)
        if suffix in EXCEL_SUFFIXES:
            return _read_excel(path, label, sheet, text_columns)
        return _read_text(path, label, text_columns)
    except (ValueError, csv.Error, OSError, UnicodeError, MemoryError) as exc:
        # the file is user input: whatever trips the parser is reported, never a traceback
        return ReadResult(None, [error(label, f"could not be read as a table ({type(exc).__name__}: "
                                       f"{str(exc)[:200]})", "check that it is a CSV, TSV, Parquet or Excel table "
                                       "with a header row")])


def excel_sheets(path: str | Path) -> list[str]:
    """Sheet names of a workbook, for the sheet chooser ([] if it cannot be opened)."""
    try:
        with pd.ExcelFile(path) as book:
            return [str(name) for name in book.sheet_names]
    except Exception:  # noqa: BLE001 - a broken workbook is reported when it is read
        return []


# ---------------------------------------------------------------------------------------- text


def _binary_kind(head: bytes) -> str | None:
    if head.startswith(b"PAR1"):
        return "a Parquet file"
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive or Excel workbook"
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        return "an old Excel (.xls) workbook"
    if head.startswith(b"\x1f\x8b"):
        return "a gzip archive"
    if head.startswith(b"%PDF"):
        return "a PDF document"
    if b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "binary data"
    return None


def decode_text(raw: bytes) -> tuple[str, str]:
    """(text, encoding): UTF-8 with or without BOM, UTF-16 with BOM, else Latin-1 (never fails)."""
    if raw.startswith(b"\xef\xbb\xbf"):
        return raw.decode("utf-8-sig"), "utf-8-sig"
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16"), "utf-16"
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return raw.decode("latin-1"), "latin-1"


def _field_counts(lines: list[str], delimiter: str) -> list[int]:
    return [len(row) for row in csv.reader(lines, delimiter=delimiter)]


def sniff_delimiter(text: str) -> str | None:
    """The delimiter that splits the first lines into the same number (>1) of fields; ties go to the
    most fields. None when no candidate splits the header."""
    lines = [line for line in text.splitlines()[:SNIFF_LINES] if line.strip()]
    if not lines:
        return None
    best, best_score = None, (-1, -1, -1)
    for delimiter in DELIMITERS:
        try:
            counts = _field_counts(lines, delimiter)
        except csv.Error:  # e.g. a field over the csv module's size limit: not this delimiter
            continue
        if counts[0] < 2:
            continue
        agreeing = sum(count == counts[0] for count in counts) / len(counts)
        score = (int(agreeing == 1.0), round(agreeing, 2), counts[0])
        if score > best_score:
            best, best_score = delimiter, score
    if best is None and len(lines[0].split()) > 1 and all(len(line.split()) == len(lines[0].split()) for line in lines):
        return r"\s+"
    return best


def _read_text(path: Path, label: str, text_columns: tuple[str, ...] = ()) -> ReadResult:
    raw = path.read_bytes()
    kind = _binary_kind(raw[:8192])
    if kind is not None:
        fix = {
            "a Parquet file": "give it the .parquet extension",
            "a zip archive or Excel workbook": "give an Excel workbook the .xlsx extension, or unzip the archive",
            "an old Excel (.xls) workbook": "open it in Excel and save as .xlsx or CSV",
        }.get(kind, "upload a CSV, TSV, TXT, Parquet or Excel table")
        return ReadResult(None, [error(label, f"not a table: the content is binary ({kind})", fix)])
    text, encoding = decode_text(raw)
    if not text.strip():
        return ReadResult(None, [error(label, "the file is empty (only blank lines)",
                                       "upload the file that holds the data")], encoding)
    delimiter = sniff_delimiter(text)
    if delimiter is None:
        header = text.splitlines()[0][:80]
        return ReadResult(None, [error(
            label, f"only one column found: no comma, tab, semicolon or pipe separates the values in "
            f"the header {header!r} (wrong delimiter?)",
            "save the table as comma- or tab-separated with a header row: subject id, then one column per measure",
        )], encoding)
    problems: list[Problem] = []
    suffix = path.suffix.lower()
    if suffix == ".tsv" and delimiter != "\t" or suffix == ".csv" and delimiter not in (",", ";"):
        problems.append(warning(
            label, f"the file is named {suffix} but its values are separated by {DELIMITER_NAMES[delimiter]}s; "
            "read it that way", "nothing, unless the columns in the preview look wrong"))
    # Semicolon-separated files with "1,5" are the European CSV dialect: the comma is the decimal mark.
    decimal = "," if delimiter == ";" and DECIMAL_COMMA.search(text[:65536]) else "."
    if decimal == ",":
        problems.append(warning(label, "semicolon-separated with decimal commas (1,5): read 1,5 as 1.5",
                                "nothing, unless the numbers in the preview look wrong"))
    try:
        frame = pd.read_csv(
            io.StringIO(text), sep=delimiter, dtype=_text_dtypes(text, delimiter, text_columns),
            keep_default_na=False, na_values=NA_STRINGS, decimal=decimal,
            skipinitialspace=True, engine="python" if delimiter == r"\s+" else "c",
        )
    except pd.errors.ParserError:
        return ReadResult(None, [_ragged_rows_problem(text, delimiter, label)], encoding, delimiter)
    except pd.errors.EmptyDataError:
        return ReadResult(None, [error(label, "the file is empty", "upload the file that holds the data")],
                          encoding, delimiter)
    frame.columns = [str(c).strip() for c in frame.columns]
    if frame.empty and len(frame.columns):
        problems.append(error(label, "the file has a header row but no data rows",
                              "upload the file with its data, one row per subject"))
        return ReadResult(None, problems, encoding, delimiter)
    return ReadResult(frame, problems, encoding, delimiter)


def _text_dtypes(text: str, delimiter: str, text_columns: tuple[str, ...]) -> dict[str, type]:
    """Columns read as text: those asked for, id-like names and the first column (id candidates)."""
    first_line = text.split("\n", 1)[0].strip("\r")
    header = first_line.split() if delimiter == r"\s+" else next(csv.reader([first_line], delimiter=delimiter))
    header = [c.strip() for c in header]
    keep = set(text_columns)
    return {c: str for i, c in enumerate(header) if i == 0 or c in keep or looks_like_id_name(c)}


def _ragged_rows_problem(text: str, delimiter: str, label: str) -> Problem:
    rows = list(csv.reader(io.StringIO(text), delimiter=delimiter if len(delimiter) == 1 else " "))
    expected = len(rows[0]) if rows else 0
    bad = [i + 1 for i, row in enumerate(rows) if row and len(row) != expected]
    counts = Counter(len(rows[i - 1]) for i in bad)
    seen = ", ".join(f"{n} fields" for n in sorted(counts))
    return error(
        label, f"rows have a different number of values than the header ({expected} fields; these rows have "
        f"{seen}): the delimiter {DELIMITER_NAMES.get(delimiter, delimiter)!s} also appears inside values or the "
        "file mixes delimiters",
        "quote values that contain the delimiter (e.g. \"1,5\"), or use one delimiter throughout",
        rows=list_items(bad))


# --------------------------------------------------------------------------- parquet and excel


def _read_parquet(path: Path, label: str) -> ReadResult:
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - any pyarrow failure means "not a Parquet table"
        return ReadResult(None, [error(label, f"not a readable Parquet file ({type(exc).__name__})",
                                       "export the table again as Parquet, or as CSV")])
    if frame.index.name is not None or isinstance(frame.index, pd.MultiIndex):
        frame = frame.reset_index()
    frame.columns = [str(c).strip() for c in frame.columns]
    return _check_shape(ReadResult(frame, row_offset=1), label)


def _read_excel(path: Path, label: str, sheet: str | None, text_columns: tuple[str, ...] = ()) -> ReadResult:
    if path.suffix.lower() == ".xls":
        return ReadResult(None, [error(label, "old Excel .xls workbooks are not read",
                                       "open it in Excel and save as .xlsx or CSV")])
    sheets = excel_sheets(path)
    if not sheets:
        return ReadResult(None, [error(label, "not a readable Excel workbook",
                                       "save it again from Excel as .xlsx, or export the sheet as CSV")])
    if sheet is not None and sheet not in sheets:
        return ReadResult(None, [error(label, f"there is no sheet {sheet!r}; the sheets are {list_items(sheets)}",
                                       "choose one of these sheets")])
    try:
        chosen = sheet if sheet is not None else 0
        header = [str(c).strip() for c in pd.read_excel(path, sheet_name=chosen, nrows=0).columns]
        text = {c: str for i, c in enumerate(header) if i == 0 or c in text_columns or looks_like_id_name(c)}
        frame = pd.read_excel(path, sheet_name=chosen, na_values=NA_STRINGS, dtype=text or None)
    except Exception as exc:  # noqa: BLE001
        return ReadResult(None, [error(label, f"the sheet could not be read ({type(exc).__name__})",
                                       "export the sheet as CSV")])
    frame.columns = [str(c).strip() for c in frame.columns]
    label = f"{label} [{sheet or sheets[0]}]" if len(sheets) > 1 else label
    return _check_shape(ReadResult(frame), label)


def _check_shape(result: ReadResult, label: str) -> ReadResult:
    frame = result.frame
    if frame is None:
        return result
    if frame.shape[1] == 0:
        return ReadResult(None, [error(label, "the file is empty", "upload the file that holds the data")])
    if frame.shape[0] == 0:
        return ReadResult(None, [error(label, "the file has a header row but no data rows",
                                       "upload the file with its data, one row per subject")])
    return result


# ------------------------------------------------------------------------------------ types


def infer_column_types(frame: pd.DataFrame, label: str, row_offset: int = 2,
                       skip: tuple[str, ...] = ()) -> tuple[pd.DataFrame, list[Problem]]:
    """Turn text columns that hold numbers into numbers.

    A column is numeric when at least NUMERIC_SHARE of its filled cells are numbers; its other cells
    become missing, with a warning that lists them. A column that mixes numbers and text more evenly
    stays text (a category or free text, decided in preprocessing), also with a warning.
    """
    problems: list[Problem] = []
    out = {}
    for column in frame.columns:
        values = frame[column]
        if column in skip or not (pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)):
            out[column] = values
            continue
        if pd.api.types.is_string_dtype(values) and not pd.api.types.is_object_dtype(values):
            text = values.str.strip()  # vectorised: most text columns come from read_csv
        else:
            text = values.map(lambda v: v.strip() if isinstance(v, str) else v)
        filled = text.notna() & (text.astype(str) != "")
        numbers = pd.to_numeric(text.where(filled), errors="coerce")
        is_number = numbers.notna() & filled
        n_filled, n_numbers = int(filled.sum()), int(is_number.sum())
        if n_filled == 0 or n_numbers == 0:
            out[column] = _as_text(text, filled)
            continue
        bad = filled & ~is_number
        bad_rows = (np.flatnonzero(bad.to_numpy(dtype=bool)) + row_offset).tolist()
        examples = list_items(sorted({repr(v) for v in text[bad]})[:5], limit=5)
        if n_numbers >= NUMERIC_SHARE * n_filled:
            if bad_rows:
                problems.append(warning(
                    label, f"mixed-type column: {len(bad_rows)} of {n_filled} values are not numbers "
                    f"({examples}); they are treated as missing",
                    "correct or blank these cells if they hold real values", column=str(column),
                    rows=list_items(bad_rows)))
            out[column] = numbers.astype("float64")
        else:
            number_rows = (np.flatnonzero(is_number.to_numpy(dtype=bool)) + row_offset).tolist()
            problems.append(warning(
                label, f"mixed-type column: {len(bad_rows)} text values ({examples}) and {n_numbers} numbers (in the "
                "rows listed); read as text, so it is one-hot encoded or excluded",
                "make the column all numbers or all labels", column=str(column), rows=list_items(number_rows)))
            out[column] = _as_text(text, filled)
    return pd.DataFrame(out, index=frame.index), problems


def _as_text(values: pd.Series, filled: pd.Series) -> pd.Series:
    """Text cells as str (Excel mixes ints and strings in one column; Parquet needs one type)."""
    return values.where(filled).map(lambda v: v if v is None or isinstance(v, str) or pd.isna(v) else str(v)).astype(
        object).where(filled, None)


def peek_columns(path: str | Path, sheet: str | None = None) -> list[str]:
    """Column names from the top of a table, cheaply (for the id-column chooser); [] if unreadable."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in PARQUET_SUFFIXES:
            import pyarrow.parquet as pq

            return [str(name) for name in pq.read_schema(path).names if not str(name).startswith("__index_level")]
        if suffix in EXCEL_SUFFIXES:
            return [str(c).strip() for c in pd.read_excel(path, sheet_name=sheet or 0, nrows=0).columns]
        with open(path, "rb") as handle:
            head = handle.read(64 * 1024)
        if _binary_kind(head[:8192]):
            return []
        text, _ = decode_text(head)
        lines = text.splitlines()[:SNIFF_LINES - 1] if len(head) == 64 * 1024 else text.splitlines()
        delimiter = sniff_delimiter("\n".join(lines))
        if delimiter is None or not lines:
            return []
        header = lines[0].split() if delimiter == r"\s+" else next(csv.reader([lines[0]], delimiter=delimiter))
        return [c.strip() for c in header]
    except Exception:  # noqa: BLE001 - the full read reports what is wrong
        return []
