"""Benchmark: simulated data with known truth, mmcrl and the baselines scored the same way.

The page only draws: the job runs `python -m mmcrl_core benchmark` (mmcrl_core.benchmark_jobs), the
comparison with the truth comes from mmcrl_core.benchmark_artifacts.
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from mmcrl_core import benchmark_artifacts as art
from mmcrl_core import benchmark_jobs as bj
from mmcrl_core.benchmark import METHODS, SUITES
from mmcrl_core.errors import UserInputError
from mmcrl_core.metrics import modality_of
from mmcrl_core.paper_results import NOT_REPRODUCED, SOURCE, paper_result
from mmcrl_core.simulate import SETTINGS, SimulationSettings
from mmcrl_core.workspace import default_paths

PATHS = default_paths()
EDGE_COLOURS = {"correct": "#2ca02c", "missed": "#ff7f0e", "spurious": "#d62728", "reversed": "#9467bd",
                "true": "#555555"}
MODALITY_COLOURS = ["#1f77b4", "#e377c2", "#17becf", "#bcbd22", "#8c564b", "#7f7f7f", "#ff9896", "#98df8a"]
SETTING_HELP = {
    "tiny": "2 modalities x 2 latents, 6 columns, n = 1,000: a smoke test (seconds to a minute)",
    "case1": "paper case 1: 2 modalities x 2 latents, 15 columns",
    "case2": "paper case 2: 2 modalities x 3 latents, 20 columns",
    "case3": "paper case 3: 4 modalities x 2 latents, 30 columns",
}

st.title("Benchmark on simulated data")
st.caption(
    "Data drawn from the paper's generative process, where the true latents and causal graph are known. "
    "mmcrl and the baselines are scored the same way: MCC within each modality (Pearson as in the paper, "
    "Spearman since recovery is only up to a monotone map), kernel-ridge R², SHD of the whole graph and F1 "
    f"of the cross-modal edges. Paper figures: {SOURCE}."
)


# ----------------------------------------------------------------------------- new benchmark


def _describe(settings: SimulationSettings) -> str:
    def one(values: list[int]) -> str:
        return str(values[0]) if len(set(values)) == 1 else ", ".join(map(str, values))

    k, e, d = settings.sizes()
    cycles = "" if settings.cyclic == "none" else f", cycles {settings.cyclic} modalities"
    density = (f"{settings.cross_edges_removed:.0%} of cross-modal edges removed" if settings.cross_edges_removed
               is not None else f"cross-modal edge probability {settings.cross_edge_prob:g}")
    return (f"{settings.modalities} modalities; per modality {one(k)} latents, {one(e)} nuisance, "
            f"{one(d)} observed columns; n = {settings.n:,}; {density}{cycles}; {settings.noise} noise")


def _custom_settings() -> SimulationSettings | None:
    c = st.columns(4)
    modalities = c[0].number_input("Modalities", 2, 12, 2, key="bench_modalities")
    latents = c[1].number_input("Latents per modality", 1, 8, 2, key="bench_latents")
    nuisance = c[2].number_input("Nuisance dims per modality", 0, 8, 1, key="bench_nuisance")
    obs_dim = c[3].number_input("Observed columns per modality", 2, 200, 10, key="bench_obs_dim")
    c = st.columns(4)
    n = c[0].number_input("Subjects", 100, 100_000, 2_000, step=500, key="bench_n")
    density = c[1].slider("Cross-modal edge density", 0.0, 1.0, 0.15, 0.05, key="bench_density",
                          help="probability of each allowed cross-modal edge; the sparsity condition is "
                          "enforced (edges are added until it holds)")
    cycles = c[2].selectbox("Cycles", ["none", "within", "across"], key="bench_cycles",
                            help="add a directed cycle inside each modality or across modalities")
    noise = c[3].selectbox("Noise", ["gaussian", "laplace", "uniform"], key="bench_noise")
    name = st.text_input("Name of this setting", "custom", key="bench_name")
    try:
        settings = SimulationSettings(name=name.strip(), modalities=int(modalities), latents=int(latents),
                                      nuisance=int(nuisance), obs_dim=int(obs_dim), n=int(n),
                                      cross_edge_prob=float(density), cyclic=cycles, noise=noise)
        settings.sizes()
        return settings
    except (ValueError, UserInputError) as exc:
        st.error(f"These settings cannot be simulated: {exc}")
        return None


def _suite_help(name: str) -> str:
    options = SUITES[name]
    n = f"n = {options.n:,} (tiny keeps its own)" if options.n else "the setting's own n"
    return (f"{name}: {n}, mmcrl trained {options.mmcrl_seeds} times x {options.mmcrl_epochs} epochs "
            "(the lowest validation loss is reported)")


def _new_benchmark() -> None:
    mode = st.radio("Setting", ["Named setting", "Custom"], horizontal=True, key="bench_mode")
    custom = None
    setting = "tiny"
    if mode == "Named setting":
        setting = st.selectbox("Named setting (every numerical experiment of the paper)", list(SETTINGS),
                               key="bench_setting", format_func=lambda s: f"{s}: {SETTING_HELP.get(s, '')}"
                               if s in SETTING_HELP else s)
        paper = paper_result(setting)
        st.caption(_describe(SETTINGS[setting]) + (f". Paper: {paper.note}" if paper else ""))
    else:
        custom = _custom_settings()
    c = st.columns([1, 1, 2])
    suite = c[0].selectbox("Budget (suite)", list(SUITES), key="bench_suite",
                           help="; ".join(_suite_help(name) for name in SUITES))
    seeds = c[1].number_input("Data seeds", 1, 10, 1, key="bench_seeds",
                              help="independent simulated data sets (seeds 0, 1, ...)")
    methods = c[2].multiselect("Methods", METHODS, default=list(SUITES[suite].methods), key="bench_methods",
                               help="mmcrl and the baselines a user would try first")
    options = SUITES[suite]
    if custom is not None and options.n is not None:
        st.caption(f"The {suite} suite simulates n = {options.n:,} subjects for named settings but tiny; "
                   "a custom setting keeps its own number of subjects (passed as --n).")
    if st.button("Run benchmark", type="primary", key="bench_run", disabled=mode == "Custom" and custom is None):
        try:
            request = bj.BenchmarkRequest(setting=setting, custom=custom, suite=suite, seeds=int(seeds),
                                          methods=list(methods))
            bench_id = bj.submit_benchmark(request, PATHS)
        except (UserInputError, ValueError) as exc:
            st.error(str(exc))
            return
        st.session_state["benchmark_id"] = bench_id
        st.session_state["bench_selected"] = bench_id
        st.rerun()


with st.expander("New benchmark", expanded=True):
    _new_benchmark()


# ----------------------------------------------------------------------------- running benchmarks


@st.fragment(run_every=2)
def _running() -> None:
    bj.refresh(PATHS)
    active = [r for r in bj.list_benchmarks(PATHS) if r.is_active]
    was_active = st.session_state.get("bench_active", [])
    st.session_state["bench_active"] = [r.id for r in active]
    if set(was_active) - {r.id for r in active}:
        st.rerun()  # one finished: redraw the whole page with its results
    for run in active:
        progress = bj.read_progress(run)
        c = st.columns([5, 1])
        c[0].progress(progress.fraction, text=f"{run.name} ({run.status}): {progress.message}"[:300])
        if c[1].button("Cancel", key=f"bench_cancel_{run.id}"):
            bj.cancel_benchmark(run.id, PATHS)
            st.rerun()


_running()


# ----------------------------------------------------------------------------- earlier benchmarks


def _pick_benchmark():
    """The benchmark to show: a registered job (RunRecord) or a command-line results folder (Path)."""
    runs = bj.list_benchmarks(PATHS)
    folders = bj.command_line_folders(PATHS)
    if not runs and not folders:
        st.info("No benchmark yet: choose a setting above and press **Run benchmark** (tiny takes about a minute).")
        return None
    st.subheader("Benchmarks in this workspace")
    listing = [{
        "id": r.id, "name": r.name, "status": r.status,
        "created (UTC)": str(r.created_at or "").replace("T", " ")[:16],
        "mmcrl MCC": (r.metrics.get("mmcrl") or {}).get("mcc"),
        "mmcrl cross-modal F1": (r.metrics.get("mmcrl") or {}).get("cross_f1"),
    } for r in runs]
    listing += [{"id": f.name, "name": "from the command line", "status": "succeeded", "created (UTC)": "",
                 "mmcrl MCC": None, "mmcrl cross-modal F1": None} for f in folders]
    st.dataframe(pd.DataFrame(listing), hide_index=True, key="bench_listing")
    choices: dict[str, object] = {r.id: r for r in runs} | {f.name: f for f in folders}
    ids = list(choices)
    wanted = st.session_state.get("benchmark_id")
    if st.session_state.get("bench_selected") not in ids:
        st.session_state["bench_selected"] = wanted if wanted in ids else ids[0]

    def label(i: str) -> str:
        item = choices[i]
        # no status here: the table above shows it live, a label would keep the one it had when first drawn
        return f"{i} · from the command line" if isinstance(item, Path) else f"{item.name} · {i}"

    chosen = st.selectbox("Show", ids, key="bench_selected", format_func=label)
    st.session_state["benchmark_id"] = chosen
    return choices[chosen]


def _show_folder(folder: Path) -> None:
    st.caption(f"Written by `python -m mmcrl_core benchmark ... --out {html.escape(str(folder))}`.")
    results = bj.read_results(folder)
    _results_table(results)
    _comparison(folder, results)


def _show_run(run) -> None:
    request = bj.request_of(run)
    st.code(bj.cli_command(request, run.out_dir), language="bash")
    if request.custom is not None:
        st.caption("Custom settings: " + _describe(request.custom) + f" (saved in {run.out_dir}/settings.json, "
                   "which the command above reads)")
    if run.status == "failed":
        st.error(f"This benchmark failed: {run.error}")
    elif run.status == "cancelled":
        st.warning("This benchmark was cancelled.")
    elif run.is_active:
        st.info("Still running; results appear here when it finishes.")
    try:
        results = bj.read_results(run)
    except UserInputError:
        results = None
    if results is not None:
        if run.status != "succeeded":
            st.caption("Partial results: the data sets finished before it stopped.")
        _results_table(results)
        _comparison(run.out_dir, results)
    with st.expander("Log", expanded=run.status == "failed"):
        st.code(bj.log_tail(run, 40) or "(empty)")
    if not run.is_active and st.button("Delete this benchmark", key=f"bench_delete_{run.id}"):
        bj.delete_benchmark(run.id, PATHS)
        st.session_state.pop("benchmark_id", None)
        st.session_state.pop("bench_selected", None)
        st.rerun()


def _results_table(results: pd.DataFrame) -> None:
    st.subheader("Scores")
    show_seeds = st.checkbox("Show each mmcrl training seed (mmcrl is the one with the lowest validation loss)",
                             key="bench_training_seeds")
    table = art.readable_paper_columns(art.results_table(results, include_training_seeds=show_seeds))
    st.dataframe(table, hide_index=True, key="bench_results", column_config={
        c: st.column_config.NumberColumn(format="%.3f") for c in table.columns
        if table[c].dtype.kind == "f" and c not in ("SHD", "paper SHD", "seconds")
    } | {"seconds": st.column_config.NumberColumn("seconds", format="%.2f")})
    reference = art.all_edges_reference(results)
    if reference:
        st.caption("Predicting every allowed cross-modal edge scores cross-modal F1 "
                   + ", ".join(f"{v:.2f} ({k})" for k, v in reference.items())
                   + ": a graph read-out is only informative above that. Baselines have no graph of their own; "
                   "they are scored on a Lasso read-out of their latents.")
    if not {"paper MCC", "paper R²", "paper SHD"} & set(table.columns):
        st.caption("The paper reports no numbers for this setting"
                   + (" (see the note column where it shows trends)." if "paper note" in table.columns else "."))
    with st.expander("Paper experiments our simulator does not cover"):
        for what, figures in NOT_REPRODUCED.items():
            st.markdown(f"- **{what}**: {figures}")


# ----------------------------------------------------------------------------- truth vs estimate


def _comparison(out_dir, results: pd.DataFrame) -> None:
    st.subheader("Truth vs estimate")
    c = st.columns(3)
    setting = c[0].selectbox("Setting", list(dict.fromkeys(results["setting"].astype(str))), key="bench_cmp_setting")
    rows = results[results["setting"].astype(str) == setting]
    seed = c[1].selectbox("Data seed", sorted(rows["seed"].unique().tolist()), key="bench_cmp_seed")
    methods = list(dict.fromkeys(rows["method"].astype(str)))
    method = c[2].selectbox("Method", methods, key="bench_cmp_method")
    truth = art.load_truth(out_dir, setting, int(seed))
    estimate = art.load_method(out_dir, setting, int(seed), method)
    if truth is None or estimate is None:
        st.info("No saved latents for this combination (the command line saves them with --save-estimates).")
        return
    comparison = art.compare(truth, estimate)
    names = list(truth.adjacency.columns)
    positions = art.circle_layout(names)
    only_cross = st.checkbox("Cross-modal edges only (the edges the method promises)", key="bench_cross_only")
    edges = comparison.edges
    if edges is not None and only_cross:
        edges = edges[edges["cross_modal"]]
    if edges is None:  # nothing to compare with: draw the true edges plainly
        true_edges = art.edge_status(truth.adjacency, truth.adjacency).assign(status="true")
        if only_cross:
            true_edges = true_edges[true_edges["cross_modal"]]
    else:
        true_edges = edges[edges["status"].isin(["correct", "missed", "reversed"])]
    left, right = st.columns(2)
    left.plotly_chart(_graph_figure("True graph", names, positions, {n: n for n in names}, true_edges,
                                    truth_side=True), key="bench_true_graph")
    if edges is None:
        right.info(f"{method} learns no graph.")
    else:
        labels = {n: f"{comparison.matching.get(n, '?')} ≙ {n}" for n in names}
        learned = edges[edges["status"].isin(["correct", "spurious", "reversed"])]
        right.plotly_chart(_graph_figure(f"Learned graph ({method})", names, positions, labels, learned,
                                         truth_side=False), key="bench_learned_graph")
        counts = edges["status"].value_counts()
        st.caption(
            "Nodes of the learned graph sit where their matched true latents sit and are labelled "
            "'estimated ≙ true'. " + ", ".join(f"{counts.get(s, 0)} {s}" for s in art.EDGE_STATUSES)
            + ". Latents are identified only up to a permutation inside each modality, so edges inside a "
            "modality are not promised."
        )
    st.plotly_chart(_scatter_figure(truth, estimate, comparison), key="bench_scatter")


def _graph_figure(title: str, names: list[str], positions: dict, labels: dict, edges, truth_side: bool):
    fig = go.Figure()
    modalities = list(dict.fromkeys(modality_of(n) for n in names))
    shown = ["correct", "missed", "reversed"] if truth_side else ["correct", "spurious", "reversed"]
    if edges is not None and (edges["status"] == "true").any():
        shown = ["true"]
    for status in shown:
        # legend entries: arrows themselves are annotations, which have no legend
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=_status_label(status, truth_side),
                                 line=dict(color=EDGE_COLOURS[status], width=3)))
    if edges is not None:
        for edge in edges.itertuples(index=False):
            source, target = edge.source, edge.target
            if edge.status == "reversed" and truth_side:
                source, target = target, source  # the truth side draws the true direction
            (x0, y0), (x1, y1) = positions[source], positions[target]
            fig.add_annotation(x=x1, y=y1, ax=x0, ay=y0, xref="x", yref="y", axref="x", ayref="y",
                               showarrow=True, arrowhead=3, arrowsize=1.2, arrowwidth=2, standoff=14,
                               startstandoff=14, arrowcolor=EDGE_COLOURS[edge.status], opacity=0.9)
    for b, modality in enumerate(modalities):
        members = [n for n in names if modality_of(n) == modality]
        fig.add_trace(go.Scatter(
            x=[positions[n][0] for n in members], y=[positions[n][1] for n in members], mode="markers+text",
            text=[html.escape(labels[n]) for n in members], textposition="top center", name=html.escape(modality),
            marker=dict(size=24, color=MODALITY_COLOURS[b % len(MODALITY_COLOURS)], line=dict(width=1, color="#333")),
            hovertext=[html.escape(labels[n]) for n in members], hoverinfo="text",
        ))
    xs = [p[0] for p in positions.values()]
    ys = [p[1] for p in positions.values()]
    width, height = max(xs) - min(xs) + 1.6, max(ys) - min(ys) + 1.6
    fig.update_layout(title=title, height=int(min(560, max(300, 120 + 420 * height / width))),
                      margin=dict(l=10, r=10, t=50, b=10), showlegend=True, legend=dict(orientation="h", y=-0.05))
    fig.update_xaxes(visible=False, range=[min(xs) - 0.8, max(xs) + 0.8])
    fig.update_yaxes(visible=False, range=[min(ys) - 0.8, max(ys) + 0.8])
    return fig


def _status_label(status: str, truth_side: bool) -> str:
    if truth_side:
        return {"correct": "found", "missed": "missed", "reversed": "found reversed", "true": "true edge"}[status]
    return {"correct": "correct", "spurious": "spurious", "reversed": "reversed", "true": "true edge"}[status]


def _scatter_figure(truth, estimate, comparison):
    frame = art.scatter_frame(truth, estimate, comparison.matching)
    names = list(truth.latents.columns)
    modalities = list(dict.fromkeys(modality_of(n) for n in names))
    per_row = max(sum(modality_of(n) == m for n in names) for m in modalities)
    titles = []
    cells = {}
    for r, modality in enumerate(modalities):
        members = [n for n in names if modality_of(n) == modality]
        for c in range(per_row):
            if c < len(members):
                n = members[c]
                cells[n] = (r + 1, c + 1)
                titles.append(f"{n} vs {comparison.matching.get(n, '?')} (|r| {comparison.matched_corr.get(n, 0):.2f})")
            else:
                titles.append("")
    fig = make_subplots(rows=len(modalities), cols=per_row, subplot_titles=[html.escape(t) for t in titles])
    for n, (r, c) in cells.items():
        part = frame[frame["true_latent"] == n]
        fig.add_trace(go.Scattergl(x=part["true"], y=part["estimated"], mode="markers", showlegend=False,
                                   marker=dict(size=3, opacity=0.4, color=MODALITY_COLOURS[(r - 1) % 8])),
                      row=r, col=c)
        fig.update_xaxes(title_text="true", row=r, col=c)
        fig.update_yaxes(title_text="estimate", row=r, col=c)
    fig.update_layout(title=f"Each true latent against its matched estimate ({estimate.method})",
                      height=max(300, 260 * len(modalities)), margin=dict(l=10, r=10, t=70, b=10))
    return fig


selected = _pick_benchmark()
if isinstance(selected, Path):
    _show_folder(selected)
elif selected is not None:
    _show_run(selected)
