"""Every relative link and image in README.md, WORKSPACE.md, docs/*.md and the apps' READMEs names
a file that exists, and every `#anchor` a heading of the page it points at (GitHub's anchors:
lowercase, punctuation dropped, spaces to hyphens). The README's long sections moved to docs/, so
a moved or renamed page, or an image path left as it was from the repository root, fails here
rather than on GitHub.
"""

import pathlib
import re

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = [
    REPO_ROOT / "README.md",
    REPO_ROOT / "WORKSPACE.md",
    *sorted((REPO_ROOT / "docs").glob("*.md")),
    *sorted((REPO_ROOT / "apps").glob("*/README.md")),
]

# [text](target) and ![alt](target); the target ends at whitespace or the closing parenthesis.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def anchor(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: pathlib.Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {anchor(line.lstrip("#")) for line in text.splitlines() if re.match(r"#{1,6} ", line)}


def links(page: pathlib.Path) -> list[str]:
    return LINK.findall(FENCE.sub("", page.read_text()))


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO_ROOT)))
def test_every_relative_link_resolves(page):
    broken = []
    for target in links(page):
        if re.match(r"[a-z]+:", target):  # https:, mailto: ... not checked here.
            continue
        path, _, fragment = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
            broken.append(f"{target}: no heading #{fragment}")
    assert not broken, broken


def test_the_anchor_rule_matches_githubs():
    assert anchor("Bring your own loop") == "bring-your-own-loop"
    assert anchor("GPUs and clusters") == "gpus-and-clusters"
    assert anchor("`--flag`: what it does, (really)") == "--flag-what-it-does-really"
