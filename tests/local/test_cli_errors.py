"""Bad input through the real CLI: one clear line, a non-zero exit, nothing registered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from components.shared.tracking import STAGE_TAG


def run_cli(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LMFORGE_PROJECT_DIR": str(project), "MLFLOW_TRACKING_URI": f"sqlite:///{project}/mlflow.db"}
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True, env=env, timeout=600)


def error_lines(res: subprocess.CompletedProcess) -> list[str]:
    return [line for line in res.stderr.splitlines() if line.startswith("error:")]


def registered_versions(project: Path) -> int:
    if not (project / "mlflow.db").exists():
        return 0
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{project}/mlflow.db")
    return len(client.search_model_versions())


@pytest.fixture
def files(tmp_path: Path) -> dict:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": str(i), "text": f"Document {i} tells the history of town {i}. " * 20}) + "\n" for i in range(5)))
    labeled = tmp_path / "labeled.csv"
    labeled.write_text("id,text,label\n1,a fine film,1\n2,a dull film,0\n3,a great film,1\n")
    return {"corpus": corpus, "labeled": labeled}


def path_args(corpus: Path, labeled: Path) -> list[str]:
    return ["run", "--config", "tiny", "--set", "ingest.source=path", "--set", f"ingest.corpus_path={corpus}", "--set", f"ingest.labeled_path={labeled}"]


def test_unknown_config_key_fails_before_anything_runs(tmp_path):
    res = run_cli(tmp_path, "run", "--config", "tiny", "--set", "pretrain.max_stepz=5")
    assert res.returncode == 2
    assert error_lines(res) == ["error: unknown config key 'pretrain.max_stepz': check the spelling against the preset (lmforge config show)"]
    assert not (tmp_path / "local_outputs").exists() and not (tmp_path / "mlflow.db").exists()


def _missing_path(tmp, files):
    return path_args(tmp / "nope.jsonl", files["labeled"]), ("ingest: data file not found", "nope.jsonl", "ingest.corpus_path")


def _empty_corpus(tmp, files):
    empty = tmp / "empty.jsonl"
    empty.write_text(json.dumps({"id": "1", "text": "  "}) + "\n")
    return path_args(empty, files["labeled"]), ("has no documents", "empty.jsonl")


def _labeled_without_label_column(tmp, files):
    unlabeled = tmp / "unlabeled.csv"
    unlabeled.write_text("id,text\n1,a fine film\n2,a dull film\n")
    return path_args(files["corpus"], unlabeled), ("has no 'label' column", "ingest.label_column")


@pytest.mark.slow
@pytest.mark.parametrize("case", [_missing_path, _empty_corpus, _labeled_without_label_column], ids=lambda f: f.__name__.strip("_"))
def test_bad_data_is_one_line_and_registers_nothing(case, tmp_path, files):
    args, needles = case(tmp_path, files)
    res = run_cli(tmp_path, *args)
    assert res.returncode != 0
    [line] = error_lines(res)
    assert all(n in line for n in needles), line
    assert registered_versions(tmp_path) == 0


@pytest.mark.slow
def test_failed_validation_stops_the_run_and_keeps_the_data_docs(tmp_path, files):
    # Three labeled rows cannot fill three splits: the labeled suite fails, training never starts.
    res = run_cli(tmp_path, *path_args(files["corpus"], files["labeled"]))
    assert res.returncode != 0
    [line] = error_lines(res)
    assert line.startswith("error: validate: data validation failed: labeled:") and "Data Docs" in line
    assert registered_versions(tmp_path) == 0
    assert list((tmp_path / "local_outputs").rglob("data_docs/index.html")), "the Data Docs are kept on failure"
    assert not list((tmp_path / "local_outputs").rglob("pretrain-op/pretrained/config.json"))
    # The failed run ends FAILED in MLflow (not FINISHED by a stage's logging), and so does the
    # failed stage's own run, nested under it.
    import mlflow
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("lmforge").experiment_id])
    [parent] = [r for r in runs if r.data.tags.get(STAGE_TAG) == "pipeline"]
    stages = {r.data.tags[STAGE_TAG]: r for r in runs if r.data.tags.get(MLFLOW_PARENT_RUN_ID) == parent.info.run_id}
    assert parent.info.status == "FAILED"
    assert stages["validate"].info.status == "FAILED" and stages["ingest"].info.status == "FINISHED"


def test_unreachable_tracking_server_is_one_line_with_no_secret(tmp_path):
    env_uri = "http://someone:hunter2@127.0.0.1:9"  # nothing listens on the discard port
    env = {**os.environ, "LMFORGE_PROJECT_DIR": str(tmp_path), "MLFLOW_TRACKING_URI": env_uri, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    res = subprocess.run([sys.executable, "-m", "pipelines.cli", "run", "--config", "tiny"], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 2
    assert error_lines(res) == ["error: MLflow tracking at http://***@127.0.0.1:9 failed (unreachable): start the server, or unset MLFLOW_TRACKING_URI for the local sqlite store"]
    assert "hunter2" not in res.stdout + res.stderr
    assert not (tmp_path / "local_outputs").exists()
