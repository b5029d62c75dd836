"""Runs page: every run, one run in detail, several compared; re-run, cancel, delete, download.

Only widgets and plots; the registry (mmcrl_core.run_store), the executor (mmcrl_core.jobs) and
run comparison (mmcrl_core.run_compare) do the work. While a run is active the table is a fragment
that refreshes every 2 s.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pandas as pd
import plotly.express as px
import streamlit as st

from mmcrl_core import dataset_store
from mmcrl_core.errors import UserInputError
from mmcrl_core.hardware import format_seconds
from mmcrl_core.jobs import get_executor
from mmcrl_core.run_compare import config_differences, curve_label, long_curves, zip_run_folder
from mmcrl_core.run_store import (
    FAILED,
    SUCCEEDED,
    delete_run,
    get_run,
    log_path,
    read_tail,
)
from mmcrl_core.workspace import default_paths

paths = default_paths()
executor = get_executor(paths=paths)


def _flash(kind: str, message: str) -> None:
    st.session_state["runs_flash"] = (kind, message)


def _dataset_names() -> dict[str, str]:
    return {d.id: d.name for d in dataset_store.list_datasets(paths)}


def _table(runs, dataset_names: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "name": r.name or "",
                "status": r.status,
                "dataset": dataset_names.get(r.dataset_id, r.dataset_id or ""),
                "validation loss": r.val_loss,
                "duration": format_seconds(r.duration_s()) if r.started_at else "",
                "device": r.device or "",
                "created": r.created_at.replace("T", " ").split("+")[0],
                "seed": r.seed,
                "group": r.group_id or "",
                "run": r.id,
            }
            for r in runs
        ]
    )


def _overview(polling: bool) -> None:
    runs = executor.runs()
    if polling and not any(r.is_active for r in runs):
        st.rerun()  # the last active run ended: redraw the whole page so the details show its outcome
    st.dataframe(_table(runs, _dataset_names()), hide_index=True, width="stretch")


# --- actions (button callbacks, so they run before the page is drawn) ----------------------------------


def _make_active(run_id: str) -> None:
    st.session_state["run_id"] = run_id
    _flash("success", "This run is now the active run for the Latents and Causal graph pages.")


def _rerun(run_id: str) -> None:
    run = get_run(run_id, paths)
    spec = run.run_spec
    base = (spec.name or "").removesuffix(" (re-run)")  # a re-run of a re-run is not "(re-run) (re-run)"
    name = f"{base} (re-run)" if base else f"re-run of {run.id}"
    new_id = executor.submit(spec.model_copy(update={"run_id": None, "group_id": None, "name": name}))
    st.session_state["runs_pick"] = new_id
    _flash("success", f"Started {new_id} with the same configuration.")


def _cancel(run_id: str) -> None:
    executor.cancel(run_id)
    _flash("info", "Cancelling: the run stops within a few seconds.")


def _delete(run_id: str) -> None:
    try:
        delete_run(run_id, paths)
    except UserInputError as exc:
        _flash("error", str(exc))
        return
    for key in ("run_id", "runs_pick"):
        if st.session_state.get(key) == run_id:
            st.session_state.pop(key, None)
    _flash("success", f"Deleted run {run_id} and its folder.")


# --- sections --------------------------------------------------------------------------------------------


def _curves(runs, key: str) -> None:
    curves = long_curves(runs, paths)
    if curves.empty:
        st.caption("No training curves yet.")
        return
    if len(runs) == 1:
        figure = px.line(curves.assign(curve=curves["curve"].map(curve_label)), x="epoch", y="value", color="curve",
                         labels={"value": "loss (lower is better)"})
    else:
        names = list(dict.fromkeys(curves["curve"]))
        curve = st.selectbox(
            "Curve", names, index=names.index("val_loss") if "val_loss" in names else 0, key=f"{key}_curve",
            format_func=curve_label,
        )
        figure = px.line(curves[curves["curve"] == curve], x="epoch", y="value", color="run",
                         title=curve_label(curve), labels={"value": curve_label(curve)})
    figure.update_layout(height=340, margin={"t": 40, "b": 10})
    st.plotly_chart(figure, key=f"{key}_chart")


def _detail(runs) -> None:
    ids = [r.id for r in runs]
    labels = {r.id: f"{r.label} - {r.status}" for r in runs}
    if st.session_state.get("runs_pick") not in ids:
        active = st.session_state.get("run_id")
        st.session_state["runs_pick"] = active if active in ids else ids[0]
    run_id = st.selectbox("Run", ids, format_func=labels.get, key="runs_pick")
    run = get_run(run_id, paths)
    if run is None:
        return
    st.markdown(f"**Status:** {run.status}" + (f" (exit code {run.exit_code})" if run.exit_code else ""))
    if run.status == FAILED and run.error:
        st.error(run.error)
    if run.status == SUCCEEDED and _outcome(run):
        st.caption(_outcome(run))
    buttons = st.columns(4)
    if run.status == SUCCEEDED:
        buttons[0].button("Make active", key="runs_activate", on_click=_make_active, args=(run.id,),
                          disabled=st.session_state.get("run_id") == run.id)
    if run.is_active:
        buttons[0].button("Cancel", key="runs_cancel", on_click=_cancel, args=(run.id,))
    buttons[1].button("Re-run with the same config", key="runs_rerun", on_click=_rerun, args=(run.id,))
    if run.status == SUCCEEDED and Path(run.out_dir).is_dir():
        buttons[2].download_button(
            "Download run folder (.zip)", data=lambda: zip_run_folder(run), file_name=f"{run.id}.zip",
            mime="application/zip", key="runs_download", on_click="ignore",
        )
    if not run.is_active:
        with buttons[3].expander("Delete"):
            confirmed = st.checkbox(f"Yes, delete run {run.id} and its folder", key="runs_delete_confirm")
            st.button("Delete run", key="runs_delete", on_click=_delete, args=(run.id,), disabled=not confirmed,
                      type="primary")
    _curves([run], "runs_detail")
    with st.expander("Configuration"):
        st.json(run.spec)
        if run.command:
            st.code(shlex.join(run.command), language="bash")
    with st.expander("Log (last lines)", expanded=run.status == FAILED):
        st.code(read_tail(log_path(run), 40) or "(no output)")


def _outcome(run) -> str:
    """One sentence on how training went, from the metrics the run recorded."""
    m = run.metrics
    parts = []
    if m.get("best_val_loss") is not None:
        parts.append(f"best validation loss {float(m['best_val_loss']):.4f}"
                     + (f" at epoch {m['best_epoch']}" if m.get("best_epoch") is not None else ""))
    epochs_planned = run.spec.get("train", {}).get("epochs")
    if m.get("stopped_early"):
        parts.append(f"stopped early (validation loss no longer improving; {epochs_planned} epochs allowed)")
    if m.get("cross_modal_edges") is not None:
        parts.append(f"{m['cross_modal_edges']} cross-modal and {m.get('within_modality_edges', 0)} "
                     "within-modality edges in the learned graph")
    return ("Outcome: " + "; ".join(parts) + ".") if parts else ""


def _compare(runs) -> None:
    labels = {r.id: r.label for r in runs}
    chosen = st.multiselect("Runs to compare", list(labels), format_func=labels.get, key="runs_compare")
    if len(chosen) < 2:
        st.caption("Pick two or more runs.")
        return
    selected = [r for r in runs if r.id in chosen]
    differences = config_differences(selected)
    st.markdown("**Settings that differ**")
    if differences.empty:
        st.caption("Same configuration (only seeds or names may differ).")
    else:
        st.dataframe(differences.astype(str), width="stretch")
    _curves(selected, "runs_compare")


st.title("Runs")
flash = st.session_state.pop("runs_flash", None)
if flash:
    getattr(st, flash[0])(flash[1])
all_runs = executor.runs()
if not all_runs:
    st.info("No run yet: start one on the **Train** page.")
    st.stop()
active = any(r.is_active for r in all_runs)
st.fragment(_overview, run_every="2s" if active else None)(active)
detail_tab, compare_tab = st.tabs(["Details", "Compare"])
with detail_tab:
    _detail(all_runs)
with compare_tab:
    _compare(all_runs)
