"""mmcrl Streamlit entry point: navigation over pages/ and the sidebar. No science here."""

import streamlit as st

from mmcrl_core.workspace_summary import summarise

# an emoji favicon is an inline SVG; a :material/...: one is fetched from fonts.gstatic.com, which an
# offline or locked-down machine cannot reach
st.set_page_config(page_title="mmcrl", page_icon="🧬", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/data.py", title="Data", icon=":material/table:"),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/runs.py", title="Runs", icon=":material/history:"),
    st.Page("pages/latents.py", title="Latents", icon=":material/scatter_plot:"),
    st.Page("pages/graph.py", title="Causal graph", icon=":material/hub:"),
    st.Page("pages/benchmark.py", title="Benchmark", icon=":material/speed:"),
]
navigation = st.navigation(PAGES)


def _sidebar() -> None:
    summary = summarise()
    with st.sidebar:
        st.caption(f"Workspace: `{summary.root}`")
        if summary.datasets:
            names = {d["id"]: d["name"] for d in summary.datasets}
            ids = list(names)
            current = st.session_state.get("dataset_id")
            st.selectbox(
                "Active dataset",
                ids,
                index=ids.index(current) if current in ids else 0,
                format_func=lambda i: names[i],
                key="dataset_id",
            )
        succeeded = [r for r in summary.runs if r["status"] == "succeeded"]
        if succeeded:
            labels = {r["id"]: r["name"] or r["id"] for r in succeeded}
            ids = list(labels)
            current = st.session_state.get("run_id")
            st.selectbox(
                "Active run",
                ids,
                index=ids.index(current) if current in ids else 0,
                format_func=lambda i: labels[i],
                key="run_id",
            )


_sidebar()
navigation.run()
