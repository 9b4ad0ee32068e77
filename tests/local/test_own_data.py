"""A new user's own data, as the README's "Your own data" tells it: `lmforge data add` with a
folder of documents and a multi-class labeled file with string labels, then one `lmforge run
--config <preset>` and no other flag. Real git + DVC project, real CLI, real kfp.local run."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml
from tiny_data import corpus_documents

from components.shared.lineage import DATA_REV_TAG, VALIDATION_TAG

REPO = Path(__file__).resolve().parents[2]
TOPICS = {  # three classes with words of their own, so a 1-layer model can tell them apart
    "business": ["market", "shares", "profit", "bank", "trade", "investors", "prices", "company"],
    "sport": ["match", "goal", "team", "season", "coach", "players", "league", "cup"],
    "tech": ["software", "chip", "phone", "network", "computer", "internet", "code", "robot"],
}
LONG = 3  # labeled rows far past the preset's max_chars: kept and truncated, never dropped


def news_rows() -> list[dict]:
    rows, rng = [], random.Random(7)
    for i in range(270):
        topic = list(TOPICS)[i % 3]
        words = rng.sample(TOPICS[topic], 3)
        rows.append({"Text": f"Report {i}: the {words[0]} and the {words[1]} moved the {words[2]} today.", "Category": topic})
    for i in range(LONG):  # long articles: a paragraph repeated, ~4,000 characters
        rows.append({"Text": f"Long report {i}. " + "The market and the bank set prices for investors. " * 80, "Category": "business"})
    return rows


@pytest.fixture
def user_project(tmp_path) -> dict:
    """A git + DVC project (the checkout's DVC config, no demo data), a folder of documents, a
    CSV with string labels in columns the user named their own way, and a base preset: tiny with
    one torch thread (the user's choice of recipe, written into the preset by `data add`)."""
    root = tmp_path / "project"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / ".dvc").mkdir()
    for name in (".dvc/config", ".dvc/.gitignore", ".dvcignore"):
        (root / name).write_text((REPO / name).read_text())
    (root / ".gitignore").write_text("/data/\n/.dvcstore/\n/mlflow.db\n/mlruns/\n/local_outputs/\n")
    subprocess.run(["git", "-C", str(root), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(root), "commit", "-qm", "project"], check=True)

    docs = tmp_path / "docs"
    for i, doc in enumerate(corpus_documents(40)):
        path = docs / f"part{i % 4}" / f"{doc['id']}{('.txt', '.md', '.rst')[i % 3]}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{doc['title']}\n\n{doc['text']}\n")
    labeled = tmp_path / "news.csv"
    pd.DataFrame(news_rows()).to_csv(labeled, index=False)
    base = yaml.safe_load((REPO / "pipelines" / "configs" / "tiny.yaml").read_text())
    for stage in ("pretrain", "finetune", "evaluate"):
        base.setdefault(stage, {})["threads"] = 1
    (tmp_path / "tiny-1-thread.yaml").write_text(yaml.safe_dump(base))
    return {"root": root, "docs": docs, "labeled": labeled, "base": tmp_path / "tiny-1-thread.yaml"}


def add(lmforge, project: dict, *extra: str):
    return lmforge(
        project["root"],
        "data",
        "add",
        "news",
        "--corpus",
        str(project["docs"]),
        "--labeled",
        str(project["labeled"]),
        "--text-column",
        "Text",
        "--label-column",
        "Category",
        "--base-preset",
        str(project["base"]),
        *extra,
    )


def test_data_add_copies_tracks_commits_and_writes_the_preset(user_project, lmforge):
    root = user_project["root"]
    res = add(lmforge, user_project)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "lmforge run --config news" in res.stdout
    preset = yaml.safe_load((root / "pipelines" / "configs" / "news.yaml").read_text())
    assert preset["finetune"]["label_names"] == ["business", "sport", "tech"]  # named once, sorted
    assert preset["register"]["model_name"] == "lmforge-news"
    assert preset["ingest"] == {**preset["ingest"], "source": "dvc", "corpus_path": "data/news/corpus", "labeled_path": "data/news/labeled.parquet"}
    assert preset["clean_tokenize"]["max_seq_len"] == "auto" and preset["clean_tokenize"]["max_chars"] < 4000  # the long rows are the top 1%
    assert preset["pretrain"]["threads"] == 1  # the base preset's recipe came along
    assert sorted(p.name for p in (root / "data" / "news" / "corpus" / "part0").iterdir())[:2] == ["doc000.txt", "doc004.md"]
    # Tracked by DVC, pushed, and committed: the working tree is clean, data.dvc is in HEAD.
    status = subprocess.run(["git", "-C", str(root), "status", "--porcelain"], capture_output=True, text=True).stdout
    assert status == "", status
    head = subprocess.run(["git", "-C", str(root), "show", "--stat", "--format=%s", "HEAD"], capture_output=True, text=True).stdout
    assert head.startswith("lmforge data add news") and "data.dvc" in head and "pipelines/configs/news.yaml" in head
    assert any((root / ".dvcstore").rglob("*")), "dvc push left the local remote empty"
    # A second add under the same name is refused with one line, nothing changed.
    again = add(lmforge, user_project)
    assert again.returncode == 2 and again.stderr.strip().splitlines() == [f"error: {root / 'data' / 'news'} already exists: choose another name, or remove it (and its preset) first"]


def test_data_add_refuses_what_it_cannot_read_with_one_line_and_changes_nothing(user_project, lmforge, tmp_path):
    (tmp_path / "corpus.jsonl").write_text('{"body": "a document"}\n')
    (tmp_path / "odd.csv").write_text("headline,kind\nMarkets rally,business\n")
    cases = [
        (
            ["--corpus", str(tmp_path / "corpus.jsonl"), "--labeled", str(user_project["labeled"]), "--text-column", "Text", "--label-column", "Category"],
            "corpus file " + str(tmp_path / "corpus.jsonl") + " has no 'text' column (columns: body): rename its text column to text",
        ),
        (
            ["--corpus", str(user_project["docs"]), "--labeled", str(tmp_path / "odd.csv")],
            "cannot tell which column of " + str(tmp_path / "odd.csv") + " holds the text (columns: headline, kind): name it with --text-column",
        ),
    ]
    for args, line in cases:
        res = lmforge(user_project["root"], "data", "add", "news", *args)
        assert res.returncode == 2 and res.stderr.strip().splitlines() == [f"error: {line}"], res.stderr
    assert not (user_project["root"] / "data").exists() and not (user_project["root"] / "pipelines").exists()


def test_data_add_reads_a_saved_hugging_face_dataset_with_class_names(user_project, lmforge, tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = news_rows()[:90]
    names = ["business", "sport", "tech"]
    features = datasets.Features({"sentence": datasets.Value("string"), "topic": datasets.ClassLabel(names=names)})
    split = lambda part: datasets.Dataset.from_dict({"sentence": [r["Text"] for r in part], "topic": [names.index(r["Category"]) for r in part]}, features=features)  # noqa: E731
    datasets.DatasetDict({"train": split(rows[:60]), "validation": split(rows[60:75]), "test": split(rows[75:])}).save_to_disk(str(tmp_path / "hf"))
    res = lmforge(user_project["root"], "data", "add", "hfnews", "--corpus", str(user_project["docs"]), "--labeled", str(tmp_path / "hf"), "--base-preset", str(user_project["base"]))
    assert res.returncode == 0, res.stderr[-2000:]
    labeled = pd.read_parquet(user_project["root"] / "data" / "hfnews" / "labeled.parquet")
    assert labeled["split"].value_counts().to_dict() == {"train": 60, "validation": 15, "test": 15}
    assert labeled["label"].iloc[0] == "business"  # the ClassLabel's names, not its ids
    preset = yaml.safe_load((user_project["root"] / "pipelines" / "configs" / "hfnews.yaml").read_text())
    assert preset["finetune"]["label_names"] == names


@pytest.mark.slow
def test_own_data_runs_end_to_end_with_no_flags_beyond_the_preset(user_project, lmforge):
    """The Done-when of issue 12: add, then one `lmforge run --config news`; a version of lmforge-news."""
    root = user_project["root"]
    assert add(lmforge, user_project).returncode == 0
    res = lmforge(root, "run", "--config", "news")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "registered model: models:/lmforge-news/1" in res.stdout
    assert "removed from the labeled rows (of 273)" in res.stdout  # every removal counted on the console

    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{root}/mlflow.db")
    version = client.get_model_version("lmforge-news", "1")
    assert version.tags[VALIDATION_TAG] == "passed"  # validation on, derived from this data
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert version.tags[DATA_REV_TAG] == head  # the committed data revision: reproducible
    run = client.get_run(version.run_id)
    assert run.data.metrics["clean/labeled_rows"] == len(news_rows())  # long rows kept, nothing lost
    assert run.data.metrics["clean/labeled_long_rows"] >= LONG
    # The served model speaks the dataset's class names.
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
    try:
        model = mlflow.pyfunc.load_model("models:/lmforge-news/1")
    finally:
        mlflow.set_tracking_uri(previous)
    predicted = model.predict(pd.DataFrame({"text": ["the match and the goal in the league", "the market and the bank"]}))
    assert len(predicted) == 2 and set(predicted["label"]) <= {"business", "sport", "tech"}, predicted
