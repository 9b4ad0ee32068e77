"""Bounds on the work one input can cause: no "word" and no document beyond a fixed length.

Tokenizer training time grows faster than linearly with the length of a word (each merge rescans
the word): a corpus holding one 5-6 MB run of letters hung training for over 14 minutes, while
the same characters in 100-character pieces train in seconds. And the Rust tokenizer keeps
about 100 bytes per character of a text it normalises and encodes, so one 51 MB single-line
document took 5.2 GB. So before cleaning, on the raw text:

- a run of non-space characters longer than `max_word_chars` is cut into pieces of that length,
  separated by spaces (WordPiece reads any word over 100 characters as one [UNK] anyway);
- a corpus document longer than `max_doc_chars` becomes several documents, cut at the last
  paragraph break, else line break, else space before the limit (else at the limit), the
  pieces after the first with ids `<doc_id>#1`, `#2`, ...

Memory then follows the chunk and document bounds, not the longest input. Both are counted in
clean_report.json (`bounds`) and printed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

BREAKS = ("\n\n", "\n", " ")  # where a long document is cut, best first
MIN_CUT_SHARE = 0.5  # a break is used only in the second half of the window: pieces stay large


@dataclass
class BoundCounts:
    """What the bounds changed: long words split, long documents split, pieces they became."""

    words_split: int = 0
    docs_split: int = 0
    doc_pieces: int = 0

    def as_dict(self) -> dict:
        return {"words_split": self.words_split, "docs_split": self.docs_split, "doc_pieces": self.doc_pieces}


class Bounds:
    def __init__(self, max_word_chars: int, max_doc_chars: int):
        self.max_word_chars, self.max_doc_chars = max_word_chars, max_doc_chars
        self.counts = BoundCounts()
        self._long_word = re.compile(rf"\S{{{max_word_chars + 1},}}")

    def words(self, text: str) -> str:
        """`text` with every run of non-space characters over max_word_chars cut into pieces."""
        if len(text) <= self.max_word_chars:
            return text
        return self._long_word.sub(self._cut_word, text)

    def _cut_word(self, match: re.Match) -> str:
        self.counts.words_split += 1
        word, n = match.group(), self.max_word_chars
        return " ".join(word[i : i + n] for i in range(0, len(word), n))

    def document(self, text: str) -> list[str]:
        """`text` as pieces of at most max_doc_chars characters (one piece when it is short)."""
        if len(text) <= self.max_doc_chars:
            return [text]
        pieces, start, n = [], 0, self.max_doc_chars
        while len(text) - start > n:
            end = _cut(text, start, start + n)
            pieces.append(text[start:end])
            start = end
        pieces.append(text[start:])
        self.counts.docs_split += 1
        self.counts.doc_pieces += len(pieces)
        return pieces

    def tables(self, tables: Iterable[pa.Table]) -> Iterator[pa.Table]:
        """Corpus tables (doc_id, title, text, ...) with long words cut and long documents split.

        A table whose every text is within max_word_chars passes unchanged (the common case)."""
        for table in tables:
            longest = pc.max(pc.utf8_length(table.column("text"))).as_py() or 0
            if longest <= self.max_word_chars:
                yield table
                continue
            yield self._bounded(table)

    def _bounded(self, table: pa.Table) -> pa.Table:
        columns = {name: table.column(name).to_pylist() for name in table.schema.names}
        out: dict[str, list] = {name: [] for name in columns}
        for i, text in enumerate(columns["text"]):
            for k, piece in enumerate(self.document(self.words(text or ""))):
                for name, values in columns.items():
                    out[name].append(values[i])
                out["text"][-1] = piece
                if k:
                    out["doc_id"][-1] = f"{columns['doc_id'][i]}#{k}"
        return pa.table(out, schema=table.schema)


def _cut(text: str, start: int, limit: int) -> int:
    """Where to end the piece that starts at `start` and may reach `limit`: just after the last
    break in the second half of the window, else at `limit`."""
    floor = start + int((limit - start) * MIN_CUT_SHARE)
    for brk in BREAKS:
        at = text.rfind(brk, floor, limit)
        if at >= 0:
            return at + len(brk)
    return limit
