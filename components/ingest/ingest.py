"""ingest: read the corpus and the labeled set at a pinned data revision, write canonical Parquet.

Two sources: a DVC repository at a git revision (the default: the project's own `data.dvc`, read
through `dvc.api` from the cache or the remote, so an old revision stays readable after the
working copy has moved on), or plain local paths. Either way the manifest records where the
data came from, its md5s and row counts, which `register` turns into lineage tags.

The corpus is one file or a folder of documents (folder.py). The labeled set (labeled.py) keeps
its label column as the task reads it (classification: integer ids or the class names of
finetune.label_names, stored as ids; regression: numbers); a file without an id column gets ids
from a hash of each text, so the hash split does not follow the order of the rows.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from pydantic import Field

from components import tasks
from components.ingest.folder import FolderStats, document_files, folder_documents
from components.ingest.labeled import canonical_labeled, require_column
from components.shared import artifacts
from components.shared.config import StageConfig
from components.shared.errors import UserError

BATCH_BYTES = 8 << 20  # raw bytes per corpus batch: a JSONL batch as a DataFrame is a few times that
CSV_ROWS = 4096  # rows per CSV/TSV batch
PARQUET_ROWS = 1024  # rows per Parquet batch
FOLDER_DOCS = 1024  # documents per batch of a folder corpus (fewer when they reach BATCH_BYTES)
CORPUS_SCHEMA = pa.schema([("doc_id", pa.string()), ("title", pa.string()), ("text", pa.string())])


def _jsonl_batches(f: BinaryIO) -> Iterator[pd.DataFrame]:
    """JSON Lines in batches of whole lines of about BATCH_BYTES; blank lines skipped."""
    lines, size = [], 0
    for line in f:
        if not line.strip():
            continue
        lines.append(line)
        size += len(line)
        if size >= BATCH_BYTES:
            yield pd.read_json(io.BytesIO(b"".join(lines)), lines=True, dtype=False)
            lines, size = [], 0
    if lines:
        yield pd.read_json(io.BytesIO(b"".join(lines)), lines=True, dtype=False)


def _csv_batches(sep: str):
    def batches(f: BinaryIO) -> Iterator[pd.DataFrame]:
        yield from pd.read_csv(f, sep=sep, dtype=str, keep_default_na=False, chunksize=CSV_ROWS)

    return batches


def _parquet_batches(f: BinaryIO) -> Iterator[pd.DataFrame]:
    for batch in pq.ParquetFile(f, pre_buffer=False).iter_batches(batch_size=PARQUET_ROWS):
        yield batch.to_pandas()


READERS = {
    ".jsonl": _jsonl_batches,
    ".json": lambda f: iter([pd.read_json(f, dtype=False)]),  # one JSON array: not streamable
    ".csv": _csv_batches(","),
    ".tsv": _csv_batches("\t"),
    ".parquet": _parquet_batches,
}


class IngestConfig(StageConfig):
    source: Literal["dvc", "path"] = Field("dvc", description="read through DVC at a git rev, or plain local paths")
    corpus_path: str = Field(
        "data/corpus/enwiki.jsonl", description="pretraining corpus: a .jsonl/.csv/.parquet file with a text column, or a folder of .txt/.md/.rst/.jsonl files (one document per file or line)"
    )
    labeled_path: str = Field("data/labeled/rt_sentences.csv", description="labeled set (.csv/.tsv/.jsonl/.parquet) with a text and a label column (split and id optional)")
    dvc_file: str = Field("data.dvc", description="the .dvc file that tracks the data; its md5 is the data's identity")
    text_column: str = Field("text", description="text column in both files")
    id_column: str = Field("id", description="stable row id in both files (used for the hash split when no split column); a labeled file without it gets ids from a hash of its text")
    title_column: str = Field("title", description="document title in the corpus (optional)")
    label_column: str = Field("label", description="the target in the labeled file: classification, an integer id or one of label_names; regression, a number (the demo's is `score`)")
    task: tasks.TaskName = Field(tasks.DEFAULT, description="the downstream task, whose label schema the label column must follow: filled from finetune.task (name it there, once)")
    label_names: list[str] | None = Field(None, description="class names, index = id; filled from finetune.label_names (name the classes there, once)")
    split_column: str = Field("split", description="train/validation/test column; missing -> split by a hash of the id")
    max_docs: int | None = Field(None, ge=1, description="keep only the first N corpus documents (tiny runs)")
    max_labeled: int | None = Field(None, ge=3, description="keep about N labeled rows, chosen by id hash (tiny runs)")


def ingest(out_dir: Path, config: IngestConfig, data_repo: str = "", data_rev: str = "") -> dict:
    """Read both inputs, check their columns, write CORPUS, LABELED and MANIFEST into `out_dir`.

    The corpus is streamed: read in batches of about BATCH_BYTES (a folder: of at most FOLDER_DOCS
    documents) and written one Parquet row group per batch, so memory is bounded by the batch, not
    the corpus. The labeled set is read whole.
    """
    source = _Source(config, data_repo, data_rev)
    labeled = canonical_labeled(source.read_table(config.labeled_path, "labeled_path"), config)
    with artifacts.staged_dir(out_dir) as tmp:
        docs = write_corpus(source.iter_corpus(config.corpus_path), tmp / artifacts.CORPUS, config)
        labeled.to_parquet(tmp / artifacts.LABELED, index=False)
        manifest = {
            "source": config.source,
            "data_repo": source.repo,
            "data_rev": source.rev,
            "data_md5": source.dvc_md5(config.dvc_file),
            "files": {p: source.md5(p) for p in (config.corpus_path, config.labeled_path)},
            "rows": {"corpus": docs, **labeled["split"].value_counts().sort_index().to_dict()},
        }
        artifacts.write_json(tmp / artifacts.MANIFEST, manifest)
    rows = manifest["rows"]
    return {"ingest/corpus_docs": docs, **{f"ingest/{k}_rows": v for k, v in rows.items() if k != "corpus"}}


def write_corpus(batches: Iterable[pd.DataFrame], dst: Path, config: IngestConfig) -> int:
    """Canonicalise each batch of raw corpus rows (any source: a file's batches, or a generator of
    documents) and append it to the Parquet file `dst` as one row group; return the rows written.

    Rows without an id column get their running row number, as a whole-file read would give them.
    """
    written = seen = 0
    with pq.ParquetWriter(dst, CORPUS_SCHEMA) as writer:
        for batch in batches:
            batch = batch.set_axis(pd.RangeIndex(seen, seen + len(batch)))
            seen += len(batch)
            if written == 0:
                require_column(batch, config.text_column, "corpus", config.corpus_path, "text_column")
            out = _canonical_corpus(batch, config)
            if config.max_docs:
                out = out.head(config.max_docs - written)
            if len(out):
                writer.write_table(pa.Table.from_pandas(out, schema=CORPUS_SCHEMA, preserve_index=False))
                written += len(out)
            if config.max_docs and written >= config.max_docs:
                break
    if written == 0:
        raise UserError(f"corpus {config.corpus_path} has no documents with text: point ingest.corpus_path at a non-empty corpus")
    return written


class _Source:
    """Opens files either through DVC at one resolved git commit or from the local filesystem."""

    def __init__(self, config: IngestConfig, repo: str, rev: str):
        self.config = config
        self.repo = repo or "."
        self.rev = ""
        self.fs = None
        self.folders: dict[str, list[str]] = {}  # corpus folder -> its document files (what its md5 covers)
        if config.source == "dvc":
            from dvc.api import DVCFileSystem

            self.rev = resolve_rev(self.repo, rev or "HEAD")
            try:
                self.fs = DVCFileSystem(self.repo, rev=self.rev)
            except Exception as exc:  # dvc raises many types; the message is what helps
                raise UserError(f"cannot open DVC repo {self.repo!r} at {self.rev}: {exc}") from None

    @contextlib.contextmanager
    def open(self, path: str, key: str = "corpus_path/labeled_path") -> Iterator[BinaryIO]:
        """The file as a binary stream, from disk or from DVC (its cache or the remote)."""
        if self.fs is None:
            if not Path(path).is_file():
                raise UserError(f"data file not found: {path}: check the path or set ingest.corpus_path/labeled_path")
            with open(path, "rb") as f:
                yield f
            return
        if not self.fs.exists(path):
            where = f"{self.repo!r} at rev {self.rev[:12]}"
            if self._plain_file_outside_dvc(path):
                # A plain file outside the tracked data: what the user meant is a plain path.
                raise UserError(
                    f"ingest.{key} {path} is a local file that DVC does not track in {where}: set ingest.source=path "
                    "to read plain files (no data revision, so no `lmforge reproduce`), or track it with `lmforge data add`"
                )
            if self.fs.exists(self.config.dvc_file):  # tracked, but the contents are nowhere local
                raise UserError(f"data file {path!r} of {where} is in neither the DVC cache nor the remote (or not under the tracked folder): run `lmforge data demo` for the demo data, or `dvc pull`")
            raise UserError(f"data file {path!r} is not tracked in {where}: check the path, or build the demo data with `lmforge data demo`")
        try:
            f = self.fs.open(path, "rb")
        except Exception as exc:
            raise UserError(f"data for {path!r} at rev {self.rev[:12]} is in neither the DVC cache nor the remote ({type(exc).__name__}): run `dvc pull` or `lmforge data demo`") from None
        with f:
            yield f

    def iter_table(self, path: str, key: str = "corpus_path/labeled_path") -> Iterator[pd.DataFrame]:
        """The rows of a .jsonl/.csv/.tsv/.parquet file in batches of about BATCH_BYTES (.json whole)."""
        suffix = Path(path).suffix.lower()
        if suffix not in READERS:
            raise UserError(f"unsupported data file type {suffix!r} for {path}: use .jsonl, .csv, .tsv or .parquet")
        with self.open(path, key) as f:
            any_rows = False
            try:
                for batch in READERS[suffix](f):
                    any_rows = True
                    yield batch
            except pd.errors.EmptyDataError:
                pass  # a CSV with no header line: said below, like any other empty file
            except (ValueError, pd.errors.ParserError, OSError) as exc:  # pyarrow errors subclass these
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise UserError(f"cannot parse {path} as {suffix[1:]}: {first}: fix the file or its extension") from None
        if not any_rows:
            raise UserError(f"data file {path} is empty: point ingest at a file with rows")

    def read_table(self, path: str, key: str = "corpus_path/labeled_path") -> pd.DataFrame:
        """A whole (small) file as one frame: the labeled set."""
        return pd.concat(list(self.iter_table(path, key)), ignore_index=True)

    def _plain_file_outside_dvc(self, path: str) -> bool:
        """A file on disk that no .dvc file covers (data.dvc tracks data/; a file there that DVC
        cannot find is one whose contents are missing from the cache, a different error)."""
        tracked = Path(self.repo).resolve() / Path(self.config.dvc_file).with_suffix("")
        candidate = Path(path) if Path(path).is_absolute() else Path(self.repo) / path  # DVC paths are relative to the repo
        return candidate.exists() and not candidate.resolve().is_relative_to(tracked)

    def is_dir(self, path: str) -> bool:
        if self.fs is None:
            return Path(path).is_dir()
        try:
            return self.fs.isdir(path)
        except Exception:  # e.g. the tracked folder's listing is in neither cache nor remote: open() says so
            return False

    def iter_corpus(self, path: str) -> Iterator[pd.DataFrame]:
        """The corpus file's batches, or a folder's documents (read one by one, in path order) in
        batches of at most FOLDER_DOCS documents or about BATCH_BYTES of text."""
        if not self.is_dir(path):
            yield from self.iter_table(path, "corpus_path")
            return
        files = [str(p) for p in Path(path).rglob("*") if p.is_file()] if self.fs is None else self.fs.find(path)
        # The folder's identity is all its documents, even when ingest.max_docs stops the read early.
        self.folders[path] = [f for f, _ in document_files(files, path)[0]]
        stats, docs, size = FolderStats(), [], 0

        def read_file(file: str) -> bytes:
            with self.open(file, "corpus_path") as f:
                return f.read()

        c = self.config
        columns = {"doc_id": c.id_column, "title": c.title_column, "text": c.text_column}
        try:
            for doc in folder_documents(files, read_file, path, stats, c.text_column, c.id_column, c.title_column):
                docs.append(doc)
                size += len(doc["text"])
                if len(docs) >= FOLDER_DOCS or size >= BATCH_BYTES:
                    yield pd.DataFrame(docs, columns=list(columns)).rename(columns=columns)
                    docs, size = [], 0
        except GeneratorExit:  # write_corpus stopped at ingest.max_docs: the counts cover what was read
            if c.max_docs:
                print(f"[ingest] {stats.line(path)} read before ingest.max_docs={c.max_docs} was reached", flush=True)
            raise
        if docs:
            yield pd.DataFrame(docs, columns=list(columns)).rename(columns=columns)
        print(f"[ingest] {stats.line(path)}", flush=True)
        if stats.documents == 0:
            raise UserError(f"{stats.line(path)}: put .txt/.md/.rst/.jsonl files in it or point ingest.corpus_path at a corpus file")

    def md5(self, path: str) -> str:
        if path in self.folders:  # a folder: md5 over its files' paths and md5s, as DVC's .dir hash does
            listing = "".join(f"{Path(f).relative_to(path).as_posix()} {self.md5(f)}\n" for f in self.folders[path])
            return hashlib.md5(listing.encode()).hexdigest() + ".dir"
        if self.fs is not None:
            return self.fs.info(path).get("md5") or ""
        digest = hashlib.md5()
        with open(path, "rb") as f:  # a second read of the file, block by block, from the page cache
            while block := f.read(1 << 20):
                digest.update(block)
        return digest.hexdigest()

    def dvc_md5(self, dvc_file: str) -> str:
        """The md5 that the .dvc file records for the tracked directory (its content identity)."""
        if self.fs is None or not self.fs.exists(dvc_file):
            return ""
        with self.fs.open(dvc_file, "r") as f:
            outs = yaml.safe_load(f).get("outs") or [{}]
        return outs[0].get("md5", "")


def read_table(path: str) -> pd.DataFrame:
    """A local .jsonl/.json/.csv/.tsv/.parquet file as ingest reads it (`lmforge data add` uses it)."""
    return _Source(IngestConfig(source="path"), "", "").read_table(path, "labeled_path")


def resolve_rev(repo: str, rev: str) -> str:
    """A git rev (branch, tag, HEAD~1, sha) -> the full commit sha it names today."""
    if "://" in repo or repo.startswith("git@"):
        return rev  # a remote repo: DVC clones it and resolves the rev itself
    out = subprocess.run(["git", "-C", repo, "rev-parse", "--verify", f"{rev}^{{commit}}"], capture_output=True, text=True)
    if out.returncode != 0:
        raise UserError(f"data revision {rev!r} not found in git repo {repo!r}: pass a commit, branch or tag that exists")
    return out.stdout.strip()


def _canonical_corpus(df: pd.DataFrame, config: IngestConfig) -> pd.DataFrame:
    """One batch of raw rows -> doc_id, title, text (as strings), rows without text left out."""
    if config.text_column not in df:  # a JSONL batch in which no line has the text key
        df = df.assign(**{config.text_column: ""})
    out = pd.DataFrame(
        {
            "doc_id": df[config.id_column].astype(str) if config.id_column in df else df.index.astype(str),
            "title": df[config.title_column].astype(str) if config.title_column in df else "",
            "text": df[config.text_column].fillna("").astype(str),
        }
    )
    out = out[out["text"].str.strip() != ""]
    return out
