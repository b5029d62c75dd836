"""In a real browser: start a tiny benchmark on the benchmark page and see its results table."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _cells(grid) -> list[str]:
    """Texts of a Streamlit dataframe's cells (its accessible grid mirrors the canvas)."""
    return [t.strip() for t in grid.locator('[role="gridcell"]').all_text_contents()]


def test_tiny_benchmark_shows_its_results_table(app_server, page, app_ready):
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{app_server.url}/benchmark")
    app_ready(page)
    page.get_by_text("Benchmark on simulated data").wait_for(timeout=30_000)
    page.get_by_text("No benchmark yet").wait_for(timeout=30_000)

    # keep one quick method so the run takes seconds: remove the others from the multiselect
    methods = page.locator('[data-testid="stMultiSelect"]')
    for method in ("mmcrl", "ica", "ae"):
        methods.get_by_role("button", name=f"Remove {method}").click()
        app_ready(page)
    assert methods.get_by_text("pca").is_visible()

    page.get_by_role("button", name="Run benchmark").click()
    app_ready(page)
    # the page polls the job and redraws itself when it finishes
    page.get_by_role("heading", name="Scores").wait_for(timeout=180_000)
    app_ready(page)
    table = page.locator('[data-testid="stDataFrame"]').filter(has_text="MCC (Pearson)")
    table.wait_for(timeout=30_000)
    cells = _cells(table)
    assert "tiny" in cells and "pca" in cells
    mcc = float(cells[cells.index("pca") + 2])  # method, seeds, MCC (Pearson)
    assert 0 < mcc <= 1
    # the truth-vs-estimate figures are drawn (two graphs and the scatter plots)
    page.get_by_role("heading", name="Truth vs estimate").wait_for(timeout=30_000)
    charts = page.locator('[data-testid="stPlotlyChart"]')
    charts.nth(2).wait_for(timeout=30_000)
    assert charts.count() == 3
    assert page.locator('[data-testid="stException"]').count() == 0
    assert not errors, errors
    # the benchmark is saved in the workspace
    assert list((app_server.home / "models" / "benchmarks").glob("bench-*/results.csv"))
