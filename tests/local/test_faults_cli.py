"""Faults around a whole `lmforge run`, through the real CLI: the tracking server dies during a
stage, the run is interrupted. One line, a bounded exit, and an MLflow record that does not lie."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow_server import start_mlflow_server, stop_mlflow_server

from components.shared.tracking import STAGE_TAG

PLANTED = "planted-s3cret-9f2c"  # a password no output may contain


def path_args(files: dict) -> list[str]:
    return ["run", "--config", "tiny", "--set", "ingest.source=path", "--set", f"ingest.corpus_path={files['corpus']}", "--set", f"ingest.labeled_path={files['labeled']}"]


def start_cli(project: Path, args: list[str], uri: str, fault_at: str, signal_file: Path) -> subprocess.Popen:
    env = {**os.environ, "LMFORGE_PROJECT_DIR": str(project), "MLFLOW_TRACKING_URI": uri, "LMFORGE_FAULT_AT": fault_at, "LMFORGE_FAULT_FILE": str(signal_file)}
    # SIGINT as a terminal leaves it: a shell's background job (`make test &`) ignores SIGINT, and an
    # ignored SIGINT is inherited, so the run would never see the Ctrl-C the test sends.
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def wait_for(signal_file: Path, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 300
    while not signal_file.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert signal_file.exists(), proc.communicate()[1][-3000:]


@pytest.mark.slow  # real servers started and killed: a minute or more on 2 cores
def test_server_killed_during_a_stage_is_one_line_and_exit_2(text_files, tmp_path):
    files = {"corpus": text_files / "corpus.jsonl", "labeled": text_files / "labeled.csv"}
    server = start_mlflow_server(tmp_path / "server")
    uri = server.url.replace("http://", f"http://lmforge:{PLANTED}@")  # the server ignores the credentials
    signal_file = tmp_path / "fault"
    try:
        proc = start_cli(tmp_path / "project", path_args(files), uri, "ingest.log", signal_file)
        wait_for(signal_file, proc)
        os.killpg(server.process.pid, signal.SIGKILL)  # during ingest, before it logs
        server.process.wait(timeout=30)
        signal_file.unlink()
        start = time.monotonic()
        out, err = proc.communicate(timeout=300)
        assert time.monotonic() - start < 90  # bounded retries, once; the failure path asks no more
    finally:
        stop_mlflow_server(server)
    assert proc.returncode == 2, err[-3000:]
    assert "Traceback" not in out + err and "MlflowException" not in out + err
    shown = server.url.replace("http://", "http://***@")
    assert [line for line in err.splitlines() if line.strip()] == [
        f"error: ingest: MLflow tracking at {shown} failed (unreachable): start the server, or unset MLFLOW_TRACKING_URI for the local sqlite store"
    ]
    logs = list((tmp_path / "project" / "local_outputs" / "logs").glob("*.log"))
    assert logs and all(PLANTED not in f.read_text() for f in logs) and PLANTED not in out + err


@pytest.mark.slow  # real servers started and killed: a minute or more on 2 cores
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted_run_ends_killed_in_mlflow(text_files, tmp_path, signum):
    import mlflow

    files = {"corpus": text_files / "corpus.jsonl", "labeled": text_files / "labeled.csv"}
    project, signal_file = tmp_path / "project", tmp_path / "fault"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = start_cli(project, path_args(files), uri, "clean_tokenize.log", signal_file)
    wait_for(signal_file, proc)
    os.killpg(proc.pid, signum)  # to the CLI and its task alike, as a terminal or a container stop sends it
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("lmforge").experiment_id])
    [parent] = [r for r in runs if r.data.tags.get(STAGE_TAG) == "pipeline"]
    assert parent.info.status == "KILLED"
    assert {r.data.tags[STAGE_TAG]: r.info.status for r in runs if r is not parent} == {"ingest": "FINISHED"}
