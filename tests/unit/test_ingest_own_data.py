"""ingest on a user's own data: a folder corpus, string labels, no id column, a plain file set
where DVC was expected. Real files, a real git + DVC repo."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pandas as pd
import pyarrow.parquet as pq
import pytest

from components.ingest.ingest import IngestConfig, ingest
from components.shared import artifacts
from components.shared.errors import UserError

NAMES = ["business", "sport", "tech"]


def folder_corpus(root):
    """Three documents in nested folders, a .jsonl of two more, and two files that are not text."""
    (root / "guide" / "deep").mkdir(parents=True)
    (root / "guide" / "intro.rst").write_text("Introduction\n============\n\nThe harbour festival opens in May.\n")
    (root / "guide" / "deep" / "usage.md").write_text("# Usage\n\nRun the film projector slowly.\n")
    (root / "notes.txt").write_text("\ufeffA byte-order mark is not text.\n")
    (root / "more.jsonl").write_text(json.dumps({"id": "m1", "text": "First line document."}) + "\n\n" + json.dumps({"text": "Second, no id."}) + "\n")
    (root / "logo.png").write_bytes(b"\x89PNG\r\n")
    (root / ".hidden.txt").write_text("an editor's swap file")
    return root


def labeled_csv(path, rows):
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def news_rows(n=60):
    return [{"text": f"Article {i} on {NAMES[i % 3]} matters and more words", "label": NAMES[i % 3]} for i in range(n)]


def config(corpus, labeled, **overrides):
    return IngestConfig.from_params({"source": "path", "corpus_path": str(corpus), "labeled_path": str(labeled), "label_names": NAMES, **overrides}, "ingest")


def test_a_folder_corpus_is_read_document_by_document_in_path_order(tmp_path, capsys):
    corpus = folder_corpus(tmp_path / "docs")
    labeled = labeled_csv(tmp_path / "news.csv", news_rows())
    ingest(tmp_path / "raw", config(corpus, labeled))
    docs = pd.read_parquet(tmp_path / "raw" / artifacts.CORPUS)
    assert docs["doc_id"].tolist() == ["guide/deep/usage.md", "guide/intro.rst", "m1", "more.jsonl:3", "notes.txt"]
    assert docs["text"].iloc[-1] == "A byte-order mark is not text.\n"
    assert docs["title"].iloc[0] == "guide/deep/usage"
    assert "5 documents from 4 files; skipped 1 .png" in capsys.readouterr().out  # the hidden file is not counted
    manifest = artifacts.read_json(tmp_path / "raw" / artifacts.MANIFEST)
    assert manifest["files"][str(corpus)].endswith(".dir") and manifest["rows"]["corpus"] == 5
    # The folder's md5 follows its contents: another file changes it.
    (corpus / "extra.txt").write_text("one more document")
    ingest(tmp_path / "raw2", config(corpus, labeled))
    assert artifacts.read_json(tmp_path / "raw2" / artifacts.MANIFEST)["files"][str(corpus)] != manifest["files"][str(corpus)]


def test_a_folder_corpus_streams_in_batches_and_max_docs_stops_the_read(tmp_path, monkeypatch, capsys):
    """A folder is written in bounded batches (one row group each) like a file corpus, with the same
    table; ingest.max_docs stops reading early, and the folder's md5 still covers all its files."""
    from components.ingest import ingest as ingest_module

    corpus = folder_corpus(tmp_path / "docs")
    labeled = labeled_csv(tmp_path / "news.csv", news_rows())
    ingest(tmp_path / "whole", config(corpus, labeled))
    monkeypatch.setattr(ingest_module, "FOLDER_DOCS", 2)
    ingest(tmp_path / "batched", config(corpus, labeled))
    whole, batched = (pq.ParquetFile(tmp_path / d / artifacts.CORPUS) for d in ("whole", "batched"))
    assert whole.metadata.num_row_groups == 1 and batched.metadata.num_row_groups == 3  # 5 documents, 2 a batch
    assert batched.read().equals(whole.read())
    manifest = artifacts.read_json(tmp_path / "whole" / artifacts.MANIFEST)
    assert artifacts.read_json(tmp_path / "batched" / artifacts.MANIFEST) == manifest
    capsys.readouterr()
    ingest(tmp_path / "first", config(corpus, labeled, max_docs=2))
    assert pd.read_parquet(tmp_path / "first" / artifacts.CORPUS)["doc_id"].tolist() == ["guide/deep/usage.md", "guide/intro.rst"]
    assert "read before ingest.max_docs=2 was reached" in capsys.readouterr().out  # not the whole folder's count
    first = artifacts.read_json(tmp_path / "first" / artifacts.MANIFEST)
    assert first["files"] == manifest["files"] and first["rows"]["corpus"] == 2


def test_string_labels_become_the_ids_of_the_named_classes(tmp_path):
    labeled = labeled_csv(tmp_path / "news.csv", news_rows())
    ingest(tmp_path / "raw", config(folder_corpus(tmp_path / "docs"), labeled))
    rows = pd.read_parquet(tmp_path / "raw" / artifacts.LABELED)
    assert rows["label"].dtype == "int64"
    by_text = dict(zip(rows["text"], rows["label"]))
    assert all(by_text[r["text"]] == NAMES.index(r["label"]) for r in news_rows())


def _string_labels_without_names(rows):
    return rows, {"label_names": None}, "non-integer label 'business': for string labels, name the classes once in finetune.label_names (index = id), e.g. [business, sport, tech]"


def _unknown_name(rows):
    rows[5]["label"] = "weather"
    return rows, {}, "label 'weather' that is neither an integer id nor one of finetune.label_names"


def _id_beyond_the_names(rows):
    return [{"text": r["text"], "label": 7 if i == 5 else i % 3} for i, r in enumerate(rows)], {}, "label ids from 0 to 7 but finetune.label_names names 3 classes"


@pytest.mark.parametrize("case", [_string_labels_without_names, _unknown_name, _id_beyond_the_names], ids=lambda f: f.__name__.strip("_"))
def test_labels_outside_the_named_classes_are_one_line_naming_the_fix(tmp_path, case):
    rows, overrides, needle = case(news_rows())
    with pytest.raises(UserError) as info:
        ingest(tmp_path / "raw", config(folder_corpus(tmp_path / "docs"), labeled_csv(tmp_path / "news.csv", rows), **overrides))
    assert needle in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "raw").exists()


def test_without_an_id_column_the_split_does_not_follow_row_order(tmp_path, capsys):
    """Ids come from a hash of the text: the shuffled file gives the same rows in the same splits."""
    rows = news_rows(200) + [news_rows()[0]]  # one text twice: both copies in one split
    corpus = folder_corpus(tmp_path / "docs")
    ingest(tmp_path / "a", config(corpus, labeled_csv(tmp_path / "a.csv", rows)))
    shuffled = pd.DataFrame(rows).sample(frac=1.0, random_state=3)
    ingest(tmp_path / "b", config(corpus, labeled_csv(tmp_path / "b.csv", shuffled.to_dict("records"))))
    a, b = (pd.read_parquet(tmp_path / d / artifacts.LABELED) for d in ("a", "b"))
    pd.testing.assert_frame_equal(a, b)
    assert set(a["split"]) == {"train", "validation", "test"} and a["id"].is_unique
    copies = a[a["text"] == rows[0]["text"]]
    assert len(copies) == 2 and copies["split"].nunique() == 1
    assert "has no 'id' column: ids and the split come from a hash of each text" in capsys.readouterr().out


def test_only_labeled_path_set_says_to_use_source_path(tmp_path):
    """The default source is DVC: a plain file given as labeled_path is not a cache problem."""
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=repo, check=True)
    (repo / "data").mkdir()
    shutil.copytree(folder_corpus(tmp_path / "docs"), repo / "data" / "docs")
    labeled_csv(repo / "data" / "news.csv", news_rows())
    subprocess.run([sys.executable, "-m", "dvc", "add", "-q", "data"], cwd=repo, check=True)
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-qm", "data"], check=True)
    plain = labeled_csv(tmp_path / "news.csv", news_rows())
    cfg = IngestConfig.from_params({"corpus_path": "data/docs", "labeled_path": str(plain), "label_names": NAMES}, "ingest")
    with pytest.raises(UserError) as info:
        ingest(tmp_path / "raw", cfg, data_repo=str(repo))
    assert f"ingest.labeled_path {plain} is a local file that DVC does not track" in str(info.value)
    assert "set ingest.source=path" in str(info.value)
    # The folder corpus itself reads through DVC at the commit, listing and all.
    cfg = IngestConfig.from_params({"corpus_path": "data/docs", "labeled_path": "data/news.csv", "label_names": NAMES}, "ingest")
    ingest(tmp_path / "raw", cfg, data_repo=str(repo))
    assert pd.read_parquet(tmp_path / "raw" / artifacts.CORPUS)["doc_id"].tolist()[:2] == ["guide/deep/usage.md", "guide/intro.rst"]
    assert artifacts.read_json(tmp_path / "raw" / artifacts.MANIFEST)["files"]["data/docs"].endswith(".dir")


def test_the_classes_are_named_once_in_finetune_label_names():
    from pipelines.config import load_config

    config = load_config("tiny", ["finetune.label_names=[business, sport, tech]"])
    assert config.ingest.label_names == ["business", "sport", "tech"] and config.stage("validate").labels == [0, 1, 2]
    with pytest.raises(UserError, match="name the classes once, in finetune.label_names"):
        load_config("tiny", ["ingest.label_names=[a, b]"])
