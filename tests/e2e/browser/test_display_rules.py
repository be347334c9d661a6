"""The display rules' one implementation, chatview.js, alone in chromium, on the table of cases."""

from __future__ import annotations

import pytest
from playwright.sync_api import BrowserContext

from tests.unit.test_display import CASES, RUN_CASES
from wslab import frontend

pytestmark = pytest.mark.browser


def test_the_one_implementation_answers_the_table_in_chromium(context: BrowserContext) -> None:
    """chatview.js alone in a blank page, configured with page_config(), on :data:`CASES`."""
    config = frontend.page_config()
    page = context.new_page()
    page.set_content("<!doctype html><body></body>")
    page.add_script_tag(content=(frontend.STATIC_DIR / "chatview.js").read_text())
    answers = page.evaluate(
        f"""([display, meanings, cases]) =>
            ({RUN_CASES})([wslabView.rules(display, meanings), cases])""",
        [config["display"], config["policy"]["closeMeanings"], CASES],  # type: ignore[index]
    )
    assert answers == [case["out"] for case in CASES]
