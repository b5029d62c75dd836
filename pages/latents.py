"""Latent browser: what each latent of a run goes with (phenotypes) and what it drives (features)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from mmcrl_core import analysis
from mmcrl_core.errors import UserInputError
from mmcrl_core.labels import display_name, load_labels, top_associations, update_label
from mmcrl_core.runfolder import LATENTS
from mmcrl_core.sensitivity import ranked_features
from mmcrl_core.workspace import default_paths

CHART_CONFIG = {"toImageButtonOptions": {"format": "svg", "scale": 2}, "displaylogo": False}
CARDS_PER_PAGE = 12


# ----------------------------------------------------------------------------- cached work


@st.cache_data(show_spinner="Correlating every latent with every phenotype...", max_entries=8)
def _analyse(run_dir: str, stamp: float, covariates: bytes | None, covariates_suffix: str,
             adjust: tuple[str, ...]) -> analysis.RunAnalysis:
    if covariates is None:
        return analysis.analyse_run(run_dir, None, list(adjust))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"covariates{covariates_suffix}"
        path.write_bytes(covariates)
        return analysis.analyse_run(run_dir, path, list(adjust))


@st.cache_data(show_spinner="Differentiating the decoders...", max_entries=8)
def _sensitivities(run_dir: str, stamp: float) -> tuple[pd.DataFrame | None, str]:
    try:
        return ranked_features(analysis.run_sensitivities(run_dir)), ""
    except analysis.SensitivityUnavailable as exc:
        return None, str(exc)


@st.cache_data(show_spinner="Rendering the image...", max_entries=16)
def _image(figure_json: str, fmt: str) -> bytes | None:
    """PNG / SVG through kaleido (headless Chromium); None when no browser can be started here."""
    try:
        return go.Figure(json.loads(figure_json)).to_image(format=fmt, scale=2 if fmt == "png" else 1)
    except Exception:
        return None


# ----------------------------------------------------------------------------- figures


def _heatmap(values: pd.DataFrame, qs: pd.DataFrame, labels: dict, statistic: str) -> go.Figure:
    """Latents x phenotypes as square markers: unlike go.Heatmap, a marker can be clicked and selected."""
    rows = [display_name(latent, labels) for latent in values.index]
    xs, ys, colours, marks, custom = [], [], [], [], []
    mark_matrix = analysis.significance_marks(qs.to_numpy())
    for i, latent in enumerate(values.index):
        for j, phenotype in enumerate(values.columns):
            xs.append(str(phenotype))
            ys.append(rows[i])
            colours.append(values.iat[i, j])
            marks.append(mark_matrix[i, j])
            custom.append([latent, str(phenotype), qs.iat[i, j]])
    # marker size in pixels: fill the cells of a ~480 px wide plot area without overlapping
    cell = max(6, min(28, int(480 / max(1, len(values.columns))) - 2))
    figure = go.Figure(go.Scatter(
        x=xs, y=ys, mode="markers+text", text=marks, textposition="middle center",
        textfont={"size": 10, "color": "black"}, customdata=custom,
        marker={"symbol": "square", "size": cell, "color": np.nan_to_num(colours), "colorscale": "RdBu_r",
                "cmin": -1, "cmax": 1, "colorbar": {"title": {"text": statistic}}, "line": {"width": 0}},
        selected={"marker": {"opacity": 1.0}}, unselected={"marker": {"opacity": 0.8}},
        hovertemplate="%{y} vs %{x}<br>" + statistic + " %{marker.color:.3f}<br>q %{customdata[2]:.2g}<extra></extra>",
    ))
    figure.update_layout(
        height=140 + (cell + 4) * len(rows), margin={"l": 10, "r": 10, "t": 30, "b": 10},
        xaxis={"type": "category", "categoryorder": "array", "categoryarray": [str(c) for c in values.columns],
               "tickangle": -45, "side": "top"},
        yaxis={"type": "category", "categoryorder": "array", "categoryarray": rows[::-1]},
        plot_bgcolor="white", clickmode="event+select",
    )
    return figure


def _scatter(result: analysis.RunAnalysis, latent: str, phenotype: str, labels: dict) -> tuple[go.Figure, dict]:
    x = result.latents[latent]
    y = result.phenotypes.values[phenotype]
    both = x.notna() & y.notna()
    x, y = x[both], y[both]
    row = result.associations[(result.associations.latent == latent) & (result.associations.phenotype == phenotype)]
    stats = row.iloc[0].to_dict() if len(row) else {}
    name = display_name(latent, labels)
    figure = go.Figure()
    if stats.get("kind") == "binary":
        coding = result.phenotypes.coding.get(phenotype, "")
        for level in sorted(y.unique()):
            figure.add_trace(go.Box(x=x[y == level], name=f"{phenotype} = {level:g}", boxpoints="outliers",
                                    orientation="h"))
        figure.update_layout(xaxis_title=name, yaxis_title=f"{phenotype} {coding}")
    else:
        figure.add_trace(go.Scattergl(x=x, y=y, mode="markers", marker={"size": 4, "opacity": 0.5}, name="subjects"))
        if len(x) >= 3 and x.std() > 0:
            slope, intercept = np.polyfit(x, y, 1)
            grid = np.linspace(x.min(), x.max(), 50)
            figure.add_trace(go.Scatter(x=grid, y=slope * grid + intercept, mode="lines", name="least-squares line",
                                        line={"color": "crimson"}))
        figure.update_layout(xaxis_title=name, yaxis_title=phenotype)
    if stats:
        figure.update_layout(title={"text": (
            f"Spearman rho {stats['rho']:+.3f} (q {stats['q']:.2g}) | Pearson r {stats['pearson_r']:+.3f} "
            f"(q {stats['pearson_q']:.2g}) | n {int(stats['n'])}")})
    figure.update_layout(height=420, margin={"t": 50})
    return figure, stats


def _matrix_figure(matrix: pd.DataFrame, labels: dict) -> go.Figure:
    names = [display_name(c, labels) for c in matrix.columns]
    figure = go.Figure(go.Heatmap(z=matrix.to_numpy(), x=names, y=names, zmin=-1, zmax=1, colorscale="RdBu_r",
                                  texttemplate="%{z:.2f}", hovertemplate="%{y} vs %{x}: %{z:.3f}<extra></extra>"))
    figure.update_layout(height=120 + 36 * len(names), yaxis={"autorange": "reversed"},
                         margin={"l": 10, "r": 10, "t": 10, "b": 10})
    return figure


def _downloads(figure: go.Figure, stem: str, key: str) -> None:
    """HTML always works offline; PNG / SVG need a headless Chromium (kaleido) on this machine."""
    columns = st.columns(3)
    columns[0].download_button("HTML", figure.to_html(include_plotlyjs=True), f"{stem}.html", "text/html",
                               key=f"{key}-html")
    if columns[1].toggle("PNG / SVG", key=f"{key}-img", help="renders with a headless browser; takes a few seconds"):
        spec = figure.to_json()
        png, svg = _image(spec, "png"), _image(spec, "svg")
        if png is None or svg is None:
            columns[2].caption("No image renderer here: use the camera icon of the chart's toolbar (SVG).")
        else:
            columns[1].download_button("PNG", png, f"{stem}.png", "image/png", key=f"{key}-png")
            columns[2].download_button("SVG", svg, f"{stem}.svg", "image/svg+xml", key=f"{key}-svg")


# ----------------------------------------------------------------------------- page

st.title("Latents")
st.caption("What each latent goes with among the measured phenotypes, and which features it drives. "
           "Associations are correlations, not effects: adjust for age, sex and the like before reading them.")

runs = analysis.browsable_runs(default_paths())
if not runs:
    st.info("No finished run yet. Train one on the Train page; its latents appear here.")
    st.stop()
run_ids = list(runs)
active = st.session_state.get("run_id")  # the sidebar's active run
if active in run_ids and active != st.session_state.get("latents_followed_run"):
    # follow the sidebar when it changes; the box below can still pick any other run
    st.session_state["latents_followed_run"] = active
    st.session_state["latents_run"] = active
if st.session_state.get("latents_run") not in run_ids:
    st.session_state["latents_run"] = run_ids[0]
run_id = st.selectbox("Run", run_ids, key="latents_run")
run_dir = runs[run_id]
stamp = (run_dir / LATENTS).stat().st_mtime

with st.expander("Phenotypes and adjustment", expanded=False):
    upload = st.file_uploader("Extra phenotypes or covariates (a table with the subject id in the first column)",
                              type=["csv", "tsv", "txt", "parquet", "xlsx"], key="latents_covariates")
    covariate_bytes = upload.getvalue() if upload is not None else None
    suffix = Path(upload.name).suffix.lower() if upload is not None else ""
    try:
        unadjusted = _analyse(str(run_dir), stamp, covariate_bytes, suffix, ())
    except UserInputError as exc:
        st.error(str(exc))
        st.stop()
    candidates = sorted(unadjusted.phenotypes.values.columns,
                        key=lambda c: (unadjusted.phenotypes.sources.get(c) != analysis.COVARIATES_SOURCE, c))
    adjust = st.multiselect("Adjust for (partial correlation)", candidates, key="latents_adjust",
                            help="Latents and phenotypes are residualised on these columns (with an intercept) "
                                 "before correlating.")
    if unadjusted.phenotypes.skipped:
        st.caption("Left out (text with more than two values): " + ", ".join(unadjusted.phenotypes.skipped[:30]))

try:
    result = _analyse(str(run_dir), stamp, covariate_bytes, suffix, tuple(adjust)) if adjust else unadjusted
except UserInputError as exc:
    st.error(str(exc))
    st.stop()
table = result.associations
latent_names = list(result.latents.columns)
driven, driven_note = _sensitivities(str(run_dir), stamp)
labels = load_labels(run_dir, latent_names, table, driven)

top = st.columns(4)
top[0].metric("Subjects", f"{len(result.latents):,}")
top[1].metric("Latents", len(latent_names))
top[2].metric("Phenotypes", result.phenotypes.values.shape[1] - len(adjust))
top[3].metric("Associations with q < 0.05", int((table["q"] < 0.05).sum()))

# --- heatmap ------------------------------------------------------------------------------
st.subheader("Latents x phenotypes")
controls = st.columns(3)
statistic = controls[0].radio("Statistic", ["Spearman rho", "Pearson r"], horizontal=True, key="latents_stat")
value_column, q_column = ("rho", "q") if statistic == "Spearman rho" else ("pearson_r", "pearson_q")
n_phenotypes = table["phenotype"].nunique()
shown = controls[1].slider("Phenotypes shown (most significant first)", 1, max(1, min(200, n_phenotypes)),
                           min(40, max(1, n_phenotypes)), key="latents_shown") if n_phenotypes > 1 else 1
controls[2].caption("Clustered rows and columns. * q < 0.05, ** q < 0.01, *** q < 0.001 "
                    "(Benjamini-Hochberg over all tests). Click a cell for its scatter plot.")
values, qs = analysis.clustered_matrix(table, value_column, q_column, shown)
heatmap = _heatmap(values, qs, labels, statistic.split()[-1])
event = st.plotly_chart(heatmap, on_select="rerun", selection_mode="points", key="latents_heatmap",
                        config=CHART_CONFIG, width="stretch")
_downloads(heatmap, f"{run_id}_associations_heatmap", "dl-heatmap")

# a click selects a cell; it then drives the two boxes below (which stay usable on their own)
points = (event.selection.points if event and event.selection else []) or []
if points:
    point = points[0]
    custom = point.get("customdata")
    clicked = (custom[0], custom[1]) if custom else (None, None)
    if clicked[0] is None:
        by_display = {display_name(latent, labels): latent for latent in latent_names}
        clicked = (by_display.get(point.get("y")), point.get("x"))
    if clicked != st.session_state.get("latents_last_click") and clicked[0] in latent_names:
        st.session_state["latents_last_click"] = clicked
        st.session_state["latents_scatter_latent"] = clicked[0]
        st.session_state["latents_scatter_phenotype"] = clicked[1]

st.subheader("One latent against one phenotype")
phenotype_names = list(dict.fromkeys(table["phenotype"]))
if st.session_state.get("latents_scatter_latent") not in latent_names:
    st.session_state["latents_scatter_latent"] = str(values.index[0])
if st.session_state.get("latents_scatter_phenotype") not in phenotype_names:
    st.session_state["latents_scatter_phenotype"] = str(values.columns[0])
pick = st.columns(2)
scatter_latent = pick[0].selectbox("Latent", latent_names, key="latents_scatter_latent",
                                   format_func=lambda name: display_name(name, labels))
scatter_phenotype = pick[1].selectbox("Phenotype", phenotype_names, key="latents_scatter_phenotype")
scatter, stats = _scatter(result, scatter_latent, scatter_phenotype, labels)
with st.container(key="latents_scatter"):
    st.plotly_chart(scatter, config=CHART_CONFIG, width="stretch", key="latents_scatter_chart")
    if stats:
        st.caption(f"Selected: {display_name(scatter_latent, labels)} vs {scatter_phenotype} "
                   f"({stats['kind']}, source {stats['source'] or 'data'})"
                   + (f"; adjusted for {', '.join(result.adjust)}" if result.adjust else ""))
_downloads(scatter, f"{run_id}_{scatter_latent}_{scatter_phenotype}".replace(":", "-"), "dl-scatter")

# --- cards ----------------------------------------------------------------------------------
st.subheader("Latent cards")
if driven is None:
    st.caption(f"Driven features unavailable: {driven_note}")
modalities = list(dict.fromkeys(name.rpartition(":")[0] for name in latent_names))
which = st.selectbox("Modality", ["all", *modalities], key="latents_card_modality")
card_latents = [n for n in latent_names if which == "all" or n.rpartition(":")[0] == which]
pages = max(1, -(-len(card_latents) // CARDS_PER_PAGE))
page = st.number_input("Page", 1, pages, 1, key="latents_card_page") if pages > 1 else 1
grid = st.columns(2)
for position, latent in enumerate(card_latents[(page - 1) * CARDS_PER_PAGE: page * CARDS_PER_PAGE]):
    entry = labels[latent]
    with grid[position % 2].container(border=True):
        st.markdown(f"**{display_name(latent, labels)}**")
        st.write(entry["description"])
        best = top_associations(table, latent, 0.05, 5)
        if len(best):
            st.dataframe(best[["phenotype", "rho", "q", "n"]], hide_index=True, width="stretch",
                         column_config={"rho": st.column_config.NumberColumn(format="%+.2f"),
                                        "q": st.column_config.NumberColumn(format="%.1e")})
        if driven is not None:
            features = driven[driven["latent"] == latent].head(5)
            st.caption("Drives: " + ", ".join(f"{f} ({s:.0%})" for f, s in zip(features["feature"], features["share"])))
        histogram = go.Figure(go.Histogram(x=result.latents[latent], nbinsx=40))
        histogram.update_layout(height=160, margin={"l": 0, "r": 0, "t": 0, "b": 0}, showlegend=False)
        st.plotly_chart(histogram, config=CHART_CONFIG, width="stretch", key=f"latents_hist_{latent}")
        with st.form(key=f"latents_label_{latent}"):
            new_label = st.text_input("Label", value=entry["label"], max_chars=80)
            description = st.text_area("Description", value=entry["description"], height=90,
                                       help="Generated from the associations and driven features; edit freely, "
                                            "or empty it to have it generated again.")
            notes = st.text_area("Notes", value=entry["notes"], height=68)
            if st.form_submit_button("Save"):
                try:
                    update_label(run_dir, latent, label=new_label, notes=notes, description=description)
                    st.toast(f"Saved the label of {latent}")
                    st.rerun()
                except UserInputError as exc:
                    st.error(str(exc))

# --- latent-latent correlations --------------------------------------------------------------
st.subheader("Latent-latent correlations (Spearman)")
matrix_figure = _matrix_figure(analysis.latent_correlations(result.latents), labels)
st.plotly_chart(matrix_figure, config=CHART_CONFIG, width="stretch", key="latents_matrix")
_downloads(matrix_figure, f"{run_id}_latent_correlations", "dl-matrix")

# --- downloads -------------------------------------------------------------------------------
st.subheader("Downloads")
labelled = table.assign(latent_label=table["latent"].map(lambda n: labels[n]["label"]))
download = st.columns(2)
download[0].download_button("Latents (CSV)", result.latents.to_csv().encode(), f"{run_id}_latents.csv", "text/csv")
download[1].download_button("Associations (CSV)", labelled.to_csv(index=False, float_format="%.6g").encode(),
                            f"{run_id}_associations.csv", "text/csv")
