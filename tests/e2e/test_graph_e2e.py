"""The causal graph page in a real browser: the graph canvas is drawn offline with hostile labels
inert, a filter changes the drawn graph, and the GraphML download reads back with networkx."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import networkx as nx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the run folder fixture
from graph_run_fixture import HOSTILE, seed_group  # noqa: E402

pytestmark = pytest.mark.e2e

CANVAS_PIXELS = """() => {
    const canvas = document.querySelector('#mynetwork canvas');
    if (!canvas || !canvas.width) return 0;
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    let painted = 0;
    for (let i = 3; i < data.length; i += 4) if (data[i] > 0) painted++;
    return painted;
}"""


def graph_frame(page, timeout: float = 30.0):
    """The iframe document holding the vis-network graph, once it has drawn."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for frame in page.frames:
            try:
                if frame.evaluate("() => document.querySelector('#mynetwork')?.dataset.graphReady === '1'"):
                    return frame
            except Exception:  # a frame being replaced after a rerun
                continue
        time.sleep(0.3)
    raise AssertionError("the graph never finished drawing")


def drawn_edges(page, expected: int, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    count = -1
    while time.monotonic() < deadline:
        try:
            count = graph_frame(page).evaluate("() => window.mmcrlNetwork.body.data.edges.length")
        except Exception:
            count = -1
        if count == expected:
            return count
        time.sleep(0.3)
    return count


def test_graph_page_draws_filters_and_downloads(app_server, page, app_ready, tmp_path):
    seed_group(app_server.home / "models", seeds=3, drop_in_last=(("sleep:2", "retina:2"),))
    errors: list[str] = []
    dialogs: list[str] = []
    foreign: list[str] = []
    app_host = urlparse(app_server.url).netloc
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on("request", lambda request: foreign.append(request.url)
            if urlparse(request.url).scheme in ("http", "https") and urlparse(request.url).netloc != app_host
            else None)

    page.goto(f"{app_server.url}/graph")
    app_ready(page)
    page.get_by_text("3 edges shown").wait_for(timeout=30_000)
    frame = graph_frame(page)
    assert frame.evaluate(CANVAS_PIXELS) > 500, "the graph canvas is blank"
    assert drawn_edges(page, 3) == 3
    # the hostile label is data, not markup: no script element came from it, no dialog opened
    assert frame.evaluate("() => document.querySelectorAll('script').length") == 3
    assert "alert(1)" not in frame.evaluate("() => document.body.innerText")
    # ... and the canvas draws it exactly as the user typed it
    label = frame.evaluate("() => window.mmcrlNetwork.body.data.nodes.get('sleep:1').label")
    assert label == f"{HOSTILE}\n(sleep:1)"

    page.get_by_text("Cross-modal edges only").click()
    app_ready(page)
    page.get_by_text("2 edges shown").wait_for(timeout=30_000)
    assert drawn_edges(page, 2) == 2

    with page.expect_download(timeout=30_000) as download_info:
        page.get_by_role("button", name="GraphML").click()
    target = tmp_path / "downloaded.graphml"
    download_info.value.save_as(target)
    graph = nx.read_graphml(target)
    assert graph.graph["run_id"] == "run-s0"
    assert graph.number_of_edges() == 2 and all(a["cross_modal"] for *_, a in graph.edges(data=True))
    assert graph.nodes["sleep:1"]["label"].startswith("<script>alert(1)</script>")

    assert page.locator('[data-testid="stException"]').count() == 0
    assert not dialogs, dialogs
    assert not foreign, foreign
    assert not errors, errors
