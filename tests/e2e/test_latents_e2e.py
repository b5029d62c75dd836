"""In a real browser: clicking a cell of the latents x phenotypes heatmap shows its scatter plot."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/: the shared run fixture
from latents_run_fixture import make_latents_run  # noqa: E402

pytestmark = pytest.mark.e2e

HEATMAP = '[class*="st-key-latents_heatmap"] .js-plotly-plot'
SCATTER_CAPTION = '[class*="st-key-latents_scatter"] [data-testid="stCaptionContainer"]'


def test_clicking_a_heatmap_cell_shows_its_scatter(app_server, page, app_ready):
    make_latents_run(app_server.home / "models", run_id="e2e-latents")
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{app_server.url}/latents")
    app_ready(page)
    page.locator(HEATMAP).first.wait_for(timeout=60_000)
    page.locator(f"{HEATMAP} .scatterlayer path.point").first.wait_for(timeout=30_000)
    before = page.locator(SCATTER_CAPTION).first.inner_text()

    # the cells' (latent, phenotype) in drawing order, read from the chart itself
    cells = page.locator(HEATMAP).first.evaluate("plot => plot.data[0].customdata.map(c => [c[0], c[1]])")
    target = next(i for i, (latent, phenotype) in enumerate(cells) if f"{latent} vs {phenotype} " not in before)
    latent, phenotype = cells[target]
    cell = page.locator(f"{HEATMAP} .scatterlayer path.point").nth(target)
    cell.scroll_into_view_if_needed()
    box = cell.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)

    page.wait_for_function(
        """([selector, wanted]) => {
            const caption = document.querySelector(selector);
            return caption && caption.innerText.includes(wanted);
        }""",
        arg=[SCATTER_CAPTION, f"{latent} vs {phenotype}"],
        timeout=30_000,
    )
    app_ready(page)
    # the scatter of that pair is drawn, with its statistics in the title
    scatter = page.locator('[class*="st-key-latents_scatter"] .js-plotly-plot').first
    title = scatter.evaluate("plot => plot.layout.title.text")
    assert "Spearman rho" in title and "n " in title
    assert page.locator('[data-testid="stException"]').count() == 0
    assert not errors, errors
