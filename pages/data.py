"""Data page: upload tables or pick an example, check them, see what is missing, save a dataset.

Only widgets and plots here; reading, checking and storing live in mmcrl_core (datasets,
dataset_store, examples, uploads). Actions that change the active dataset run as button callbacks,
because the sidebar's "Active dataset" widget owns st.session_state["dataset_id"].
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import plotly.express as px
import streamlit as st

from mmcrl_core import dataset_store
from mmcrl_core.datasets import (
    COVARIATES,
    MultimodalTables,
    assign_by_patterns,
    assign_by_prefix,
    inspect_sources,
    inspect_wide_table,
)
from mmcrl_core.errors import UserInputError
from mmcrl_core.examples import list_examples
from mmcrl_core.preprocessing import Preprocessor
from mmcrl_core.problems import DataProblemsError, Problem, problems_frame
from mmcrl_core.readers import EXCEL_SUFFIXES, excel_sheets, peek_columns
from mmcrl_core.run_store import list_runs
from mmcrl_core.uploads import stage_upload
from mmcrl_core.validation import guess_id_column
from mmcrl_core.workspace import default_paths

UPLOAD_TYPES = ["csv", "tsv", "txt", "tab", "parquet", "pq", "xlsx", "xlsm"]
DETECT = "(detect)"
NO_COVARIATES = "(none)"
FLASH = "_data_flash"
SUMMARY_LABELS = {"missing_cells": "missing cells", "missing_pct": "missing cells (%)",
                  "columns_with_missing": "columns with missing values"}

paths = default_paths()


# ------------------------------------------------------------------------------------ helpers


@st.cache_data(show_spinner="Reading and checking the tables...", max_entries=8)
def _inspect(sources: tuple, id_column: str | None, join: str, covariates: str | None):
    return inspect_sources([dict(modality=m, path=p, sheet=s) for m, p, s in sources], id_column, join=join,
                           covariates=covariates)


@st.cache_data(show_spinner="Reading and checking the table...", max_entries=8)
def _inspect_wide(path: str, assignment: tuple, id_column: str | None, join: str, sheet: str | None):
    return inspect_wide_table(path, dict(assignment), id_column, join=join, sheet=sheet)


@st.cache_data(show_spinner=False, max_entries=8)
def _decisions(fingerprint: str, _tables: MultimodalTables) -> pd.DataFrame:
    # keyed by the data's fingerprint: hashing the frames themselves would cost as much as the fit
    return Preprocessor.fit(_tables.tables).decisions


def _readable_time(stamps: pd.Series) -> pd.Series:
    """ISO timestamps (UTC) as 'YYYY-MM-DD HH:MM' for tables."""
    return pd.to_datetime(stamps, utc=True, errors="coerce").dt.strftime("%Y-%m-%d %H:%M").fillna("")


def _flash(kind: str, message: str) -> None:
    st.session_state[FLASH] = (kind, message)


def _show_flash() -> None:
    flash = st.session_state.pop(FLASH, None)
    if flash:
        {"success": st.success, "info": st.info, "error": st.error}[flash[0]](flash[1])


def _stage(files) -> tuple[list[Path], list[Problem]]:
    staged, problems = [], []
    for file in files:
        path, problem = stage_upload(file.name, file.getvalue())
        if problem is not None:
            problems.append(problem)
        else:
            staged.append(path)
    return staged, problems


def _show_problems(problems: list[Problem]) -> None:
    errors = sum(p.is_error for p in problems)
    warnings = len(problems) - errors
    if errors:
        st.error(f"{errors} problem(s) must be fixed before this data can be used"
                 + (f" ({warnings} warning(s) too)" if warnings else "") + ". Each row says what to do.")
    elif warnings:
        st.warning(f"{warnings} warning(s): the data can be used; check that these are expected.")
    else:
        st.success("No problem found.")
    if problems:
        st.dataframe(problems_frame(problems), hide_index=True, width="stretch", column_config={
            "severity": st.column_config.TextColumn(width="small"),
            "rows": st.column_config.TextColumn(width="small"),
            "message": st.column_config.TextColumn(width="large"),
            "fix": st.column_config.TextColumn(width="large"),
        })


def _show_tables(tables: MultimodalTables, join: str, key: str) -> None:
    n = len(tables.subject_ids(join))
    complete = len(tables.subject_ids("complete"))
    st.markdown(f"**{n:,} subjects** kept ({'all, masked where a modality is missing' if join == 'mask' else 'complete cases'}); "
                f"{complete:,} have every modality. Subject id column: `{tables.id_column}`.")
    st.subheader("Per-modality summary")
    st.dataframe(tables.summary(), hide_index=True, width="stretch", column_config=SUMMARY_LABELS)
    if tables.covariates is not None:
        st.caption(f"Covariates kept apart for association tests: {', '.join(map(str, tables.covariates.columns))}")

    preview, missing, overlap, decisions = st.tabs(["Preview", "Missing values", "Subject overlap", "Column decisions"])
    with preview:
        modality = st.selectbox("Modality", tables.modalities, key=f"{key}_preview")
        st.dataframe(tables.tables[modality].head(100), width="stretch")
    with missing:
        missingness = tables.missingness()
        if missingness["missing_pct"].sum() == 0:
            st.info("No missing values.")  # an all-zero bar chart would only be an empty frame
        else:
            figure = px.bar(missingness, x="column", y="missing_pct", color="modality",
                            labels={"missing_pct": "missing (%)"}, title="Missing values per column")
            figure.update_layout(xaxis_tickangle=-60, height=380)
            st.plotly_chart(figure, key=f"{key}_missing_plot")
            st.caption("Missing cells are masked out of training, never imputed.")
    with overlap:
        counts = tables.overlap()
        figure = px.bar(counts, x="subjects", y="modalities", orientation="h",
                        title="Subjects per combination of modalities present")
        figure.update_layout(yaxis={"categoryorder": "total ascending"}, height=max(250, 40 * len(counts)))
        st.plotly_chart(figure, key=f"{key}_overlap_bars")
        st.plotly_chart(px.imshow(tables.overlap_matrix(), text_auto=True, color_continuous_scale="Blues",
                                  title="Subjects shared by each pair of modalities"), key=f"{key}_overlap_matrix")
    with decisions:
        try:
            st.dataframe(_decisions(tables.fingerprint(), tables), hide_index=True, width="stretch")
            st.caption("Preview on all subjects; each run refits scaling and encodings on its training split only.")
        except UserInputError as exc:
            st.error(str(exc))


def _save_callback(tables_key: str, name_key: str) -> None:
    tables = st.session_state.get(tables_key)
    if tables is None:
        _flash("error", "Nothing to save yet: upload tables first.")
        return
    try:
        record = dataset_store.save_dataset(tables, st.session_state.get(name_key, ""), paths)
    except UserInputError as exc:
        _flash("error", str(exc))
        return
    st.session_state["dataset_id"] = record.id
    if record.reused:
        _flash("info", f"This data is already stored as **{record.name}**; it is now the active dataset.")
    else:
        _flash("success", f"Saved **{record.name}** ({record.n_subjects:,} subjects, "
                          f"{len(record.modalities)} modalities); it is now the active dataset.")


def _save_form(tables: MultimodalTables, key: str, default_name: str) -> None:
    st.session_state[f"{key}_tables"] = tables
    st.subheader("Save")
    st.text_input("Dataset name", value=default_name, key=f"{key}_name", max_chars=120)
    st.button("Save dataset", type="primary", key=f"{key}_save", on_click=_save_callback,
              args=(f"{key}_tables", f"{key}_name"))


# -------------------------------------------------------------------------------------- tabs


def _upload_tab() -> None:
    st.markdown("One table per modality (CSV, TSV, TXT, Parquet or Excel), each with a subject-id column. "
                "Modality names default to the file names.")
    files = st.file_uploader("Tables", type=UPLOAD_TYPES, accept_multiple_files=True, key="data_files")
    if not files:
        return
    staged, problems = _stage(files)
    if not staged:
        _show_problems(problems)
        return
    sources, columns = [], []
    st.markdown("**Modalities**")
    covariates_file = st.selectbox("Covariate table (age, sex, diagnoses...; kept apart from the modalities)",
                                   [NO_COVARIATES] + [p.name for p in staged], key="data_covariates")
    for i, path in enumerate(staged):
        left, right = st.columns([3, 2])
        sheet = None
        if path.suffix.lower() in EXCEL_SUFFIXES:
            sheets = excel_sheets(path)
            if sheets:
                sheet = right.selectbox(f"Sheet of {path.name}", sheets, key=f"data_sheet_{i}_{path.name}")
        columns.append(peek_columns(path, sheet))
        if path.name == covariates_file:
            left.text_input(f"{path.name}", value="covariates", disabled=True, key=f"data_mod_{i}_{path.name}_cov")
            continue
        name = left.text_input(f"Modality name for {path.name}", value=path.stem, key=f"data_mod_{i}_{path.name}")
        sources.append((name.strip(), str(path), sheet))
    shared = [c for c in columns[0] if all(c in cols for cols in columns[1:])] if columns else []
    options = st.columns(2)
    id_choice = options[0].selectbox("Subject-id column", [DETECT] + shared, key="data_id_column")
    join = options[1].radio("Subjects missing a modality", ["mask", "complete"], horizontal=True, key="data_join",
                            format_func={"mask": "keep (masked)", "complete": "drop (complete cases)"}.get)
    covariates = next((str(p) for p in staged if p.name == covariates_file), None)
    if not sources:
        st.warning("Every file is marked as covariates: assign at least one file to a modality.")
        return
    try:
        tables, found = _inspect(tuple(sources), None if id_choice == DETECT else id_choice, join, covariates)
    except UserInputError as exc:
        st.error(str(exc))
        return
    st.subheader("Validation")
    _show_problems(problems + found)
    if tables is None:
        return
    _show_tables(tables, join, "data_upload")
    _save_form(tables, "data_upload", " + ".join(Path(p).stem for _, p, _ in sources)[:120])


def _assignment_editor(columns: list[str], id_column: str) -> dict[str, str]:
    method = st.radio("Assign columns to modalities", ["by name prefix", "by pattern", "by hand"], horizontal=True,
                      key="wide_method")
    if method == "by name prefix":
        separator = st.text_input("Separator after the prefix", value="_", key="wide_separator") or "_"
        initial = assign_by_prefix(columns, separator, id_column)
        editor_key = f"wide_editor_prefix_{separator}"
    elif method == "by pattern":
        text = st.text_area("One line per modality: `name: regular expression`",
                            value="", placeholder="blood: ^(hdl|ldl|chol)\nsleep: sleep|ahi", key="wide_patterns")
        patterns = {}
        for line in text.splitlines():
            name, sep, pattern = line.partition(":")
            if sep and name.strip() and pattern.strip():
                patterns[name.strip()] = pattern.strip()
        try:
            initial = assign_by_patterns(columns, patterns, id_column)
        except UserInputError as exc:
            st.error(str(exc))
            initial = dict.fromkeys(columns, "")
        editor_key = f"wide_editor_pattern_{abs(hash(text))}"
    else:
        initial = dict.fromkeys(columns, "")
        editor_key = "wide_editor_hand"
    st.caption(f"Edit the modality of any column; `{COVARIATES}` keeps a column apart as a covariate; "
               "empty leaves it out.")
    frame = pd.DataFrame({"column": list(initial), "modality": list(initial.values())})
    frame = frame[frame["column"] != id_column]
    edited = st.data_editor(frame, hide_index=True, disabled=["column"], key=editor_key, width="stretch",
                            column_config={"modality": st.column_config.TextColumn("modality / role")})
    return {str(r.column): str(r.modality or "").strip() for r in edited.itertuples(index=False)}


def _wide_tab() -> None:
    st.markdown("One table with a subject-id column and the measurements of every modality side by side.")
    file = st.file_uploader("Wide table", type=UPLOAD_TYPES, key="wide_file")
    if file is None:
        return
    staged, problems = _stage([file])
    if not staged:
        _show_problems(problems)
        return
    path = staged[0]
    sheet = None
    if path.suffix.lower() in EXCEL_SUFFIXES:
        sheets = excel_sheets(path)
        if sheets:
            sheet = st.selectbox("Sheet", sheets, key="wide_sheet")
    columns = peek_columns(path, sheet)
    if not columns:
        tables, found = _inspect_wide(str(path), (), None, "mask", sheet)
        _show_problems(found or [])
        return
    options = st.columns(2)
    id_choice = options[0].selectbox("Subject-id column", [DETECT] + columns, key="wide_id_column")
    join = options[1].radio("Subjects missing a modality", ["mask", "complete"], horizontal=True, key="wide_join",
                            format_func={"mask": "keep (masked)", "complete": "drop (complete cases)"}.get)
    id_column = guess_id_column(columns) if id_choice == DETECT else id_choice
    assignment = _assignment_editor(columns, id_column)
    if not any(assignment.values()):
        st.info("Assign at least one column to a modality.")
        return
    tables, found = _inspect_wide(str(path), tuple(sorted(assignment.items())),
                                  None if id_choice == DETECT else id_choice, join, sheet)
    st.subheader("Validation")
    _show_problems(found)
    if tables is None:
        return
    _show_tables(tables, join, "data_wide")
    _save_form(tables, "data_wide", path.stem)


def _use_example_callback(name: str) -> None:
    try:
        record = dataset_store.save_example(name, paths)
    except UserInputError as exc:
        _flash("error", str(exc))
        return
    st.session_state["dataset_id"] = record.id
    _flash("success", f"**{record.name}** is the active dataset ({record.n_subjects:,} subjects, "
                      f"{len(record.modalities)} modalities).")


def _examples_tab() -> None:
    st.markdown("Real and simulated datasets, built from installed packages; one click stores and selects one.")
    for example in list_examples():
        left, right = st.columns([4, 1])
        left.markdown(f"**{example.title}**  \n{example.description}")
        right.button("Use", key=f"example_{example.name}", on_click=_use_example_callback, args=(example.name,))


def _select_callback() -> None:
    st.session_state["dataset_id"] = st.session_state["data_pick"]


def _rename_callback(dataset_id: str) -> None:
    try:
        record = dataset_store.rename_dataset(dataset_id, st.session_state.get("data_rename", ""), paths)
        _flash("success", f"Renamed to **{record.name}**.")
    except UserInputError as exc:
        _flash("error", str(exc))


def _delete_callback(dataset_id: str) -> None:
    try:
        dataset_store.delete_dataset(dataset_id, paths)
    except UserInputError as exc:
        _flash("error", str(exc))
        return
    if st.session_state.get("dataset_id") == dataset_id:
        st.session_state.pop("dataset_id", None)
    _flash("success", "Dataset deleted.")


def _datasets_tab() -> None:
    frame = dataset_store.datasets_frame(paths)
    if frame.empty:
        st.info("No dataset yet: upload tables or use an example.")
        return
    st.dataframe(frame.drop(columns=["id"]).assign(created=_readable_time(frame["created"])), hide_index=True,
                 width="stretch", column_config={"created": "created (UTC)", "example": "built-in example"})
    ids = frame["id"].tolist()
    names = dict(zip(frame["id"], frame["name"]))
    active = st.session_state.get("dataset_id")
    if active in ids:
        # follow the active dataset (an example just loaded, an upload just saved, the sidebar)
        st.session_state["data_pick"] = active
    elif st.session_state.get("data_pick") not in ids:
        st.session_state["data_pick"] = ids[0]
    # picking a dataset here makes it the active one (as the sidebar does): no separate button needed
    st.selectbox("Dataset (becomes the active dataset)", ids, format_func=names.get,
                 key="data_pick", on_change=_select_callback)
    chosen = st.session_state["data_pick"]
    record = dataset_store.get_dataset(chosen, paths)
    st.dataframe(pd.DataFrame(record.modalities).assign(columns=lambda f: f["columns"].map(len)),
                 hide_index=True, width="stretch", column_config={
                     "name": "modality", "n_subjects": "subjects", "missing_pct": "missing cells (%)"})
    st.caption(f"Id column `{record.id_column}`; stored under `data/{record.folder}`; sources: "
               + ", ".join(f"{s['modality']} ({s['file'] or 'built in'}, sha256 {s['sha256'][:12]}...)"
                           for s in record.sources))
    with st.expander("Rename or delete"):
        st.text_input("New name", value=record.name, key="data_rename")
        st.button("Rename", key="data_rename_button", on_click=_rename_callback, args=(chosen,))
        trained = len(list_runs(paths, dataset_id=chosen))
        if trained:
            st.warning(f"{trained} run(s) were trained on this dataset. Their results stay, but re-running them "
                       "and relating their latents to the phenotypes need this dataset's files.")
        confirm = st.checkbox("Yes, delete this dataset and its files", key="data_delete_confirm")
        st.button("Delete", key="data_delete", disabled=not confirm, on_click=_delete_callback, args=(chosen,))
    if st.toggle("Show missing values and subject overlap", key="data_details"):
        try:
            tables = dataset_store.load_dataset(chosen, paths)
        except DataProblemsError as exc:
            st.error("This stored dataset no longer reads cleanly.")
            _show_problems(exc.problems)
            return
        except UserInputError as exc:
            st.error(str(exc))
            return
        _show_tables(tables, "mask", "data_stored")


# --------------------------------------------------------------------------------------- page

st.title("Data")
_show_flash()
saved, upload, wide, examples = st.tabs(["Your datasets", "Upload tables", "One wide table", "Examples"])
with saved:
    _datasets_tab()
with upload:
    _upload_tab()
with wide:
    _wide_tab()
with examples:
    _examples_tab()
