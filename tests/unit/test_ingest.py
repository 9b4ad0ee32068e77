"""ingest on real files: plain paths, and a real git + DVC repo read at an old revision."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from components.ingest.ingest import IngestConfig, ingest
from components.shared import artifacts
from components.shared.errors import UserError


def path_config(corpus: Path, labeled: Path, **overrides) -> IngestConfig:
    return IngestConfig.from_params({"source": "path", "corpus_path": str(corpus), "labeled_path": str(labeled), **overrides}, "ingest")


def dvc_config(**overrides) -> IngestConfig:
    params = {"source": "dvc", "corpus_path": "data/corpus.jsonl", "labeled_path": "data/labeled.csv", "dvc_file": "data.dvc"}
    return IngestConfig.from_params({**params, **overrides}, "ingest")


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def recorded_md5(repo: Path, rev: str) -> str:
    """The md5 that data.dvc records at `rev`, read from git itself."""
    text = subprocess.run(["git", "-C", str(repo), "show", f"{rev}:data.dvc"], check=True, capture_output=True, text=True).stdout
    return yaml.safe_load(text)["outs"][0]["md5"]


def test_path_source_writes_canonical_tables_and_manifest(raw_dir, text_files):
    source_docs = [json.loads(line) for line in (text_files / "corpus.jsonl").read_text().splitlines()]
    source_rows = pd.read_csv(text_files / "labeled.csv", dtype={"id": str})

    corpus = pd.read_parquet(raw_dir / artifacts.CORPUS)
    assert list(corpus.columns) == ["doc_id", "title", "text"]
    assert corpus["doc_id"].tolist() == [d["id"] for d in source_docs]
    assert corpus["text"].tolist() == [d["text"] for d in source_docs]

    labeled = pd.read_parquet(raw_dir / artifacts.LABELED)
    assert list(labeled.columns) == ["id", "text", "label", "split"]
    assert labeled["label"].dtype == "int64"
    merged = labeled.merge(source_rows, on="id", suffixes=("", "_src"))
    assert len(merged) == len(labeled) == len(source_rows)
    assert (merged["text"] == merged["text_src"]).all() and (merged["label"] == merged["label_src"]).all()

    manifest = artifacts.read_json(raw_dir / artifacts.MANIFEST)
    assert manifest["source"] == "path" and manifest["data_rev"] == ""
    expected_rows = {"corpus": len(source_docs), **source_rows["split"].value_counts().to_dict()}
    assert manifest["rows"] == expected_rows
    assert manifest["files"] == {str(text_files / name): md5(text_files / name) for name in ("corpus.jsonl", "labeled.csv")}


def test_missing_split_column_falls_back_to_the_id_hash(text_files, tmp_path):
    from components.shared.splits import split_of

    rows = pd.read_csv(text_files / "labeled.csv", dtype={"id": str}).drop(columns="split")
    rows.to_csv(tmp_path / "nosplit.csv", index=False)
    ingest(tmp_path / "raw", path_config(text_files / "corpus.jsonl", tmp_path / "nosplit.csv"))
    labeled = pd.read_parquet(tmp_path / "raw" / artifacts.LABELED)
    assert (labeled["split"] == labeled["id"].map(split_of)).all()
    assert set(labeled["split"]) == {"train", "validation", "test"}


def test_max_docs_and_max_labeled_cap_the_rows(text_files, tmp_path):
    config = path_config(text_files / "corpus.jsonl", text_files / "labeled.csv", max_docs=7, max_labeled=50)
    metrics = ingest(tmp_path / "raw", config)
    corpus = pd.read_parquet(tmp_path / "raw" / artifacts.CORPUS)
    labeled = pd.read_parquet(tmp_path / "raw" / artifacts.LABELED)
    assert corpus["doc_id"].tolist() == [f"doc{i:03d}" for i in range(7)]
    assert len(labeled) == 50 and labeled["id"].is_unique
    assert metrics["ingest/corpus_docs"] == 7
    assert sum(v for k, v in metrics.items() if k.endswith("_rows")) == 50


@pytest.mark.parametrize("rev", ["first", "HEAD~1"])
def test_dvc_source_reads_the_pinned_revision_not_the_working_copy(dvc_repo, text_files, rev, tmp_path):
    repo, first = dvc_repo["repo"], dvc_repo["first"]
    old_docs, old_rows = dvc_repo["v1"]
    new_docs, new_rows = dvc_repo["v2"]
    # The working copy has moved on: fewer documents and sentences, and an edited sentence.
    assert sum(1 for _ in (repo / "data" / "corpus.jsonl").open()) == len(new_docs) < len(old_docs)

    out = tmp_path / "raw"
    metrics = ingest(out, dvc_config(), data_repo=str(repo), data_rev=first if rev == "first" else rev)

    corpus = pd.read_parquet(out / artifacts.CORPUS)
    labeled = pd.read_parquet(out / artifacts.LABELED)
    assert corpus["doc_id"].tolist() == [d["id"] for d in old_docs]
    assert len(labeled) == len(old_rows) and metrics["ingest/corpus_docs"] == len(old_docs)
    texts = set(labeled["text"])
    assert old_rows[0]["text"] in texts and new_rows[0]["text"] not in texts

    manifest = artifacts.read_json(out / artifacts.MANIFEST)
    assert manifest["source"] == "dvc" and manifest["data_repo"] == str(repo)
    assert manifest["data_rev"] == first and len(first) == 40
    assert manifest["data_md5"] == recorded_md5(repo, first) != recorded_md5(repo, "HEAD")
    assert manifest["rows"]["corpus"] == len(old_docs)
    # Per-file md5s are those of the files committed first (copies of text_files).
    assert manifest["files"] == {"data/corpus.jsonl": md5(text_files / "corpus.jsonl"), "data/labeled.csv": md5(text_files / "labeled.csv")}


def test_dvc_source_defaults_to_head(dvc_repo, tmp_path):
    ingest(tmp_path / "raw", dvc_config(), data_repo=str(dvc_repo["repo"]))
    manifest = artifacts.read_json(tmp_path / "raw" / artifacts.MANIFEST)
    assert manifest["data_rev"] == dvc_repo["second"]
    assert manifest["rows"]["corpus"] == len(dvc_repo["v2"][0])
    assert manifest["data_md5"] == recorded_md5(dvc_repo["repo"], "HEAD")


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# case -> (build the bad input under tmp, text the one-line error must contain)
def _missing_path(tmp, text_files, dvc_repo):
    return dict(config=path_config(tmp / "nope.jsonl", text_files / "labeled.csv")), "nope.jsonl"


def _no_label_column(tmp, text_files, dvc_repo):
    rows = pd.read_csv(text_files / "labeled.csv").drop(columns="label")
    rows.to_csv(tmp / "unlabeled.csv", index=False)
    return dict(config=path_config(text_files / "corpus.jsonl", tmp / "unlabeled.csv")), "'label' column"


def _empty_corpus(tmp, text_files, dvc_repo):
    corpus = _write(tmp / "blank.jsonl", '{"id": "a", "text": ""}\n{"id": "b", "text": "   "}\n')
    return dict(config=path_config(corpus, text_files / "labeled.csv")), "no documents"


def _unknown_rev(tmp, text_files, dvc_repo):
    return dict(config=dvc_config(), data_repo=str(dvc_repo["repo"]), data_rev="no-such-branch"), "'no-such-branch' not found"


def _untracked_file(tmp, text_files, dvc_repo):
    config = dvc_config(corpus_path="data/other.jsonl")
    return dict(config=config, data_repo=str(dvc_repo["repo"]), data_rev=dvc_repo["first"]), "data/other.jsonl"


def _data_not_pulled(tmp, text_files, dvc_repo):
    import subprocess

    clone = tmp / "clone"  # a fresh clone: data.dvc is there, the DVC cache is empty, no remote
    subprocess.run(["git", "clone", "-q", str(dvc_repo["repo"]), str(clone)], check=True)
    return dict(config=dvc_config(), data_repo=str(clone), data_rev=""), "neither the DVC cache nor the remote"


def _fractional_label(tmp, text_files, dvc_repo):
    rows = pd.read_csv(text_files / "labeled.csv", dtype=str)
    rows.loc[3, "label"] = "0.5"
    rows.to_csv(tmp / "fractional.csv", index=False)
    return dict(config=path_config(text_files / "corpus.jsonl", tmp / "fractional.csv")), "non-integer label '0.5'"


BAD = {f.__name__.lstrip("_"): f for f in (_missing_path, _no_label_column, _empty_corpus, _unknown_rev, _untracked_file, _data_not_pulled, _fractional_label)}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_clear_line_and_leaves_nothing(case, text_files, dvc_repo, tmp_path):
    kwargs, needle = BAD[case](tmp_path, text_files, dvc_repo)
    parent = tmp_path / "outputs"
    parent.mkdir()
    with pytest.raises(UserError) as info:
        ingest(parent / "raw", **kwargs)
    message = str(info.value)
    assert needle in message and "\n" not in message
    assert list(parent.iterdir()) == []  # neither the output nor a staging folder remains


@pytest.mark.parametrize("name, content", [("labeled.csv", ""), ("corpus.jsonl", '{"text": "unterminated\n')])
def test_unreadable_file_is_a_user_error(name, content, text_files, tmp_path):
    files = {n: text_files / n for n in ("corpus.jsonl", "labeled.csv")}
    files[name] = _write(tmp_path / name, content)
    with pytest.raises(UserError, match=name):
        ingest(tmp_path / "out" / "raw", path_config(files["corpus.jsonl"], files["labeled.csv"]))
