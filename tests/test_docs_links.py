"""Every relative link in the README and the docs points at a file that exists, and every #anchor
into a Markdown file at one of its headings (GitHub's rule for heading anchors)."""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted({ROOT / "README.md", *ROOT.glob("docs/*.md"), ROOT / "benchmarks" / "README.md",
                ROOT / "notebooks" / "README.md", ROOT / "data" / "README.md", ROOT / "data" / "golden" / "FORMAT.md"})
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation other than - and _ dropped, spaces to -."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.DOTALL)
    return {anchor(line.lstrip("#")) for line in text.splitlines() if re.match(r"#{1,6} ", line)}


def links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.DOTALL)
    return [target for target in LINK.findall(text) if not re.match(r"[a-z]+:", target)]


@pytest.mark.parametrize("page", [p for p in PAGES if p.exists()], ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = []
    for target in links(page):
        path, _, fragment = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(target)
        elif fragment and file.suffix == ".md" and fragment not in anchors(file):
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: broken links {broken}"


def test_the_anchor_rule():
    assert anchor("4a. Reference variant (dsnot_ref's default)") == "4a-reference-variant-dsnot_refs-default"
    assert anchor("Layerwise sparsity (OWL), measured") == "layerwise-sparsity-owl-measured"


def test_the_readme_links_every_docs_page_and_top_level_folder():
    """The README's "where everything lives" stays true as pages and folders are added."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = {(ROOT / t.partition("#")[0]).resolve() for t in links(ROOT / "README.md") if t.partition("#")[0]}
    unlinked = [p.name for p in sorted(ROOT.glob("docs/*.md")) if p.resolve() not in targets]
    assert unlinked == [], f"docs pages the README does not link: {unlinked}"
    folders = [name for name in tracked_folders() if not name.startswith(".")]
    assert [f for f in folders if f"`{f}/`" not in readme] == [], "top-level folders the README does not describe"


def tracked_folders() -> set[str]:
    """Top-level folders holding files git tracks (none outside a git checkout)."""
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.splitlines()
    return {line.split("/")[0] for line in listed if "/" in line}


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## The two commands.*?```bash\n(.*?)```", readme, flags=re.DOTALL).group(1)
    test_command = next(line.split("#")[0].strip() for line in block.splitlines() if "test" in line)
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
          if line.strip() and not line.startswith("#")]
    assert ci[-1] == test_command == "make test"


def test_every_benchmark_script_is_described():
    described = (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8")
    scripts = sorted(p.name for p in (ROOT / "benchmarks").glob("*.py"))
    assert scripts and [s for s in scripts if f"`{s}`" not in described] == []
