"""A whole kfp.local run of the `tiny` preset on the real demo data, read through DVC at a git rev."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from components.shared.lineage import (
    CONFIG_HASH_TAG,
    DATA_MD5_TAG,
    DATA_REV_TAG,
    GIT_COMMIT_TAG,
    GIT_DIRTY_TAG,
    PIPELINE_RUN_NAME_TAG,
    TOKENIZER_HASH_TAG,
    image_tag,
)
from components.shared.tracking import STAGE_TAG

REPO = Path(__file__).resolve().parents[2]
LINEAGE_TAGS = [
    GIT_COMMIT_TAG,
    GIT_DIRTY_TAG,
    DATA_REV_TAG,
    DATA_MD5_TAG,
    CONFIG_HASH_TAG,
    TOKENIZER_HASH_TAG,
    PIPELINE_RUN_NAME_TAG,
    image_tag("cpu"),
    image_tag("train"),
]


@pytest.mark.network
@pytest.mark.slow
def test_tiny_pipeline_registers_a_challenger_with_full_lineage(demo_project, lmforge):
    res = lmforge(demo_project, "run", "--config", "tiny")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "registered model: models:/lmforge-sentiment/1 (alias @challenger and @champion)" in res.stdout
    for stage in ("ingest", "clean_tokenize", "validate", "pretrain", "finetune", "evaluate", "register"):
        assert f"\n  {stage} " in res.stdout, f"summary lacks the time of {stage}"
    assert "[pretrain] step 20/20" in res.stdout  # progress reaches the console

    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{demo_project}/mlflow.db")
    model = client.get_registered_model("lmforge-sentiment")
    assert model.aliases == {"challenger": 1, "champion": 1}  # the first passing model: auto-promoted
    tags = client.get_model_version("lmforge-sentiment", "1").tags
    assert all(tags.get(t) for t in LINEAGE_TAGS), {t: tags.get(t) for t in LINEAGE_TAGS}
    head = subprocess.run(["git", "-C", str(demo_project), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert tags[DATA_REV_TAG] == head
    assert tags[DATA_MD5_TAG] == yaml.safe_load((demo_project / "data.dvc").read_text())["outs"][0]["md5"]
    assert tags[GIT_COMMIT_TAG] == subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()

    # One MLflow run for the pipeline, a nested run per stage, the resolved config beside them.
    run = client.get_run(client.get_model_version("lmforge-sentiment", "1").run_id)
    assert run.info.status == "FINISHED" and run.data.metrics["eval/accuracy"] > 0
    children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    assert {c.data.tags[STAGE_TAG] for c in children} == {"ingest", "clean_tokenize", "validate", "pretrain", "finetune", "evaluate", "register"}
    assert "config.yaml" in {a.path for a in client.list_artifacts(run.info.run_id)}
    stage_runs = {c.data.tags[STAGE_TAG]: c.info.run_id for c in children}
    assert "evaluate/confusion_matrix.png" in {a.path for a in client.list_artifacts(stage_runs["evaluate"], "evaluate")}
    assert "pretrain/loss_curve.png" in {a.path for a in client.list_artifacts(stage_runs["pretrain"], "pretrain")}
    assert "validate/data_docs/index.html" in {a.path for a in client.list_artifacts(stage_runs["validate"], "validate/data_docs")}
    assert len(client.get_metric_history(stage_runs["pretrain"], "pretrain/loss")) == 20  # the loss curve, per step
    # Artifacts of a local sqlite store live in the project, not wherever the command ran.
    assert client.get_experiment(run.info.experiment_id).artifact_location.startswith((demo_project / "mlruns").as_uri())
