"""The regression task through the real CLI (issue 11's Done-when for `finetune.task:
regression`): a git + DVC project holding the tiny texts with a `score` column, one `lmforge run`
with the task set, a registered version of its own model with lineage, a gate with intervals, a
scatter plot in MLflow, a card that says regression, and `lmforge reproduce` exact on the CPU."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from tiny_data import corpus_documents, scored_sentences

from components.shared.lineage import (
    CONFIG_HASH_TAG,
    DATA_MD5_TAG,
    DATA_REV_TAG,
    GATE_TAG,
    GIT_COMMIT_TAG,
    PIPELINE_RUN_NAME_TAG,
    TOKENIZER_HASH_TAG,
    VALIDATION_TAG,
    WEIGHTS_SHA256_TAG,
    git_state,
)
from components.shared.tracking import STAGE_TAG

REPO = Path(__file__).resolve().parents[2]
MODEL = "lmforge-sentiment-intensity"
ALLOW_DIRTY = ["--allow-dirty"] if git_state(REPO)["git_dirty"] else []  # as in test_promotion_flow.py
LINEAGE_TAGS = [GIT_COMMIT_TAG, DATA_REV_TAG, DATA_MD5_TAG, CONFIG_HASH_TAG, TOKENIZER_HASH_TAG, PIPELINE_RUN_NAME_TAG, WEIGHTS_SHA256_TAG]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def regression_project(tmp_path) -> Path:
    """data/ (40 documents, 400 scored sentences) tracked by DVC and committed, and a preset: the
    tiny one with finetune.task regression on the score column, one torch thread."""
    root = tmp_path / "project"
    root.mkdir()
    git(root, "init", "-q")
    (root / ".dvc").mkdir()
    for name in (".dvc/config", ".dvc/.gitignore", ".dvcignore"):
        shutil.copy(REPO / name, root / name)
    (root / ".gitignore").write_text("/data/\n/.dvcstore/\n/mlflow.db\n/mlruns/\n/local_outputs/\n")
    (root / "data" / "corpus").mkdir(parents=True)
    (root / "data" / "labeled").mkdir()
    with (root / "data" / "corpus" / "enwiki.jsonl").open("w") as f:
        for doc in corpus_documents(40):
            f.write(json.dumps(doc) + "\n")
    pd.DataFrame(scored_sentences(400), columns=["id", "text", "score", "label", "split"]).to_csv(root / "data" / "labeled" / "rt_sentences.csv", index=False)
    subprocess.run([sys.executable, "-m", "dvc", "add", "-q", "data"], cwd=root, check=True, env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    preset = yaml.safe_load((REPO / "pipelines" / "configs" / "tiny.yaml").read_text())
    preset["description"] = "tiny, as a regression"
    preset["ingest"] = {**preset["ingest"], "label_column": "score"}
    preset["finetune"] = {**preset["finetune"], "task": "regression", "max_steps": 40, "batch_size": 16, "learning_rates": [2e-3]}
    preset["register"] = {**preset["register"], "model_name": MODEL}
    for stage in ("pretrain", "finetune", "evaluate"):
        preset[stage]["threads"] = 1
    (root / "pipelines" / "configs").mkdir(parents=True)
    (root / "pipelines" / "configs" / "tiny-regression.yaml").write_text(yaml.safe_dump(preset))
    git(root, "add", "-A")
    git(root, "commit", "-qm", "scored sentences")
    return root


def check(res) -> str:
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout


@pytest.mark.slow
def test_a_regression_run_registers_its_own_model_with_a_gate_and_reproduces_exactly(regression_project, lmforge, tmp_path):
    import mlflow

    root = regression_project
    out = check(lmforge(root, "run", "--config", "tiny-regression"))
    assert f"registered model: models:/{MODEL}/1" in out
    assert "validation RMSE" in out and "Pearson" in out  # finetune selects on validation RMSE
    assert "gate passed" in out or "gate failed" in out

    client = mlflow.MlflowClient(f"sqlite:///{root}/mlflow.db")
    version = client.get_model_version(MODEL, "1")
    tags = version.tags
    assert all(tags.get(t) for t in LINEAGE_TAGS), {t: tags.get(t) for t in LINEAGE_TAGS}
    assert tags[DATA_REV_TAG] == git(root, "rev-parse", "HEAD") and tags[VALIDATION_TAG] == "passed"
    assert tags[GATE_TAG] in ("passed", "failed") and float(tags["metric.rmse"]) > 0 and "metric.pearson" in tags

    gate = json.loads(Path(client.download_artifacts(version.run_id, "evaluate/gate.json", str(tmp_path))).read_text())
    assert gate["passed"] == (tags[GATE_TAG] == "passed") and gate["baseline"]["title"] == "train-mean baseline"
    for key in ("vs_mean", "vs_ridge", "vs_control"):
        for metric in ("pearson", "spearman", "rmse"):
            block = gate[key][metric]
            assert block["low"] <= block["diff"] <= block["high"], (key, metric, block)
    assert gate["vs_mean"]["pearson"]["other"] == 0.0  # the train mean has no correlation
    report = json.loads(Path(client.download_artifacts(version.run_id, "evaluate/eval.json", str(tmp_path))).read_text())
    assert report["baseline_ridge_params"]["candidates"] and "confusion_matrix" not in report
    assert report["pearson"] > 0.5, report  # the tiny targets are learnable: a 1-layer model ranks them

    run = client.get_run(version.run_id)
    children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    evaluate_run = next(c for c in children if c.data.tags[STAGE_TAG] == "evaluate")
    logged = {a.path for a in client.list_artifacts(evaluate_run.info.run_id, "evaluate")}
    assert "evaluate/scatter.png" in logged and "evaluate/report.html" in logged and "evaluate/confusion_matrix.png" not in logged
    card = version.description
    assert card.startswith(f"# {MODEL} version 1") and "Sentiment intensity" in card and "regression head" in card
    assert "| pearson |" in card and "| rmse |" in card and "train-mean baseline" in card

    # The served model returns the predicted number.
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
    try:
        served = mlflow.pyfunc.load_model(f"models:/{MODEL}/1").predict(pd.DataFrame({"text": ["A wonderful, superb and brilliant film.", "A dull, awful and tedious movie."]}))
    finally:
        mlflow.set_tracking_uri(previous)
    assert list(served["label"]) == ["score", "score"] and served["score"].iloc[0] > served["score"].iloc[1], served

    listing = check(lmforge(root, "models", "list", MODEL))
    assert "Pearson" in listing.splitlines()[0] and f"{float(tags['metric.pearson']):.4f}" in listing

    out = check(lmforge(root, "reproduce", f"{MODEL}/1", *ALLOW_DIRTY))
    assert f"{MODEL}/1 reproduced exactly" in out and "<- differs" not in out
    assert len(client.search_model_versions(f"name = '{MODEL}'")) == 1  # a rebuild registers nothing
