"""Registry fixtures: every test runs against a fresh sqlite store AND a real `mlflow server`.

Both stores live for the session: the server (tests/mlflow_server.py, fixture in tests/conftest.py) starts on first
use with its own sqlite store and artifact folder, the sqlite store is one file in a tmp dir.
Each test uses a model name of its own, so tests never see each other's versions.
"""

from __future__ import annotations

import hashlib

import pytest

from components.shared.lineage import DATA_REV_TAG, GATE_SUMMARY_TAG, GATE_TAG, PIPELINE_RUN_NAME_TAG

TEST_EXPERIMENT = "lmforge-registry-tests"


@pytest.fixture(scope="session")
def sqlite_store(tmp_path_factory) -> str:
    """One sqlite store for the session's sqlite-backed tests (creating its tables takes seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow-sqlite') / 'mlflow.db'}"


@pytest.fixture(params=["sqlite", "server"])
def backend(request, tmp_path, monkeypatch) -> str:
    """MLFLOW_TRACKING_URI for one test: the session's sqlite file, or its real HTTP server."""
    uri = request.getfixturevalue("sqlite_store" if request.param == "sqlite" else "mlflow_server")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("LMFORGE_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("LMFORGE_ACTOR", "tester@ci")
    yield uri
    import mlflow

    while mlflow.active_run():
        mlflow.end_run("FAILED")


@pytest.fixture
def model_name(request) -> str:
    """A registered model name unique to this test (the server's store is shared by the session)."""
    return "lmforge-test-" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:10]


@pytest.fixture
def make_version(backend, model_name):
    """make_version(gate=..., summary=..., **metrics) -> version: a real registered model version
    whose source is a tiny artifact logged to a real run, tagged as the register stage tags it."""
    import mlflow

    from components.shared import settings

    client = mlflow.MlflowClient(backend)

    def make(gate: str | None = "passed", summary: str = "", accuracy: float = 0.75, data_rev: str = "0123456789abcdef", **metrics) -> str:
        exp = client.get_experiment_by_name(TEST_EXPERIMENT)
        exp_id = exp.experiment_id if exp else client.create_experiment(TEST_EXPERIMENT, artifact_location=settings.artifact_location())
        run = client.create_run(exp_id, run_name="register")
        client.log_text(run.info.run_id, "a tiny stand-in for the logged classifier", "model/README.txt")
        try:
            client.get_registered_model(model_name)
        except mlflow.exceptions.MlflowException:
            client.create_registered_model(model_name)
        tags = {"metric.accuracy": f"{accuracy:.6f}", DATA_REV_TAG: data_rev, PIPELINE_RUN_NAME_TAG: f"lmforge-tiny-{run.info.run_id[:6]}"}
        tags |= {f"metric.{k}": f"{v:.6f}" for k, v in metrics.items()}
        if gate is not None:
            tags[GATE_TAG] = gate
        if summary:
            tags[GATE_SUMMARY_TAG] = summary
        version = client.create_model_version(model_name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id, tags=tags)
        client.set_terminated(run.info.run_id)
        return str(version.version)

    return make
