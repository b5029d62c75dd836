"""Landing page: what mmcrl does, the workflow, and what the workspace holds."""

import streamlit as st

from mmcrl_core.workspace_summary import summarise

st.title("mmcrl: causal representation learning from multimodal biomedical observations")
st.markdown(
    "Several kinds of measurements on the same people (sleep recordings, blood tests, body "
    "measures, omics...) are each driven by a few hidden physiological factors. mmcrl learns those "
    "factors per modality, with identifiability guarantees, and the causal graph among them, "
    "in particular the edges that cross modalities (Sun et al., ICLR 2025)."
)

st.subheader("Workflow")
steps = st.columns(4)
steps[0].page_link("pages/data.py", label="1. Data", icon=":material/table:")
steps[0].caption("Upload one table per modality (or one wide table), validate, save.")
steps[1].page_link("pages/train.py", label="2. Train", icon=":material/model_training:")
steps[1].caption("Choose latents per modality and start runs; watch them live.")
steps[2].page_link("pages/latents.py", label="3. Latents", icon=":material/scatter_plot:")
steps[2].caption("See what each latent is, in terms of the phenotypes you measured.")
steps[3].page_link("pages/graph.py", label="4. Causal graph", icon=":material/hub:")
steps[3].caption("Explore the cross-modal graph, its support across seeds, and export it.")

st.subheader("Your workspace")
summary = summarise()
by_status = summary.runs_by_status()
metrics = st.columns(3)
metrics[0].metric("Datasets", len(summary.datasets))
metrics[1].metric("Runs", len(summary.runs))
metrics[2].metric("Runs finished", by_status.get("succeeded", 0))
st.caption(f"Stored in `{summary.root}` (set MMCRL_HOME to move it).")
if summary.datasets:
    st.dataframe(
        [{"name": d["name"], "subjects": d["n_subjects"],
          "created (UTC)": str(d["created_at"] or "").replace("T", " ")[:16]} for d in summary.datasets],
        hide_index=True, width="stretch",
    )
else:
    st.info("No dataset yet: open **Data** and load an example in one click, or upload your tables.")

st.subheader("Trust the method first")
st.page_link("pages/benchmark.py", label="Benchmark on simulated data with known truth", icon=":material/speed:")
