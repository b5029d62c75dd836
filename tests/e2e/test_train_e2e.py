"""The Train page in a real browser: start a short real run, watch it progress live and finish."""

import re

import pytest

from mmcrl_core import dataset_store
from mmcrl_core.run_store import SUCCEEDED, list_runs
from mmcrl_core.workspace import WorkspacePaths

pytestmark = pytest.mark.e2e

DATASET_TITLE = "Linnerud (scikit-learn)"


def test_start_a_short_run_and_watch_it_finish(app_server, page, app_ready):
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    workspace = WorkspacePaths(app_server.home).ensure()
    dataset_store.save_example("linnerud", workspace)  # 20 subjects: a real run takes seconds

    page.goto(f"{app_server.url}/train")
    app_ready(page)
    main = page.locator('[data-testid="stMain"]')
    if not main.get_by_text("20 subjects").first.is_visible():
        main.locator('[data-testid="stSelectbox"]').filter(has_text="Dataset").first.click()
        page.get_by_role("option", name=DATASET_TITLE).click()
        app_ready(page)
    main.get_by_text("20 subjects").first.wait_for(timeout=30_000)

    epochs = main.get_by_label("epochs", exact=True)
    epochs.fill("3")
    epochs.press("Enter")
    app_ready(page)
    main.get_by_role("button", name="Start training").click()

    # live progress appears while it runs, then the final state, without reloading the page
    main.locator('[data-testid="stProgress"]').first.wait_for(timeout=60_000)
    main.get_by_text(re.compile(r"succeeded, epoch 3/3")).first.wait_for(timeout=240_000)
    assert main.locator('[data-testid="stPlotlyChart"]').count() >= 1
    assert page.locator('[data-testid="stException"]').count() == 0
    assert not errors, errors
    runs = list_runs(workspace)
    assert [r.status for r in runs] == [SUCCEEDED]
    assert (workspace.models_dir / runs[0].id / "manifest.json").is_file()
