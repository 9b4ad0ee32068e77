"""Wikipedia XML export -> plain prose: the page walk and the markup stripping for the demo corpus.

mwparserfromhell's strip_code() does most of the work; what it keeps that is not prose
(citations, tables, media and category links) is removed here first.
"""

from __future__ import annotations

import io
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator

# Wiki markup that strip_code() would keep as text but that is not prose: citations (their text
# lands mid-sentence), tables (cell values), galleries, image maps, timelines, LaTeX.
DROP_TAGS = frozenset({"ref", "references", "table", "gallery", "imagemap", "timeline", "math"})
# Citations removed before parsing too: an unbalanced '' inside one makes mwparserfromhell give up
# on the tag and keep "<ref>...</ref>" as text (11 of the 106 articles). Refs never nest.
REF = re.compile(r"<ref\b[^>]*/>|<ref\b[^>]*>.*?</ref\s*>", re.IGNORECASE | re.DOTALL)
# Links that render as media or page metadata, not as words in the sentence.
DROP_LINK = re.compile(r"^\s*:?\s*(file|image|media|category)\s*:", re.IGNORECASE)
# Lines strip_code() leaves behind from malformed tables and unparsed media/category links.
RESIDUE_LINE = re.compile(r"^(\{\||\|\}|\||!|(\[\[\s*)?:?(file|image|media|category)\s*:|thumb\|)", re.IGNORECASE)


def iter_articles(xml: bytes) -> Iterator[tuple[str, str, str]]:
    """(page id, title, wikitext) of each non-redirect main-namespace page, in file order."""
    ns = ""  # the export schema's XML namespace, read from the root tag
    for event, elem in ET.iterparse(io.BytesIO(xml), events=("start", "end")):
        if event == "start":
            if not ns and elem.tag.startswith("{"):
                ns = elem.tag[: elem.tag.index("}") + 1]
            continue
        if elem.tag != f"{ns}page":
            continue
        if elem.findtext(f"{ns}ns") == "0" and elem.find(f"{ns}redirect") is None:
            text = elem.findtext(f"{ns}revision/{ns}text") or ""
            yield elem.findtext(f"{ns}id") or "", elem.findtext(f"{ns}title") or "", text
        elem.clear()  # keeps memory flat on a real dump


def _prune(code) -> None:
    """Remove DROP_TAGS and media/category links from a parsed page, in place, in one pass.

    Rebuilding each node list is linear; `Wikicode.remove` searches the whole tree per call.
    """
    from mwparserfromhell.nodes import ExternalLink, Heading, Tag, Wikilink

    kept = []
    for node in code.nodes:
        if isinstance(node, Tag) and str(node.tag).strip().lower() in DROP_TAGS:
            continue
        if isinstance(node, Wikilink) and DROP_LINK.match(str(node.title)):
            continue
        if isinstance(node, Tag):
            children = [node.contents]
        elif isinstance(node, Wikilink):
            children = [node.text]
        elif isinstance(node, (Heading, ExternalLink)):
            children = [node.title]
        else:
            children = []  # templates and arguments: strip_code() drops them whole
        for child in children:
            if child is not None:
                _prune(child)
        kept.append(node)
    code.nodes = kept


def strip_markup(wikitext: str) -> str:
    """Plain text of a wiki page: paragraphs joined by a blank line, no markup residue."""
    import mwparserfromhell

    code = mwparserfromhell.parse(REF.sub("", wikitext))
    _prune(code)
    text = code.strip_code(normalize=True, collapse=True)
    paragraphs: list[str] = []
    current: list[str] = []
    for raw in text.split("\n"):
        line = re.sub(r"[ \t]{2,}", " ", raw).strip()  # removed links leave double spaces
        if RESIDUE_LINE.match(line):
            continue  # skipping keeps the paragraph open: residue is not a paragraph break
        if line:
            current.append(line)
        elif current:
            paragraphs.append("\n".join(current))
            current = []
    if current:
        paragraphs.append("\n".join(current))
    return "\n\n".join(paragraphs)


def corpus_lines(xml: bytes) -> list[str]:
    """One sorted-key JSON line per article: {"id", "text", "title"}."""
    return [json.dumps({"id": pid, "title": title, "text": strip_markup(wikitext)}, ensure_ascii=False, sort_keys=True) for pid, title, wikitext in iter_articles(xml)]
