"""Shared fixtures: a tiny real corpus and labeled set, and the stage chain run once on them.

The chain (ingest -> clean_tokenize -> validate -> pretrain -> finetune -> evaluate) is built by
session-scoped fixtures, so every unit test reads the same real artifacts and the expensive
steps run once per session (about ten seconds on 2 CPU cores, validate and its GX import included).
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from tiny_data import CLEAN, CORPUS_FILE, EVALUATE, FINETUNE, LABELED_FILE, PRETRAIN, corpus_documents, labeled_sentences, path_config, write_text_files  # noqa: F401 (tests import them too)

# Set before any test module imports transformers, huggingface_hub, mlflow or dvc: several of
# them read these once, at import time.
ENV = {
    "HF_HUB_OFFLINE": "1",  # a hub name fails fast instead of stalling on the network
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
    "TOKENIZERS_PARALLELISM": "false",  # two xdist workers already hold the two cores (settings sets true)
    "GX_ANALYTICS_ENABLED": "false",
    # CI machines have no git identity; the DVC fixtures commit.
    "GIT_AUTHOR_NAME": "LMForge Tests",
    "GIT_AUTHOR_EMAIL": "tests@lmforge.invalid",
    "GIT_COMMITTER_NAME": "LMForge Tests",
    "GIT_COMMITTER_EMAIL": "tests@lmforge.invalid",
}
os.environ.update(ENV)
# Checkpoints, fine-tuning attempt markers and owner locks go to the project folder (by default the
# checkout): each test process gets its own, so two xdist workers training the same tiny fixture
# never meet on one checkpoint lock, and a developer's real runs never meet the tests'.
# xdist workers inherit the controller's environment: the marker tells them to make their own.
if "LMFORGE_PROJECT_DIR" not in os.environ or os.environ.get("LMFORGE_TEST_PROJECT_PID") not in (None, str(os.getpid())):
    os.environ["LMFORGE_PROJECT_DIR"] = tempfile.mkdtemp(prefix="lmforge-test-project-")
    os.environ["LMFORGE_TEST_PROJECT_PID"] = str(os.getpid())
    atexit.register(shutil.rmtree, os.environ["LMFORGE_PROJECT_DIR"], ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _environment():
    """The test environment, once per session (also applied at import, before the libraries load)."""
    os.environ.update(ENV)
    yield


# --- the chain ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def text_files(tmp_path_factory) -> Path:
    """A folder with corpus.jsonl (40 documents) and labeled.csv (400 sentences)."""
    return write_text_files(tmp_path_factory.mktemp("text"), corpus_documents(), labeled_sentences())


@pytest.fixture(scope="session")
def raw_dir(text_files, tmp_path_factory) -> Path:
    from components.ingest.ingest import ingest

    out = tmp_path_factory.mktemp("chain") / "raw"
    ingest(out, path_config(text_files))
    return out


@pytest.fixture(scope="session")
def cleaned_dir(raw_dir) -> Path:
    from components.clean_tokenize.clean_tokenize import CleanTokenizeConfig, clean_tokenize

    out = raw_dir.parent / "cleaned"
    clean_tokenize(raw_dir, out, CleanTokenizeConfig.from_params(CLEAN, "clean_tokenize"))
    return out


@pytest.fixture(scope="session")
def clm_cleaned_dir(raw_dir) -> Path:
    """The same data packed for the causal-LM objective: no [CLS], [SEP] between documents."""
    from components.clean_tokenize.clean_tokenize import CleanTokenizeConfig, clean_tokenize

    out = raw_dir.parent / "cleaned-clm"
    clean_tokenize(raw_dir, out, CleanTokenizeConfig.from_params({**CLEAN, "objective": "causal_lm"}, "clean_tokenize"))
    return out


@pytest.fixture(scope="session")
def validation_dir(cleaned_dir) -> Path:
    from components.validate.validate import ValidateConfig, validate

    out = cleaned_dir.parent / "validation"
    validate(cleaned_dir, out, ValidateConfig.from_params({"min_doc_chars": CLEAN["min_doc_chars"]}, "validate"))
    return out


@pytest.fixture(scope="session")
def mlm_dir(cleaned_dir) -> Path:
    from components.pretrain.pretrain import PretrainConfig, pretrain

    out = cleaned_dir.parent / "mlm"
    pretrain(cleaned_dir, out, PretrainConfig.from_params(PRETRAIN, "pretrain"))
    return out


@pytest.fixture(scope="session")
def classifier_dir(cleaned_dir, mlm_dir) -> Path:
    from components.finetune.finetune import FinetuneConfig, finetune

    out = cleaned_dir.parent / "classifier"
    finetune(cleaned_dir, mlm_dir, out, FinetuneConfig.from_params(FINETUNE, "finetune"))
    return out


@pytest.fixture(scope="session")
def eval_dir(cleaned_dir, mlm_dir, classifier_dir) -> Path:
    from components.evaluate.evaluate import EvaluateConfig, evaluate

    out = cleaned_dir.parent / "evaluation"
    evaluate(cleaned_dir, mlm_dir, classifier_dir, out, EvaluateConfig.from_params(EVALUATE, "evaluate"))
    return out


# --- DVC and MLflow -------------------------------------------------------------------------


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def dvc(repo: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, check=True, capture_output=True, text=True)


@pytest.fixture(scope="session")
def dvc_repo(text_files, tmp_path_factory) -> dict:
    """A real git + DVC repo whose `data/` changed after the first commit.

    Commit 1 tracks copies of the session's `text_files`; commit 2 drops documents and sentences
    and edits a sentence. The working copy is at commit 2. Returns the repo, both full shas, and
    the rows of each version.
    """
    repo = tmp_path_factory.mktemp("datarepo")
    git(repo, "init", "-q")
    dvc(repo, "init", "-q")
    (repo / "data").mkdir()
    for name in (CORPUS_FILE, LABELED_FILE):
        shutil.copyfile(text_files / name, repo / "data" / name)
    dvc(repo, "add", "-q", "data")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "data v1")
    first = git(repo, "rev-parse", "HEAD")

    docs, rows = corpus_documents(), labeled_sentences()
    docs2, rows2 = docs[:25], [dict(r) for r in rows[:300]]
    rows2[0]["text"] = "This sentence only exists in the second version of the data."
    write_text_files(repo / "data", docs2, rows2)
    dvc(repo, "add", "-q", "data")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "data v2")
    second = git(repo, "rev-parse", "HEAD")
    return {"repo": repo, "first": first, "second": second, "v1": (docs, rows), "v2": (docs2, rows2)}


@pytest.fixture
def tracking_uri(tmp_path, monkeypatch) -> str:
    """A fresh sqlite MLflow store for one test; artifacts land beside it (settings.artifact_location)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("LMFORGE_PROJECT_DIR", str(tmp_path))
    yield uri
    import mlflow

    while mlflow.active_run():  # a failing test must not leave a run open for the next one
        mlflow.end_run("FAILED")


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """URL of a real `mlflow server` on 127.0.0.1 (sqlite store, artifact folder in a tmp dir),
    shared by the session's tests that need HTTP behaviour."""
    from mlflow_server import start_mlflow_server, stop_mlflow_server

    server = start_mlflow_server(tmp_path_factory.mktemp("mlflow-server"))
    yield server.url
    stop_mlflow_server(server)
