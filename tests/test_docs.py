"""The repository's docs stand on their own and stay true to the parser: no reference outside the
repository, every relative link and every `docs/…#section` cited in the code resolves, and the command
reference names every command, option and filter word the grammar knows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pcapdump import grammar

pytestmark = pytest.mark.portable

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
CODE = [
    p
    for folder in ("python", "rust", "tests", "bench")
    for p in sorted((ROOT / folder).rglob("*"))
    if p.suffix in (".py", ".rs", ".pyi")
]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CITATION = re.compile(r"docs/([\w-]+\.md)(?:#([\w-]+))?")


def slug(heading: str) -> str:
    """The anchor a Markdown heading gets, as GitHub makes it."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found = set()
    in_code = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and (m := re.match(r"#{1,6} (.+)", line)):
            found.add(slug(m.group(1)))
    return found


def test_the_docs_exist():
    names = {p.name for p in DOCS.glob("*.md")}
    assert {"README.md", "commands.md", "python.md", "fwctl.md", "architecture.md", "testing.md"} <= names


@pytest.mark.parametrize(
    "path", [p for p in (*PAGES, *CODE) if p != Path(__file__)], ids=lambda p: str(p.relative_to(ROOT))
)
def test_nothing_points_outside_the_repository(path):
    text = path.read_text(errors="replace")
    assert "shared/" not in text and "SPEC §" not in text, path


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # an absolute URL
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        assert dest.exists(), f"{page.name}: {target}"
        assert ROOT in dest.parents or dest == ROOT, f"{page.name}: {target} leaves the repository"
        if anchor and dest.suffix == ".md":
            assert anchor in anchors(dest), f"{page.name}: {target}: no such section"


def test_every_section_the_code_cites_exists():
    cited = [
        (path, page, anchor)
        for path in CODE
        for page, anchor in CITATION.findall(path.read_text(errors="replace"))
    ]
    assert cited, "the code cites no docs section"
    for path, page, anchor in cited:
        assert (DOCS / page).exists(), f"{path.relative_to(ROOT)}: docs/{page}"
        if anchor:
            assert anchor in anchors(DOCS / page), f"{path.relative_to(ROOT)}: docs/{page}#{anchor}"


def test_the_command_reference_names_every_command_option_and_filter_word():
    reference = re.sub(r"```.*?```", "", (DOCS / "commands.md").read_text(), flags=re.S)
    named = set(re.findall(r"`([^`\n]+)`", reference))
    words = {w for span in named for w in span.split()}
    missing = [c for c in grammar.COMMANDS if c not in words]
    missing += [f"-{o}" for o in grammar.OPTIONS if f"-{o}" not in words]
    missing += [w for w in grammar.FILTER_WORDS if w not in words]
    assert missing == [], f"docs/commands.md does not name: {missing}"


def test_the_slug_of_a_heading():
    assert slug("The capture store") == "the-capture-store"
    assert slug("`read` and pipes") == "read-and-pipes"
    assert slug("Errors: one enum, one class per kind") == "errors-one-enum-one-class-per-kind"
