"""The display rules' one implementation, chatview.js, alone in chromium, on the table of cases."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from tests.unit.test_display import CASES, RUN_CASES
from wslab import frontend

from .conftest import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.browser


def test_the_one_implementation_answers_the_table_in_chromium() -> None:
    """chatview.js alone in a blank page, configured with page_config(), on :data:`CASES`."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing (apt-get install -y chromium)", pytrace=False)
    config = frontend.page_config()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page()
            page.set_content("<!doctype html><body></body>")
            page.add_script_tag(content=(frontend.STATIC_DIR / "chatview.js").read_text())
            answers = page.evaluate(
                f"""([display, meanings, cases]) =>
                    ({RUN_CASES})([wslabView.rules(display, meanings), cases])""",
                [config["display"], config["policy"]["closeMeanings"], CASES],  # type: ignore[index]
            )
        finally:
            browser.close()
    assert answers == [case["out"] for case in CASES]
