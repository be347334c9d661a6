"""Every lesson can be reached from the lessons: 00's table, and each "Next" link.

A learner follows 00's table of lessons and the "**Next:**" line at the end of each
lesson. The table lists every notebook, each link's label names the number of
the notebook it opens, and following "Next" from 00 visits every lesson.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
LESSONS = sorted(path.name for path in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
LINK = re.compile(r"\[(\d\d) · [^\]]*\]\((\d\d_[a-z_]+\.ipynb)\)")


def markdown(name: str) -> str:
    nb = nbformat.read(NOTEBOOKS / "solutions" / name, as_version=4)
    return "\n".join(cell.source for cell in nb.cells if cell.cell_type == "markdown")


def next_link(name: str) -> str:
    """The notebook that the lesson's "Next" line opens first."""
    (line,) = markdown(name).split("**Next:**")[1:]
    match = LINK.search(line) or re.search(r"\]\((\d\d_[a-z_]+\.ipynb)\)", line)
    assert match is not None, f"{name}: its Next line opens no lesson"
    return match.group(match.lastindex or 1)


def test_the_table_in_00_lists_every_lesson() -> None:
    rows = re.findall(r"^\| (\d\d) \| \[[^\]]+\]\(([^)]+)\)", markdown(LESSONS[0]), re.M)
    assert [target for _, target in rows] == LESSONS
    assert all(target.startswith(number) for number, target in rows)


@pytest.mark.parametrize("name", LESSONS)
def test_every_link_label_names_the_number_of_the_lesson_it_opens(name: str) -> None:
    for number, target in LINK.findall(markdown(name)):
        assert target.startswith(number), f"{name}: [{number} · ...]({target})"
        assert (NOTEBOOKS / target).exists(), f"{name}: {target} does not exist"


def test_following_next_from_00_visits_every_lesson_in_order() -> None:
    route = [LESSONS[0]]
    while (target := next_link(route[-1])) != LESSONS[0]:
        assert target not in route, f"a loop: {[*route, target]}"
        route.append(target)
    assert route == LESSONS


DOCS = sorted(path.name for path in (ROOT / "docs").glob("*.md"))


@pytest.mark.parametrize("name", DOCS)
def test_every_doc_is_linked_from_the_readme_or_named_in_a_lesson(name: str) -> None:
    """A lesson names a doc by its path (a relative link differs between the two folders)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    lessons = [markdown(lesson) for lesson in LESSONS]
    assert f"](docs/{name})" in readme or any(f"docs/{name}" in text for text in lessons), name


@pytest.mark.parametrize(
    ("lesson", "doc"), [("02_wire", "wiretap"), ("12_original_design", "original-design")]
)
def test_the_lesson_a_doc_serves_names_it(lesson: str, doc: str) -> None:
    for folder in (NOTEBOOKS, NOTEBOOKS / "solutions"):
        nb = nbformat.read(folder / f"{lesson}.ipynb", as_version=4)
        text = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "markdown")
        assert f"`docs/{doc}.md`" in text, folder / lesson
