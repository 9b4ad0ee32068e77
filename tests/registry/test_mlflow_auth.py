"""MLflow's basic-auth app as infra/ runs it, on 127.0.0.1: the setup script's pipeline user can
move aliases (recorded) but cannot delete its own history; without credentials nothing is read."""

from __future__ import annotations

import urllib.error
import urllib.request

import mlflow
import pytest
from mlflow_server import start_mlflow_server, stop_mlflow_server

from components.shared import audit_ledger, registry
from components.shared.lineage import GATE_TAG
from pipelines.mlflow_auth_setup import setup

MODEL = "lmforge-auth-test"


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    server = start_mlflow_server(tmp_path_factory.mktemp("mlflow-auth"), admin_password="admin-pw-for-tests-only")
    yield server.url
    stop_mlflow_server(server)


def as_user(monkeypatch, url: str, user: str, password: str) -> mlflow.MlflowClient:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    return mlflow.MlflowClient(url)


def test_pipeline_user_moves_aliases_but_cannot_hide_the_history(auth_server, monkeypatch, tmp_path):
    monkeypatch.setenv("LMFORGE_PROJECT_DIR", str(tmp_path))
    admin = as_user(monkeypatch, auth_server, "admin", "admin-pw-for-tests-only")
    granted = setup(auth_server, "lmforge-pipeline", "pipeline-password-for-tests", [MODEL])
    assert set(granted.values()) == {"EDIT", "READ", "MANAGE"} and granted[f"registered_model:{MODEL}"] == "MANAGE"
    exp = admin.get_experiment_by_name(audit_ledger.AUDIT_EXPERIMENT)  # what the pipeline user will log versions under
    run = admin.create_run(exp.experiment_id)
    versions = [admin.create_model_version(MODEL, f"{run.info.artifact_uri}/model", run_id=run.info.run_id, tags={GATE_TAG: "passed"}).version for _ in range(2)]

    pipeline = as_user(monkeypatch, auth_server, "lmforge-pipeline", "pipeline-password-for-tests")
    registry.promote(MODEL, versions[0])
    registry.promote(MODEL, versions[1])
    assert registry.rollback(MODEL)["to_version"] == str(versions[0])
    ledger = audit_ledger.ledger_run_id(pipeline, MODEL, create=False)
    for hide in (lambda: pipeline.delete_run(ledger), lambda: pipeline.delete_experiment(exp.experiment_id),
                 lambda: pipeline.delete_experiment_tag(pipeline.get_experiment_by_name(audit_ledger.pointer_name(MODEL)).experiment_id, audit_ledger.LEDGER_TAG)):  # fmt: skip
        with pytest.raises(mlflow.exceptions.MlflowException, match="PERMISSION_DENIED|Permission denied"):
            hide()
    records, problems = registry.audit(MODEL)
    assert [r["seq"] for r in records] == [1, 2, 3] and problems == []

    with pytest.raises(mlflow.exceptions.MlflowException, match="401 != 200.*You are not authenticated"):
        as_user(monkeypatch, auth_server, "lmforge-pipeline", "a-wrong-password").get_registered_model(MODEL)
    request = urllib.request.Request(f"{auth_server}/api/2.0/mlflow/registered-models/get?name={MODEL}")
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(request, timeout=30)
    assert denied.value.code == 401, "no credentials, no registry"
