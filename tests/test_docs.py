"""The docs hold together: every relative link in a page reaches a file (and its heading, for an
``#anchor``), every ``docs/...md`` path named in code, tests and examples exists, and the quick
start's commands and Python session are ones that run."""

import doctest
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(
    [
        ROOT / "README.md",
        ROOT / "CHANGELOG.md",
        *ROOT.glob("docs/**/*.md"),
        *ROOT.glob("adapters/*/README.md"),
    ]
)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
NAMED = re.compile(r"\bdocs/[\w/-]+\.md\b")


def anchors(page: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to dashes, repeats numbered."""
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#{1,6} (.+)$", FENCE.sub("", page.read_text()), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in LINK.findall(FENCE.sub("", page.read_text())):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists() or (
            anchor and linked.suffix == ".md" and anchor not in anchors(linked)
        ):
            broken.append(target)
    return broken


def test_anchor_rule_matches_github():
    page = ROOT / "docs" / "guides" / "performance.md"
    assert "cohorts-against-reference-mode-benchcohortspy" in anchors(page)


def test_every_relative_link_reaches_its_page_and_heading():
    broken = {str(page.relative_to(ROOT)): links for page in PAGES if (links := broken_links(page))}
    assert broken == {}


def test_a_broken_link_is_found(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n[ok](#title) [gone](missing.md) [no heading](#nowhere)\n")
    assert broken_links(page) == ["missing.md", "#nowhere"]


def test_every_docs_path_named_in_code_exists():
    folders = ["rmr1_plugins", "adapters", "tests", "examples", "bench"]
    files = [ROOT / "README.md", ROOT / "noxfile.py"]
    suffixes = {".py", ".sh", ".yaml", ".md", ".toml"}
    files += [p for f in folders for p in (ROOT / f).rglob("*") if p.suffix in suffixes]
    missing = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in files
        for name in NAMED.findall(path.read_text(encoding="utf-8", errors="replace"))
        if not (ROOT / name).exists()
    }
    assert missing == set()


def bash_commands(page: Path) -> list[str]:
    """The commands of a page's ``bash`` blocks: continuations joined, comments dropped."""
    found = []
    for block in re.findall(r"^```bash\n(.*?)^```", page.read_text(), re.M | re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #", 1)[0].strip()
            if line and not line.startswith("#"):
                found.append(" ".join(line.split()))
    return found


def test_quick_start_commands_are_the_readmes_which_its_tests_run():
    quick = bash_commands(ROOT / "docs" / "quickstart.md")
    assert quick and set(quick) <= set(bash_commands(ROOT / "README.md"))


def test_quick_start_python_session_runs():
    page = ROOT / "docs" / "quickstart.md"
    result = doctest.testfile(str(page), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 5 and result.failed == 0
