"""The landing page renders in a real browser with no exception."""

import pytest

pytestmark = pytest.mark.e2e


def test_landing_page_renders(app_server, page, app_ready):
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(app_server.url)
    app_ready(page)
    page.get_by_text("Workflow").wait_for(timeout=30_000)
    assert page.get_by_text("Your workspace").is_visible()
    assert page.locator('[data-testid="stException"]').count() == 0
    assert not errors, errors
    # the navigation lists every page of the workflow
    for label in ("Data", "Train", "Latents", "Causal graph"):
        assert page.get_by_role("link", name=label).first.is_visible()
