"""ingest and validate read the corpus in batches: the same tables whatever the batch size, exact
corpus counts that a bounded GX sample cannot see, and the rule counts in the Data Docs."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow.parquet as pq
import pytest
from tiny_data import CORPUS_FILE, LABELED_FILE

from components.ingest import ingest as ingest_module
from components.ingest.ingest import IngestConfig, ingest, write_corpus
from components.shared import artifacts
from components.validate.validate import ValidateConfig, validate

TOKENS = {"vocab_size": 512, "unk_rate": 0.002, "n_blocks_train": 4, "n_blocks_heldout": 1}


def _formats(text_files, tmp):
    """The tiny corpus as JSONL (as written), CSV and Parquet, without an id column in the CSV."""
    docs = pd.read_json(text_files / CORPUS_FILE, lines=True, dtype=False)
    docs.drop(columns="id").to_csv(tmp / "corpus.csv", index=False)
    docs.to_parquet(tmp / "corpus.parquet", index=False)
    return {"jsonl": text_files / CORPUS_FILE, "csv": tmp / "corpus.csv", "parquet": tmp / "corpus.parquet"}


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_small_batches_give_the_same_corpus_in_many_row_groups(fmt, text_files, tmp_path, monkeypatch):
    path = _formats(text_files, tmp_path)[fmt]
    config = IngestConfig(source="path", corpus_path=str(path), labeled_path=str(text_files / LABELED_FILE))
    ingest(tmp_path / "whole", config)
    monkeypatch.setattr(ingest_module, "BATCH_BYTES", 500)
    monkeypatch.setattr(ingest_module, "CSV_ROWS", 3)
    monkeypatch.setattr(ingest_module, "PARQUET_ROWS", 3)
    ingest(tmp_path / "batched", config)
    whole, batched = (pq.ParquetFile(tmp_path / d / artifacts.CORPUS) for d in ("whole", "batched"))
    assert batched.metadata.num_row_groups >= 10 > whole.metadata.num_row_groups
    assert batched.read().equals(whole.read())
    ids = batched.read().column("doc_id").to_pylist()
    assert ids == ([str(i) for i in range(40)] if fmt == "csv" else [f"doc{i:03d}" for i in range(40)])  # row numbers run on across batches
    manifest = artifacts.read_json(tmp_path / "batched" / artifacts.MANIFEST)
    assert manifest["rows"]["corpus"] == 40 and manifest == artifacts.read_json(tmp_path / "whole" / artifacts.MANIFEST)


def test_a_generator_of_documents_feeds_the_writer_and_max_docs_stops_it(tmp_path):
    def documents():  # e.g. a folder of files, read a few at a time
        for start in range(0, 10, 3):
            yield pd.DataFrame({"id": [f"f{i}" for i in range(start, min(start + 3, 10))], "text": ["" if i == 4 else f"text {i}" for i in range(start, min(start + 3, 10))]})

    config = IngestConfig(source="path", corpus_path="folder/", max_docs=7)
    assert write_corpus(documents(), tmp_path / "c.parquet", config) == 7
    table = pd.read_parquet(tmp_path / "c.parquet")
    assert table["doc_id"].tolist() == ["f0", "f1", "f2", "f3", "f5", "f6", "f7"]  # f4 has no text
    assert set(table["title"]) == {""}


def _cleaned(root, corpus: pd.DataFrame, removed: dict):
    root.mkdir(parents=True)
    corpus.to_parquet(root / artifacts.CORPUS, index=False)
    rows = [
        {"id": f"s{i}", "text": t, "label": i % 2, "split": s, "input_ids": [5, 6]}
        for i, (t, s) in enumerate([("a great film", "train"), ("a dull film", "train"), ("lovely acting", "validation"), ("flat acting", "test")])
    ]
    pd.DataFrame(rows).to_parquet(root / artifacts.LABELED, index=False)
    artifacts.write_json(root / artifacts.CLEAN_REPORT, {"tokens": TOKENS, "removed": removed})
    return root


@pytest.fixture(scope="module")
def duplicated(tmp_path_factory):
    """50 corpus documents, one of them a copy of another's text, validated with a sample of 5."""
    base = tmp_path_factory.mktemp("dup")
    texts = [f"Document number {i} is about topic {i}. " * 10 for i in range(50)]
    texts[37] = texts[3]
    corpus = pd.DataFrame({"doc_id": [f"d{i}" for i in range(50)], "title": "", "text": texts})
    removed = {"corpus": {"duplicate": 2, "near_duplicate": 7}, "labeled": {"empty": 1}}
    cleaned = _cleaned(base / "cleaned", corpus, removed)
    config = ValidateConfig(sample_docs=5, fail_on_error=False, labels=[0, 1])  # the labeled suite is not what this looks at
    metrics = validate(cleaned, base / "out", config)
    return metrics, json.loads((base / "out" / artifacts.VALIDATION).read_text()), base / "out"


def test_exact_counts_see_a_duplicate_the_sample_cannot(duplicated):
    metrics, report, _ = duplicated
    assert report["corpus"]["success"]  # 5 sampled documents: the pair is not among them
    stats = report["corpus_stats"]
    assert not stats["success"]
    assert [(f["expectation"], f["column"]) for f in stats["failed"]] == [("expect_column_values_to_be_between", "duplicate_texts")]
    assert stats["counts"]["rows"] == 50 and stats["counts"]["duplicate_texts"] == 1 and stats["counts"]["duplicate_doc_ids"] == 0
    assert metrics["validate/corpus_rows"] == 50.0 and metrics["validate/corpus_duplicate_texts"] == 1.0


def test_each_removal_count_is_in_the_data_docs(duplicated):
    _, report, out = duplicated
    assert report["corpus_stats"]["counts"]["corpus_removed_near_duplicate"] == 7
    page = next((out / artifacts.DATA_DOCS_DIR / "validations").rglob("lmforge-corpus_stats*.html"), None) or next(
        p for p in (out / artifacts.DATA_DOCS_DIR / "validations").rglob("*.html") if "corpus_stats" in str(p)
    )
    html = page.read_text()
    assert "corpus_removed_near_duplicate" in html and "labeled_removed_empty" in html


def test_a_blank_document_is_counted_exactly_beyond_the_sample(tmp_path):
    """main's 'no blank document' rule runs per row on the sample; corpus_stats counts it over every row."""
    texts = [f"Document number {i} is about topic {i}. " * 10 for i in range(30)]
    texts[21] = " \n\t "
    corpus = pd.DataFrame({"doc_id": [f"d{i}" for i in range(30)], "title": "", "text": texts})
    cleaned = _cleaned(tmp_path / "cleaned", corpus, {"corpus": {"duplicate": 0}})
    validate(cleaned, tmp_path / "out", ValidateConfig(sample_docs=3, min_doc_chars=0, fail_on_error=False, labels=[0, 1]))
    report = json.loads((tmp_path / "out" / artifacts.VALIDATION).read_text())
    assert report["corpus"]["success"]  # 3 sampled documents: the blank one is not among them
    assert report["corpus_stats"]["counts"]["blank_texts"] == 1
    assert [f["column"] for f in report["corpus_stats"]["failed"]] == ["blank_texts"]
