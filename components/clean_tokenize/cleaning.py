"""Cleaning rules for text tables, and the corpus cleaned as a stream of Parquet row batches.

Rules run in a fixed order and each reports how many rows it removed, so a surprising drop in
data is visible in the run's metrics rather than discovered in a worse model. Corpus documents
have more rules: the heuristic quality rules when switched on (quality.py), "contaminated":
sharing a word n-gram with a validation or test text (components/shared/decontamination.py), and
last "near_duplicate", MinHash LSH near-copies of an earlier document (near_dup.py). A labeled
text is never dropped for its length: it is kept whole here and its token ids are truncated
later (labeled.py); labeled duplicates are duplicates within one split (one text in two splits
is a leak that validate fails on). The corpus may be
far larger than memory allows to hold twice, so it is read, cleaned and written chunk by chunk;
the labeled set is small and goes through pandas with the same rules.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from components.clean_tokenize import near_dup, quality
from components.clean_tokenize.bounds import Bounds
from components.shared.decontamination import EvalIndex

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\ufeff]")
_SPACES = re.compile(r"[ \t\u00a0]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")

RULES = ("empty", "duplicate", "too_short", "contaminated")  # "contaminated" only with an EvalIndex
READ_ROWS = 64  # rows per Parquet read: bounds memory by 64 documents even before chunking by size


def clean_text(text: str, normalization: str = "NFKC") -> str:
    """Unicode normal form, control characters out, runs of spaces collapsed, paragraphs kept."""
    if normalization != "none":
        text = unicodedata.normalize(normalization, text)
    text = _CONTROL.sub(" ", text.replace("\r\n", "\n").replace("\r", "\n"))
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


class RuleFilter:
    """The rules applied one cleaned text at a time; `removed` counts rows per rule.

    A row is removed by the first rule it fails, in RULES order, exactly as applying each rule to
    the whole table in turn would: a text joins the duplicate set once it is non-empty, so the
    second copy of a too-short text counts as a duplicate. Digests (16 bytes each) rather than
    texts are remembered, so a streamed corpus needs memory per document, not per character.
    """

    def __init__(self, min_chars: int, index: EvalIndex | None = None, quality_rules: quality.QualityConfig | None = None):
        self.min_chars, self.index = min_chars, index
        self.quality = quality_rules if quality_rules is not None and quality_rules.enabled else None
        names = [*RULES[:3], *(r for r in quality.RULES if self.quality and r in self.quality.rules), *RULES[3:]]
        self.removed = dict.fromkeys(names if index is not None else names[:-1], 0)
        self._seen: set[bytes] = set()

    def keep(self, text: str, scope: str = "") -> bool:
        """`scope` limits the duplicate rule to texts of one scope (a labeled split)."""
        rule = self._failed_rule(text, scope)
        if rule:
            self.removed[rule] += 1
        return rule is None

    def _failed_rule(self, text: str, scope: str = "") -> str | None:
        if not text:
            return "empty"
        digest = hashlib.blake2b(f"{scope}\0{text}".encode() if scope else text.encode(), digest_size=16).digest()
        if digest in self._seen:
            return "duplicate"
        self._seen.add(digest)
        if len(text) < self.min_chars:
            return "too_short"
        if self.quality is not None and (rule := quality.failed_rule(text, self.quality)):
            return rule
        if self.index is not None and self.index.shared(text):
            return "contaminated"
        return None


def clean_table(df: pd.DataFrame, normalization: str, min_chars: int, index: EvalIndex | None = None, scope: str | None = None) -> tuple[pd.DataFrame, dict]:
    """Clean the `text` column and apply the rules; return the kept rows and {rule: rows removed}.

    With `scope` (a column: the labeled set's `split`), duplicates count within one value of it:
    a text in both train and test is a leak for validate to report, not a row to drop quietly.
    """
    rules = RuleFilter(min_chars, index)
    df = df.assign(text=[clean_text(t, normalization) for t in df["text"]])
    scopes = df[scope].astype(str) if scope else [""] * len(df)
    df = df[np.fromiter((rules.keep(t, s) for t, s in zip(df["text"], scopes)), dtype=bool, count=len(df))]
    return df.reset_index(drop=True), rules.removed


def clean_corpus(
    src: Path,
    dst: Path,
    normalization: str,
    min_chars: int,
    chunk_chars: int,
    index: EvalIndex | None = None,
    quality_rules: quality.QualityConfig | None = None,
    near_dups: near_dup.NearDupConfig | None = None,
    bounds: Bounds | None = None,
) -> dict:
    """Stream the corpus Parquet `src` through clean_text and the rules into `dst`.

    Returns {"removed": {rule: n}, "rows": kept rows, "chars": kept characters}. Memory holds one
    chunk (about `chunk_chars` characters) at a time, plus `index` (the evaluation n-grams, when
    decontaminating) and ~80 bytes per document for near-duplicates; each chunk becomes one row
    group of `dst`. With `bounds`, long words and documents are cut first (bounds.py), so rows of
    `dst` keep to its length limits (up to what NFKC adds: a few compatibility characters expand
    to several). Near-duplicates need every document's MinHash first, so with them on the kept
    rows go to a first file and a second pass (Parquet only, no text processing) drops the copies.
    """
    rules = RuleFilter(min_chars, index, quality_rules)
    sketch = near_dup.NearDupIndex(near_dups) if near_dups is not None and near_dups.enabled else None
    first = dst if sketch is None else dst.with_name(f".{dst.name}.before-near-dup")
    rows = chars = 0
    schema = pq.read_schema(src)
    chunks = iter_chunks(src, chunk_chars)
    with pq.ParquetWriter(first, schema) as writer:
        for table in bounds.tables(chunks) if bounds else chunks:
            texts = [clean_text(t, normalization) for t in table.column("text").to_pylist()]
            keep = [rules.keep(t) for t in texts]
            kept = [t for t, k in zip(texts, keep) if k]
            table = table.filter(pa.array(keep, pa.bool_()))
            table = table.set_column(table.schema.get_field_index("text"), schema.field("text"), pa.array(kept, schema.field("text").type))
            writer.write_table(table)
            rows += len(kept)
            chars += sum(map(len, kept))
            if sketch is not None:
                sketch.add(kept)
    if sketch is not None:
        copies = sketch.duplicates()
        rules.removed[near_dup.RULE] = int(copies.sum())
        rows, chars = _drop_rows(first, dst, copies, chunk_chars)
        first.unlink()
    return {"removed": rules.removed, "rows": rows, "chars": chars}


def _drop_rows(src: Path, dst: Path, drop, chunk_chars: int) -> tuple[int, int]:
    """Copy `src` to `dst` without the rows where `drop` is True, row group by row group."""
    rows = chars = start = 0
    with pq.ParquetWriter(dst, pq.read_schema(src)) as writer:
        for table in iter_chunks(src, chunk_chars):
            keep = pa.array(~drop[start : start + len(table)], pa.bool_())
            start += len(table)
            table = table.filter(keep)
            writer.write_table(table)
            rows += len(table)
            chars += int(pc.sum(pc.utf8_length(table.column("text"))).as_py() or 0)
    return rows, chars


def iter_chunks(path: Path, chunk_chars: int, columns: list[str] | None = None) -> Iterator[pa.Table]:
    """The rows of the Parquet file at `path` in order, as tables of at least one row that end at
    the first row where their `text` reaches `chunk_chars` characters."""
    pending, size = [], 0
    # pre_buffer=False: with pyarrow's default (True) the reader kept every row group it had read
    # in its memory pool, 551 MB after one pass over a 1 GB corpus; without it, 1 MB.
    for batch in pq.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=READ_ROWS, columns=columns):
        start = 0
        for i, n in enumerate(pc.utf8_length(batch.column("text")).fill_null(0).to_pylist()):
            size += n
            if size >= chunk_chars:
                pending.append(batch.slice(start, i + 1 - start))
                yield pa.Table.from_batches(pending)
                pending, size, start = [], 0, i + 1
        if start < len(batch):
            pending.append(batch.slice(start))
    if pending:
        yield pa.Table.from_batches(pending)
