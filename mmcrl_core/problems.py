"""Problems found in user data: one record per problem, all reported at once.

A Problem names the file, the column and the rows concerned, says what is wrong and what to do.
Errors stop a dataset from being loaded; warnings are shown and the data is used (for instance a
cell that could not be read as a number is treated as missing, never silently imputed).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import pandas as pd

from .errors import UserInputError

PROBLEM_COLUMNS = ["severity", "file", "column", "rows", "message", "fix"]
MAX_LISTED = 20  # rows / ids listed in one message before "... and N more"


@dataclass(frozen=True)
class Problem:
    severity: Literal["error", "warning"]
    file: str
    message: str
    fix: str = ""
    column: str = ""
    rows: str = ""

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def describe(self) -> str:
        where = self.file
        if self.column:
            where += f", column {self.column!r}"
        if self.rows:
            where += f", rows {self.rows}"
        text = f"{where}: {self.message}"
        return f"{text} -> {self.fix}" if self.fix else text


def error(file: str, message: str, fix: str = "", column: str = "", rows: str = "") -> Problem:
    return Problem("error", file, message, fix, column, rows)


def warning(file: str, message: str, fix: str = "", column: str = "", rows: str = "") -> Problem:
    return Problem("warning", file, message, fix, column, rows)


def list_items(items: Sequence | Iterable, limit: int = MAX_LISTED) -> str:
    """'a, b, c' or 'a, b, ... and 7 more', for row numbers and ids in messages."""
    items = [str(item) for item in items]
    if len(items) <= limit:
        return ", ".join(items)
    return ", ".join(items[:limit]) + f", ... and {len(items) - limit} more"


def problems_frame(problems: Iterable[Problem]) -> pd.DataFrame:
    """The validation table shown in the app: errors first, then warnings."""
    rows = [asdict(p) for p in problems]
    frame = pd.DataFrame(rows, columns=PROBLEM_COLUMNS)
    if frame.empty:
        return frame
    order = frame["severity"].map({"error": 0, "warning": 1})
    return frame.assign(_order=order).sort_values("_order", kind="stable").drop(columns="_order").reset_index(
        drop=True
    )


def has_errors(problems: Iterable[Problem]) -> bool:
    return any(p.is_error for p in problems)


class DataProblemsError(UserInputError):
    """The data cannot be used; `.problems` holds every problem found (errors and warnings)."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        errors = [p for p in self.problems if p.is_error]
        lines = [f"{len(errors)} problem(s) in the data:"] + [f"- {p.describe()}" for p in errors]
        super().__init__("\n".join(lines))
