"""Train page: pick a dataset, choose latents and settings, estimate, start runs, watch them, cancel.

Only widgets and plots; specs are built by mmcrl_core.run_setup, runs are started by the executor
(mmcrl_core.jobs) and progress is read from the registry (mmcrl_core.run_store). Live progress is a
fragment that reruns every 2 s while a run is active; no thread ever calls Streamlit.
"""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from mmcrl_core import dataset_store
from mmcrl_core.config import ModelConfig, TrainConfig
from mmcrl_core.errors import UserInputError
from mmcrl_core.hardware import default_threads, detect_hardware, format_seconds, preflight
from mmcrl_core.jobs import (
    available_executors,
    best_run,
    default_max_concurrent,
    get_executor,
    submit_group,
)
from mmcrl_core.run_compare import curve_label, long_curves
from mmcrl_core.run_setup import build_spec, latent_grid, parse_int_list
from mmcrl_core.run_store import (
    ACTIVE_STATUSES,
    FAILED,
    SUCCEEDED,
    get_run,
    list_runs,
    progress,
    progress_summary,
)
from mmcrl_core.workspace import default_paths

MAX_SEEDS = 20  # one click should not queue hours of work by a typo
WATCH = "train_watch"  # run ids started from this page in this session

paths = default_paths()
_executors = available_executors()
with st.sidebar:
    # Ray appears when the optional extra is installed (requirements-ray.txt); local is the default
    executor_name = st.selectbox(
        "Executor", _executors, key="train_executor", help="local: subprocesses on this machine; "
        "ray: Ray tasks on a local Ray or the cluster at MMCRL_RAY_ADDRESS",
    ) if len(_executors) > 1 else _executors[0]
executor = get_executor(executor_name, paths=paths)


@st.cache_resource(show_spinner=False)
def _hardware():
    return detect_hardware()


def _select_dataset() -> None:
    st.session_state["dataset_id"] = st.session_state["train_dataset"]


def _dataset():
    datasets = dataset_store.list_datasets(paths)
    if not datasets:
        st.info("No dataset yet: open **Data** in the sidebar to upload tables or load an example.")
        return None
    names = {d.id: d.name for d in datasets}
    ids = list(names)
    # follow the active dataset (the sidebar may have changed it); the widget state is set before the
    # widget is drawn, never both ways at once
    active = st.session_state.get("dataset_id")
    if active in ids:
        st.session_state["train_dataset"] = active
    elif st.session_state.get("train_dataset") not in ids:
        st.session_state["train_dataset"] = ids[0]
    chosen = st.selectbox(
        "Dataset", ids, format_func=names.get, key="train_dataset", on_change=_select_dataset,
    )
    record = dataset_store.get_dataset(chosen, paths)
    st.caption(
        f"{record.n_subjects:,} subjects; modalities: "
        + ", ".join(f"{m['name']} ({len(m['columns'])} columns)" for m in record.modalities)
    )
    return record


def _latent_settings(record) -> tuple[dict, dict, list[dict] | None]:
    """Latents and nuisance dims per modality, and a latent grid when the user asks for one."""
    grid_mode = st.toggle(
        "Try several latent counts and keep the one with the lowest validation loss", key="train_grid_mode"
    )
    latents, nuisance, choices = {}, {}, {}
    for modality in record.modalities:
        name, width = modality["name"], max(1, len(modality["columns"]))
        left, right = st.columns(2)
        if grid_mode:
            text = left.text_input(
                f"{name}: latents to try", value=", ".join(str(k) for k in range(1, min(3, width) + 1)),
                key=f"train_grid_{name}", help="e.g. 1, 2, 3 or 1-4",
            )
            choices[name] = parse_int_list(text, f"{name}: latents to try", low=1, high=min(64, width))
            latents[name] = choices[name][0]
        else:
            latents[name] = left.number_input(
                f"{name}: latents", min_value=1, max_value=min(64, width), value=min(2, width),
                key=f"train_latents_{name}",
            )
        nuisance[name] = right.number_input(
            f"{name}: nuisance dims", min_value=0, max_value=64, value=1, key=f"train_nuisance_{name}",
            help="modality-specific variation (device, measurement style) kept out of the latents",
        )
    return latents, nuisance, (latent_grid(choices) if grid_mode else None)


def _settings(record):
    """Every choice on the page -> (spec, seeds, grid); UserInputError if something is off."""
    latents, nuisance, grid = _latent_settings(record)
    # the page starts from the same defaults as the CLI and the benchmark, never its own copies
    m, t = ModelConfig(), TrainConfig()
    with st.expander("Loss weights and network"):
        cols = st.columns(5)
        model = {
            "a_rec": cols[0].number_input("reconstruction weight", min_value=0.0, value=m.a_rec, key="train_a_rec"),
            "a_ind": cols[1].number_input("KL weight", min_value=0.0, value=m.a_ind, key="train_a_ind"),
            "a_sp": cols[2].number_input(
                "sparsity weight", min_value=0.0, value=m.a_sp, format="%.4f", key="train_a_sp"
            ),
            "hidden": cols[3].number_input("hidden width", min_value=4, value=m.hidden, key="train_hidden"),
            "depth": cols[4].number_input("hidden layers", min_value=1, max_value=8, value=m.depth, key="train_depth"),
        }
    names = record.modality_names
    if st.session_state.get("train_order_dataset") != record.id:
        # another dataset: its own modalities, not what is left of the previous dataset's order
        st.session_state["train_order"] = names
        st.session_state["train_order_dataset"] = record.id
    order = st.multiselect(
        "Causal order of modalities (earliest first)", names, key="train_order",
        help="Edges may go from an earlier modality to a later one, never back.",
    )
    cols = st.columns(5)
    hardware = _hardware()
    train = {
        "epochs": cols[0].number_input("epochs", min_value=1, max_value=100_000, value=t.epochs, key="train_epochs"),
        "batch_size": cols[1].number_input("batch size", min_value=2, value=t.batch_size, key="train_batch"),
        "lr": cols[2].number_input("learning rate", min_value=1e-6, value=t.lr, format="%.4f", key="train_lr"),
        "device": cols[3].selectbox("device", ["auto", "cpu", "cuda"], key="train_device"),
    }
    seeds_text = cols[4].text_input("seeds", value="0", key="train_seeds", help="several seeds: 0, 1, 2 or 0-4")
    st.caption(f"Hardware found: {hardware.describe()}.")
    if train["device"] == "cuda" and not hardware.cuda:
        raise UserInputError("no CUDA GPU was found on this machine; choose auto or cpu")
    name = st.text_input("Run name (optional)", key="train_name")
    seeds = parse_int_list(seeds_text, "seeds", low=0, max_count=MAX_SEEDS)
    spec = build_spec(
        record, paths, latents=latents, nuisance=nuisance, model=model, train=train,
        causal_order=order, name=name,
    )
    return spec, seeds, grid


def _preflight(spec, record, n_runs: int) -> None:
    columns = {m["name"]: max(1, len(m["columns"])) for m in record.modalities}
    with st.spinner("Timing a few mini-batches of this model..."):
        estimate = preflight(spec, record.n_subjects, columns, threads=default_threads())
    at_once = min(n_runs, default_max_concurrent())
    total = estimate.seconds_total * n_runs / max(1, at_once)
    st.session_state["train_estimate"] = (
        f"Each run: {estimate.describe()}."
        + (f" {n_runs} runs, {at_once} at a time: at most {format_seconds(total)} in all." if n_runs > 1 else "")
    )


def _start(spec, seeds: list[int], grid) -> None:
    if len(seeds) == 1 and not grid:
        run_ids = [executor.submit(spec.model_copy(update={"train": spec.train.model_copy(update={"seed": seeds[0]})}))]
    else:
        _, run_ids = submit_group(executor, spec, seeds, grid)
    st.session_state[WATCH] = run_ids
    st.session_state.pop("train_estimate", None)


def _curves(runs) -> None:
    curves = long_curves(runs, paths)
    if curves.empty:
        return
    if len(runs) == 1:
        figure = px.line(curves.assign(curve=curves["curve"].map(curve_label)), x="epoch", y="value",
                         color="curve", title="Loss curves", labels={"value": "loss (lower is better)"})
    else:
        shown = curves[curves["curve"] == "val_loss"] if (curves["curve"] == "val_loss").any() else curves
        figure = px.line(shown, x="epoch", y="value", color="run", title="Validation loss",
                         labels={"value": "validation loss"})
    figure.update_layout(height=320, margin={"t": 40, "b": 10})
    st.plotly_chart(figure, key="train_curves")


def _live(polling: bool) -> None:
    executor.reconcile()
    watched = [r for r in (get_run(i, paths) for i in st.session_state.get(WATCH, [])) if r]
    runs = {r.id: r for r in list_runs(paths, statuses=ACTIVE_STATUSES)}
    runs.update({r.id: r for r in watched})
    if polling and not any(r.is_active for r in runs.values()):
        st.rerun()  # all finished: redraw the page once and stop polling
    if not runs:
        st.caption("No run in progress.")
        return
    for run in sorted(runs.values(), key=lambda r: (r.created_at, r.id)):
        summary = progress_summary(run, progress(run.id, paths))
        best = summary["best_val_loss"]
        text = (
            f"**{run.label}**: {run.status}, epoch {summary['epoch']}/{summary['epochs'] or '?'}"
            + (f", best validation loss {best:.4f}" if best is not None else "")
            + (f", about {format_seconds(summary['eta_s'])} left" if summary["eta_s"] is not None else "")
            # a finished run short of its epochs would otherwise look cut off
            + (", stopped early: the validation loss had stopped improving" if run.metrics.get("stopped_early") else "")
        )
        left, right = st.columns([6, 1])
        left.progress(summary["fraction"], text=text)
        if run.is_active:
            right.button("Cancel", key=f"train_cancel_{run.id}", on_click=executor.cancel, args=(run.id,))
        if run.status == FAILED and run.error:
            st.error(run.error)
    if watched:
        _curves(watched)
        group = watched[0].group_id
        chosen = best_run(group, paths) if group and not any(r.is_active for r in watched) else None
        if chosen is not None:
            st.success(f"Lowest validation loss in this group: **{chosen.label}** ({chosen.val_loss:.4f}).")
        elif len(watched) == 1 and watched[0].status == SUCCEEDED:
            chosen = watched[0]
        if chosen is not None:
            # without this the Latents and Causal graph pages keep showing the previously active run
            st.button(
                "Make it the active run (for Latents and Causal graph)", key="train_make_active", on_click=_make_active,
                args=(chosen.id,), disabled=st.session_state.get("run_id") == chosen.id,
                help="Makes it the active run in the sidebar",
            )


def _make_active(run_id: str) -> None:
    st.session_state["run_id"] = run_id


st.title("Train")
record = _dataset()
if record is not None:
    try:
        spec, seeds, grid = _settings(record)
    except UserInputError as exc:
        st.error(str(exc))
        spec = None
    if spec is not None:
        n_runs = len(seeds) * len(grid or [None])
        st.caption(
            f"{n_runs} run{'s' if n_runs != 1 else ''}"
            + (" in one group" if n_runs > 1 else "")
            + f"; at most {default_max_concurrent()} at once, {default_threads()} thread(s) each."
        )
        left, right = st.columns(2)
        if left.button("Estimate memory and time", key="train_estimate_button"):
            try:
                _preflight(spec, record, n_runs)
            except UserInputError as exc:
                st.error(str(exc))
        if right.button("Start training", type="primary", key="train_start"):
            _start(spec, seeds, grid)
        if st.session_state.get("train_estimate"):
            st.info(st.session_state["train_estimate"])

st.subheader("Progress")
polling = bool(list_runs(paths, statuses=ACTIVE_STATUSES))
st.fragment(_live, run_every="2s" if polling else None)(polling)
