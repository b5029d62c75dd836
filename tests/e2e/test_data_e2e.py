"""The Data page in a real browser: upload two tables, see the summary, save the dataset."""

import numpy as np
import pytest

pytestmark = pytest.mark.e2e


def write_csv(path, columns, start=0, seed=0, n=30):
    rng = np.random.default_rng(seed)
    lines = ["subject_id," + ",".join(columns)]
    for i in range(start, start + n):
        lines.append(f"S{i:03d}," + ",".join(f"{v:.3f}" for v in rng.normal(size=len(columns))))
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_upload_two_tables_see_summary_and_save(app_server, page, app_ready, tmp_path):
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    files = [write_csv(tmp_path / "blood.csv", ["hdl", "ldl", "tg"]),
             write_csv(tmp_path / "sleep.csv", ["ahi", "tst"], start=5, seed=1)]
    # through the app's navigation, so the sidebar (which owns the active dataset) runs too
    page.goto(app_server.url)
    app_ready(page)
    page.get_by_role("link", name="Data").first.click()
    page.get_by_role("tab", name="Upload tables").wait_for(timeout=30_000)
    app_ready(page)
    page.get_by_role("tab", name="Upload tables").click()
    # the multi-file uploader (the wide-table one takes a single file)
    page.locator('[data-testid="stFileUploader"] input[type="file"][multiple]').set_input_files(files)
    page.get_by_text("Per-modality summary").wait_for(timeout=60_000)
    app_ready(page)
    assert page.get_by_text("35 subjects").first.is_visible()
    assert page.get_by_text("No problem found.").first.is_visible()
    page.get_by_role("button", name="Save dataset").click()
    page.get_by_text("it is now the active dataset").wait_for(timeout=30_000)
    app_ready(page)
    sidebar = page.locator('[data-testid="stSidebar"]')
    active = sidebar.locator('[data-testid="stSelectbox"]').first
    assert "blood + sleep" in (active.inner_text() + str(active.locator("input").first.input_value()))
    assert page.locator('[data-testid="stException"]').count() == 0
    assert not errors, errors
    # stored in the app's workspace
    assert [p.name for p in (app_server.home / "data").iterdir() if p.name.startswith("ds-")]
