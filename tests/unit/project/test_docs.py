"""The docs cannot go stale unnoticed: every relative link and anchor resolves, every command output
shown is one that scripts/docs_examples.py regenerates, and no page narrates development history."""

import re
from pathlib import Path

import pytest

from scripts import docs_examples

PROJECT = Path(__file__).resolve().parents[3]
PAGES = [*docs_examples.documentation_pages(PROJECT), PROJECT / "benchmarks" / "README.md"]
PAGES += [PROJECT / "CHANGELOG.md"]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
HEADING = re.compile(r"^#{1,6} +(.+?) *#*$", re.MULTILINE)


def page_id(page: Path) -> str:
    return page.relative_to(PROJECT).as_posix()


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens, repeats numbered."""
    seen: dict[str, int] = {}
    result = set()
    for heading in HEADING.findall(FENCE.sub("", page.read_text())):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        result.add(slug if count == 0 else f"{slug}-{count}")
    return result


def relative_links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text())
    return [link for link in LINK.findall(text) if not re.match(r"[a-z]+:", link)]


def test_the_pages_exist():
    assert all(page.is_file() for page in PAGES)
    assert len(PAGES) > 10  # docs/ has its pages


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_relative_link_resolves(page):
    broken = []
    for link in relative_links(page):
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            broken.append(f"{link}: no {target.relative_to(PROJECT)}")
        elif anchor and target.suffix == ".md" and anchor not in anchors(target):
            broken.append(f"{link}: no heading #{anchor}")
    assert not broken, broken


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_shown_output_is_regenerated_by_the_script(page):
    text = page.read_text()
    assert (
        text.count("<!-- output:")
        == text.count("<!-- /output -->")
        == len(docs_examples.shown_commands(text))
    )
    assert set(docs_examples.shown_commands(text)) <= docs_examples.COMMANDS.keys()


NARRATION = re.compile(r"\b(step|stop|issue|round) [0-9]+\b|\bthis stop\b|\bsession", re.IGNORECASE)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_no_page_narrates_development_history(page):
    text = FENCE.sub("", page.read_text())
    assert not [match.group(0) for match in NARRATION.finditer(text)]


def test_the_script_rewrites_a_block_and_keeps_the_rest():
    page = "intro\n<!-- output: medcls --version -->\nold\n<!-- /output -->\nend\n"
    rewritten = docs_examples.rewrite(page, {"medcls --version": "medcls 9.9.9\n"})
    assert rewritten == (
        "intro\n<!-- output: medcls --version -->\n```text\n$ medcls --version\nmedcls 9.9.9\n```\n"
        "<!-- /output -->\nend\n"
    )
