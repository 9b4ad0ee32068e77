"""A corpus that is a folder of documents: .txt/.md/.rst files (one document each) and .jsonl
files (one document a line), read one document at a time.

Files are visited in sorted path order, so the same folder gives the same documents in the same
order on every machine (os.listdir order is the filesystem's). A document's id is its path inside
the folder (a .jsonl line's id is its own id field, else `path:line`), so adding a file does not
renumber the others and the held-out split (a hash of the id) stays put. Files of other types are
skipped and counted, never silently: `FolderStats` says how many and which suffixes.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from components.shared.errors import UserError

DOCUMENT_SUFFIXES = (".txt", ".md", ".rst")  # one file, one document
TABLE_SUFFIXES = (".jsonl",)  # one line, one document


@dataclass
class FolderStats:
    files: int = 0
    documents: int = 0
    skipped: Counter = field(default_factory=Counter)  # suffix -> files not read

    def line(self, folder: str) -> str:
        skipped = ", ".join(f"{n} {s or 'no suffix'}" for s, n in sorted(self.skipped.items()))
        return f"corpus folder {folder}: {self.documents:,} documents from {self.files:,} files" + (f"; skipped {skipped} (not .txt/.md/.rst/.jsonl)" if skipped else "")


def folder_documents(
    paths: Iterable[str],
    read: Callable[[str], bytes],
    folder: str,
    stats: FolderStats,
    text_column: str = "text",
    id_column: str = "id",
    title_column: str = "title",
) -> Iterator[dict]:
    """Yield {doc_id, title, text} for every document under `folder`, in sorted path order.

    `paths` are the files under the folder (any order, full paths as `read` takes them); hidden
    files and folders (a leading dot: .git, .DS_Store) are not documents and are not counted.
    """
    files, skipped = document_files(paths, folder)
    stats.skipped.update(skipped)
    for path, rel in files:
        suffix = rel.suffix.lower()
        stats.files += 1
        text = _decode(read(path), path)
        if suffix in DOCUMENT_SUFFIXES:
            stats.documents += 1
            yield {"doc_id": rel.as_posix(), "title": rel.with_suffix("").as_posix(), "text": text}
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"corpus file {path} line {number} is not JSON ({exc.msg}): fix the line or remove the file") from None
            if not isinstance(row, dict) or text_column not in row:
                raise UserError(f"corpus file {path} line {number} has no {text_column!r} field: add it or set ingest.text_column")
            stats.documents += 1
            yield {
                "doc_id": str(row.get(id_column) or f"{rel.as_posix()}:{number}"),
                "title": str(row.get(title_column) or ""),
                "text": "" if row[text_column] is None else str(row[text_column]),
            }


def document_files(paths: Iterable[str], folder: str) -> tuple[list[tuple[str, PurePosixPath]], Counter]:
    """The files under `folder` that hold documents, as (path, path inside the folder) in sorted
    path order, and the suffixes of the files that do not (hidden ones are neither)."""
    root = PurePosixPath(folder.rstrip("/"))
    files, skipped = [], Counter()
    for path in sorted(paths):
        rel = PurePosixPath(path).relative_to(root) if PurePosixPath(path).is_relative_to(root) else PurePosixPath(path)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if rel.suffix.lower() not in DOCUMENT_SUFFIXES + TABLE_SUFFIXES:
            skipped[rel.suffix.lower()] += 1
            continue
        files.append((path, rel))
    return files, skipped


def _decode(raw: bytes, path: str) -> str:
    try:
        return raw.decode("utf-8-sig")  # a byte-order mark from Windows editors is not text
    except UnicodeDecodeError as exc:
        raise UserError(f"corpus file {path} is not UTF-8 (byte {exc.start}): convert it (e.g. iconv -t utf-8) or remove it from the folder") from None
