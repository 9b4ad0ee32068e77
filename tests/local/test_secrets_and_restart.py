"""A whole run against a real `mlflow server` with credentials planted in the environment, killed
with kill -9 during fine-tuning and run again: the restart says so and registers one version,
and no console line, log, output file, MLflow artifact, param or tag holds any planted secret."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow_server import start_mlflow_server, stop_mlflow_server

from components.shared import tracking

# One secret per way a credential reaches the process: the tracking URI's password, MLflow's own
# password variable, a token, an object-store key.
SECRETS = {"uri": "uri-s3cret-71b4", "MLFLOW_TRACKING_PASSWORD": "env-s3cret-0d9a", "KFP_TOKEN": "tok-s3cret-5e21", "AWS_SECRET_ACCESS_KEY": "aws-s3cret-c3f8"}
MODEL, RUN = "lmforge-secrets", "lmforge-tiny-secrets-restart"


def leaks(folder: Path) -> tuple[int, list[str]]:
    """(files searched, files whose bytes hold a planted secret) under `folder`: sqlite stores
    (params, tags), artifacts, logs and task outputs alike."""
    needles = [s.encode() for s in SECRETS.values()]
    files = [f for f in folder.rglob("*") if f.is_file()]
    return len(files), [str(f) for f in files if any(n in f.read_bytes() for n in needles)]


@pytest.mark.network
@pytest.mark.slow
def test_no_planted_secret_anywhere_and_a_killed_finetune_restarts(demo_project, tmp_path):
    import mlflow

    project = tmp_path / "project"
    shutil.copytree(demo_project, project, ignore=shutil.ignore_patterns("mlflow.db", "mlruns", "local_outputs"))
    server = start_mlflow_server(tmp_path / "server")
    uri = server.url.replace("http://", f"http://lmforge:{SECRETS['uri']}@")  # the server ignores the credentials
    env = {**os.environ, "LMFORGE_PROJECT_DIR": str(project), "MLFLOW_TRACKING_URI": uri, "MLFLOW_TRACKING_USERNAME": "lmforge"}
    env |= {k: v for k, v in SECRETS.items() if k != "uri"}
    args = [sys.executable, "-m", "pipelines.cli", "run", "--config", "tiny", "--run-name", RUN, "--set", f"register.model_name={MODEL}"]
    try:
        first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
        markers = project / "local_outputs" / "checkpoints"
        deadline = time.monotonic() + 900
        while not list(markers.glob("finetune-*.attempt.json")) and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(first.pid, signal.SIGKILL)  # the CLI and its fine-tuning task, mid-training
        first_out = first.communicate(timeout=60)[0]
        assert first.returncode == -signal.SIGKILL, first_out[-3000:]
        client = mlflow.MlflowClient(server.url)
        [parent] = client.search_runs([client.get_experiment_by_name("lmforge").experiment_id], f"tags.`{tracking.STAGE_TAG}` = 'pipeline'")
        assert parent.info.status == "RUNNING"  # not FINISHED: no stage closed it
        assert client.search_model_versions(f"name = '{MODEL}'") == []

        second = subprocess.run(args, capture_output=True, text=True, env=env, timeout=900)
        assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
        assert "[finetune] restarting: an earlier attempt on the same data and config" in second.stdout
        assert f"marked 1 pipeline run(s) KILLED whose process had died without ending them (kill -9, a crash): {RUN}" in second.stdout
        assert f"registered model: models:/{MODEL}/1 (alias @challenger" in second.stdout
        assert client.get_run(parent.info.run_id).info.status == "FINISHED"  # the same parent run, now complete
        assert len(client.search_model_versions(f"name = '{MODEL}'")) == 1
        assert "View run" not in first_out + second.stdout + second.stderr  # MLflow's run links are off
    finally:
        stop_mlflow_server(server)
    for secret in SECRETS.values():
        assert secret not in first_out + second.stdout + second.stderr
    assert list((project / "local_outputs" / "logs").glob("*.log")), "the run logs are there to be searched"
    (n_project, in_project), (n_server, in_server) = leaks(project), leaks(tmp_path / "server")
    print(f"secrets planted: {len(SECRETS)}; files searched: {n_project} in the project, {n_server} in the server's store and artifacts; found: {len(in_project) + len(in_server)}")
    assert n_server > 20 and in_project == [] and in_server == []
