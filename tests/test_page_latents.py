"""The latent browser renders a finished run: heatmap, scatter, cards, labels, downloads."""

from __future__ import annotations

import json
from pathlib import Path

from latents_run_fixture import make_latents_run
from streamlit.testing.v1 import AppTest

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "latents.py")


def _app() -> AppTest:
    return AppTest.from_file(PAGE, default_timeout=60)


def test_page_without_runs_says_what_to_do(workspace):
    app = _app().run()
    assert not app.exception
    assert "No finished run yet" in app.info[0].value


def test_page_renders_a_finished_run_and_saves_a_label(workspace):
    run_dir = make_latents_run(workspace.models_dir)
    app = _app().run()
    assert not app.exception, app.exception
    assert [m.value for m in app.metric][:2] == ["300", "3"]
    assert app.selectbox(key="latents_scatter_latent").value in {"sleep:1", "sleep:2", "retina:1"}
    descriptions = " ".join(m.value for m in app.markdown)
    assert "sleep:1 rises with odi" in descriptions and "falls with spo2_min" in descriptions

    # the fallback boxes pick any pair; the scatter's statistics follow
    app.selectbox(key="latents_scatter_latent").set_value("sleep:1")
    app.selectbox(key="latents_scatter_phenotype").set_value("spo2_min")
    app.run()
    assert not app.exception
    assert any("sleep:1 vs spo2_min" in c.value for c in app.caption)

    # rename a latent: saved in labels.json with the shape the graph and exports read
    form_inputs = [t for t in app.text_input if t.label == "Label"]
    form_inputs[0].set_value("Desaturation")
    app.button[[b.label for b in app.button].index("Save")].click()
    app.run()
    assert not app.exception
    labels = json.loads((run_dir / "labels.json").read_text())
    first = next(iter(labels))
    assert labels[first]["label"] == "Desaturation" and set(labels[first]) == {"label", "description", "notes"}
    assert any("Desaturation" in m.value for m in app.markdown)


def test_adjusting_for_a_column_reruns_the_analysis(workspace):
    make_latents_run(workspace.models_dir)
    app = _app().run()
    app.multiselect(key="latents_adjust").set_value(["cup_disc"])
    app.run()
    assert not app.exception
    assert any("adjusted for cup_disc" in c.value for c in app.caption)


def test_page_follows_the_sidebars_active_run(workspace):
    make_latents_run(workspace.models_dir, run_id="first")
    make_latents_run(workspace.models_dir, run_id="second", seed=3)
    app = _app()
    app.session_state["run_id"] = "second"
    app.run()
    assert not app.exception
    assert app.selectbox(key="latents_run").value == "second"
    app.selectbox(key="latents_run").set_value("first").run()
    assert app.selectbox(key="latents_run").value == "first"  # a pick on this page sticks
