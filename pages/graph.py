"""Causal graph explorer: the learned graph or PC read-out of a run, filters, node inspector, exports."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pandas as pd
import streamlit as st

from mmcrl_core.baselines import BENCHMARK_PC_ALPHA
from mmcrl_core.errors import UserInputError
from mmcrl_core.graph import (
    PHENOTYPE,
    GraphFilter,
    filter_graph,
    finished_runs,
    load_run_info,
    node_summary,
    strength_range,
    top_phenotypes,
)
from mmcrl_core.graph_export import FORMATS, export_bytes
from mmcrl_core.graph_html import STATIC_LAYOUT_NODES, graph_html

FORMAT_NAMES = {
    "graphml": "GraphML", "gexf": "GEXF", "dot": "DOT", "json": "node-link JSON",
    "cytoscape": "Cytoscape JSON", "csv": "CSV (edges + adjacency)", "html": "interactive HTML",
}
READOUTS = {"adjacency": "Learned adjacency", "pc": "PC over latents and phenotypes"}


def _mtime(path: Path) -> float:
    return max((p.stat().st_mtime for p in Path(path).iterdir() if p.is_file()), default=0.0)


@st.cache_data(max_entries=16, show_spinner=False)
def _learned(run_dir: str, group_dirs: tuple[str, ...], threshold: float | None, _stamp: float):
    from mmcrl_core.stability import group_support_graph

    graph, report = group_support_graph(run_dir, list(group_dirs), threshold=threshold)
    return graph, (report.latent_stability if report is not None else None)


@st.cache_data(max_entries=8, show_spinner=False)
def _phenotypes_of_run(run_dir: str, csv_path: str, _stamp: float) -> pd.DataFrame:
    if csv_path:
        from mmcrl_core.pc_readout import numeric_phenotypes, read_phenotypes_csv

        return numeric_phenotypes(read_phenotypes_csv(csv_path))
    from mmcrl_core.analysis import load_phenotypes
    from mmcrl_core.runfolder import read_latents

    return load_phenotypes(Path(run_dir), read_latents(Path(run_dir))).values


@st.cache_data(max_entries=8, show_spinner=False)
def _pc(run_dir: str, csv_path: str, columns: tuple[str, ...], test: str, alpha: float, _stamp: float):
    from mmcrl_core.pc_readout import pc_graph_from_run

    phenotypes = _phenotypes_of_run(run_dir, csv_path, _stamp)[list(columns)] if columns else None
    return pc_graph_from_run(run_dir, phenotypes, test=test, alpha=alpha)


def _pick_run(runs: list[dict]) -> dict:
    ids = [r["run_id"] for r in runs]
    by_id = {r["run_id"]: r for r in runs}
    active = st.session_state.get("run_id")
    # follow the run chosen elsewhere (sidebar, runs page) unless the user picks one here
    if active in by_id and st.session_state.get("graph_run") != active:
        st.session_state["graph_run"] = active
    if st.session_state.get("graph_run") not in by_id:
        st.session_state["graph_run"] = ids[0]

    def _make_active() -> None:
        st.session_state["run_id"] = st.session_state["graph_run"]

    chosen = st.selectbox(
        "Run", ids, key="graph_run", on_change=_make_active,
        format_func=lambda i: by_id[i]["name"] if by_id[i]["name"] == i else f"{by_id[i]['name']} ({i})",
    )
    return by_id[chosen]


def _inspector_phenotypes(run_dir: Path, stamp: float) -> pd.DataFrame | None:
    """The run's own phenotypes, so the inspector can say what a latent tracks; None if unreadable."""
    try:
        return _phenotypes_of_run(str(run_dir), "", stamp)
    except Exception:  # optional context: the graph is still worth showing without it
        return None


def _pc_controls(run_dir: Path, stamp: float):
    st.caption("PC (causal-learn) over the latents and the phenotypes you pick. Background knowledge: "
               "the modality order, and nothing causes age or sex.")
    csv_path = st.text_input("Phenotypes CSV (optional; default: the run's dataset)", key="graph_pc_csv",
                             help="A CSV on the server: subject id column first, then phenotype columns.")
    try:
        phenotypes = _phenotypes_of_run(str(run_dir), csv_path.strip(), stamp)
    except Exception as exc:  # an optional input: say why it is missing, never show a traceback
        st.warning(f"No phenotypes: {exc}")
        phenotypes = pd.DataFrame()
    columns = st.multiselect("Phenotypes", list(phenotypes.columns), key="graph_pc_columns",
                             max_selections=30)
    test = st.selectbox("Independence test", ["fisherz", "kci"], key="graph_pc_test",
                        format_func=lambda t: {"fisherz": "Fisher-z (fast)", "kci": "kernel (KCI, slow)"}[t])
    alpha = st.number_input(
        "alpha", min_value=1e-8, max_value=0.5, value=0.1, step=0.01, format="%g", key="graph_pc_alpha",
        help="Significance level of each independence test. With thousands of subjects, tiny dependences "
        f"(estimated latents leak a little of their siblings) pass at 0.1; the benchmark uses {BENCHMARK_PC_ALPHA:g}.")
    if not st.toggle("Run PC", key="graph_pc_on", help="PC runs when this is on; results are cached."):
        return None, phenotypes
    with st.spinner("Running PC..."):
        graph = _pc(str(run_dir), csv_path.strip(), tuple(columns), test, float(alpha), stamp)
    return graph, phenotypes


def _filters(graph, readout: str, run_dir: Path) -> GraphFilter:
    modalities = sorted({a["modality"] for _, a in graph.nodes(data=True) if a.get("kind") != PHENOTYPE})
    weights = [abs(float(a.get("weight", 0.0))) for *_, a in graph.edges(data=True)]
    top = max(weights, default=0.0)
    min_weight = 0.0
    if top > 0:
        label = "Minimum |edge weight|" if readout == "adjacency" else "Minimum |r| of an edge"
        min_weight = st.slider(label, 0.0, float(round(top, 4)), 0.0, step=float(round(top, 4)) / 100 or 0.01,
                               key=f"graph_min_weight_{readout}")
    min_support = st.slider("Minimum support", 0.0, 1.0, 0.0, step=0.05, key="graph_min_support",
                            help="Share of the runs in this run's group having the edge (1.0 for a lone run).")
    chosen = st.multiselect("Modalities", modalities, default=modalities, key="graph_modalities")
    cross = st.checkbox("Cross-modal edges only", key="graph_cross_only")
    # the learned adjacency has no phenotype nodes: the switch only means something for PC
    show_pheno = readout == "adjacency" or st.checkbox("Show phenotypes", value=True, key="graph_show_pheno")
    return GraphFilter(min_weight=min_weight, min_support=min_support, modalities=tuple(chosen),
                       cross_modal_only=cross, show_phenotypes=show_pheno)


def _inspector(graph, run_dir: Path, phenotypes: pd.DataFrame | None) -> None:
    st.subheader("Node inspector")
    nodes = list(graph.nodes)
    if not nodes:
        st.info("No nodes pass the filters.")
        return
    node = st.selectbox("Node", nodes, key="graph_inspect",
                        format_func=lambda n: n if graph.nodes[n].get("label") == n else f"{graph.nodes[n]['label']} ({n})")
    info = node_summary(graph, node)
    if info["kind"] == PHENOTYPE:
        st.markdown("**phenotype** (a measured column)")
    else:
        st.markdown(f"**{info['kind']}** of modality `{info.get('modality', '')}`")
    st.text(info.get("label", node))  # st.text: user text shown as text, never as markdown / HTML
    if info.get("description"):
        st.text(info["description"])
    if "stability" in info:
        st.metric("Stability across seeds", f"{info['stability']:.2f}",
                  help="Mean |r| with its best-matching latent in the group's other runs (1 = found every time).")
    left, right = st.columns(2)
    for column, title, rows in ((left, "Parents", info["parents"]), (right, "Children", info["children"])):
        with column:
            st.markdown(title)
            if rows:
                st.dataframe(_neighbours(rows), hide_index=True, width="stretch")
            else:
                st.caption("None among the nodes shown.")
    if info["kind"] != PHENOTYPE and phenotypes is not None and not phenotypes.empty:
        st.markdown("Top phenotypes (Spearman)")
        try:
            st.dataframe(_readable_associations(top_phenotypes(run_dir, phenotypes, node)), hide_index=True,
                         width="stretch")
        except (UserInputError, ValueError) as exc:
            st.caption(f"Not available: {exc}")


def _neighbours(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    if (frame["label"].astype(str) == frame["node"].astype(str)).all():
        frame = frame.drop(columns=["label"])  # the same text twice says nothing
    return frame


def _readable_associations(table: pd.DataFrame) -> pd.DataFrame:
    """q-values as 3.2e-12 rather than 0.000000000003, with the columns named for a reader."""
    def q_text(q) -> str:
        if pd.isna(q):
            return ""
        if q == 0:
            return "< 1e-300"  # below what a float holds
        return f"{q:.1e}" if q < 0.001 else f"{q:.3f}"

    return pd.DataFrame({
        "phenotype": table["phenotype"].astype(str),
        "Spearman rho": table["rho"].round(3),
        "q (BH-adjusted)": table["q"].map(q_text),
        "subjects": table["n"],
    })


def _downloads(graph) -> None:
    st.subheader("Export")
    st.caption("The graph as shown (filters applied), with its provenance: run, dataset, seed, config hash, "
               "read-out and threshold.")
    files = {fmt: export_bytes(graph, fmt, stem="graph") for fmt in FORMATS}
    per_row = 4  # seven buttons side by side cut their labels short
    columns = [c for start in range(0, len(files), per_row) for c in st.columns(per_row)]
    for column, (fmt, content) in zip(columns, files.items()):
        if len(content) == 1:
            (name, data), = content.items()
        else:  # csv: edges, adjacency and provenance together
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
                for member, blob in content.items():
                    archive.writestr(member, blob)
            name, data = "graph_csv.zip", buffer.getvalue()
        column.download_button(FORMAT_NAMES[fmt], data=data, file_name=name, key=f"graph_download_{fmt}",
                               on_click="ignore", width="stretch")


def main() -> None:
    st.title("Causal graph")
    runs = finished_runs()
    if not runs:
        st.info("No finished runs yet. Train one on the Train page; its graph appears here.")
        return
    run = _pick_run(runs)
    run_dir = Path(run["out_dir"])
    try:
        info = load_run_info(run_dir)
    except UserInputError as exc:
        st.error(str(exc))
        return
    stamp = _mtime(run_dir)
    group_dirs = tuple(sorted(str(r["out_dir"]) for r in runs if info.group_id and r["group_id"] == info.group_id))

    readout = st.radio("Read-out", list(READOUTS), format_func=READOUTS.get, horizontal=True, key="graph_readout")
    controls, canvas = st.columns([4, 11])
    phenotypes = None
    stability_table = None
    with controls:
        try:
            if readout == "adjacency":
                own_rule = st.checkbox("Use the run's selection rule", value=True, key="graph_own_rule",
                                       help=f"Rule fixed before training: {info.readout_rule or 'adjacency.csv'}")
                threshold = None
                if not own_rule:
                    _, top = strength_range(run_dir)
                    default = info.absolute_threshold(top)
                    default = top / 4 if default is None else default
                    threshold = st.slider("Threshold on learned edge strength", 0.0, float(top) or 1.0,
                                          float(min(default, top)), step=(float(top) or 1.0) / 200,
                                          key="graph_threshold")
                graph, stability_table = _learned(str(run_dir), group_dirs, threshold, stamp)
                phenotypes = _inspector_phenotypes(run_dir, stamp)
            else:
                graph, phenotypes = _pc_controls(run_dir, stamp)
        except UserInputError as exc:
            st.error(str(exc))
            return
        if graph is None:
            with canvas:
                st.info("Pick phenotypes (optional) and switch on **Run PC**.")
            return
        st.divider()
        shown = filter_graph(graph, _filters(graph, readout, run_dir))
        static = st.checkbox("Static layout (no physics)", value=len(shown) > STATIC_LAYOUT_NODES,
                             key="graph_static")
    with canvas:
        n_runs = graph.graph.get("support_runs")
        st.caption(
            f"{shown.number_of_nodes()} nodes, {shown.number_of_edges()} edges shown "
            f"(of {graph.number_of_edges()}). Read-out: {graph.graph.get('readout', '')}. "
            + (f"Edge support over the {n_runs} runs of group {info.group_id}." if n_runs else
               "Support: this run alone.")
        )
        st.iframe(graph_html(shown, static_layout=static, height="640px"), height=720)
        if stability_table is not None:
            with st.expander("Latent stability across the group"):
                st.dataframe(stability_table, hide_index=True, width="stretch", column_config={
                    "stability": st.column_config.NumberColumn("stability (mean matched |r|)", format="%.2f"),
                    "min_correlation": st.column_config.NumberColumn("lowest matched |r|", format="%.2f"),
                    "n_runs": "runs",
                })
                st.caption("How closely each latent is found again by the other runs of the group: the |r| "
                           "with its best-matching latent there, 1 = the same latent every time.")
    _inspector(shown, run_dir, phenotypes)
    _downloads(shown)


main()
