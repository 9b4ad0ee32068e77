"""The tracking server dies inside `register`, at each point between creating a version and
completing it: one line and exit 2 each time, nothing half-registered that any command would
use, and the next attempt of the same pipeline run completes the version.

The server is a real `mlflow server` on 127.0.0.1, killed (SIGKILL, its whole process group)
while the register stage, in a child process as kfp.local runs it, waits at a fault point
(settings.fault_point) in the real code; then started again on the same store.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow_server import start_mlflow_server, stop_mlflow_server

from components.shared import registry

MODEL, RUN = "lmforge-fault-test", "lmforge-tiny-20260101-000000-fault"
LINEAGE = {"git_commit": "0" * 40, "git_dirty": False, "config_hash": "c" * 16, "preset": "tiny"}
# What the register component does (components/register/component.py), as a child process.
STAGE = """
import json, sys
from pathlib import Path
from kfp import dsl
from components.register.register import RegisterConfig, register
from components.shared.reporting import stage_task
a = json.loads(sys.argv[1])
metrics = dsl.Metrics(name="metrics", uri=a["metrics"], metadata={})
with stage_task("register", a["run"], metrics, a["config"]) as task:
    paths = [Path(a[k]) for k in ("classifier", "eval", "raw", "cleaned", "validation", "out")]
    task.metrics = register(*paths, RegisterConfig.from_params(a["config"], "register"), a["run"], a["lineage"])
"""
KILL_POINTS = ["register.version_created", "register.card_written", "register.alias_moved"]


def run_stage(server, paths: dict, tmp: Path, kill_at: str | None) -> tuple[subprocess.CompletedProcess, str]:
    """The register stage against `server`; with `kill_at`, the server is SIGKILLed there."""
    error_file, signal_file = tmp / f"error-{kill_at}.txt", tmp / f"fault-{kill_at}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": server.url, "LMFORGE_ERROR_FILE": str(error_file), "LMFORGE_ACTOR": "tester@ci"}
    if kill_at:
        env |= {"LMFORGE_FAULT_AT": kill_at, "LMFORGE_FAULT_FILE": str(signal_file)}
    args = {**paths, "out": str(tmp / f"registration-{kill_at}"), "metrics": str(tmp / f"metrics-{kill_at}"), "run": RUN, "config": {"model_name": MODEL}, "lineage": LINEAGE}
    proc = subprocess.Popen([sys.executable, "-c", STAGE, json.dumps(args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    if kill_at:
        deadline = time.monotonic() + 300
        while not signal_file.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert signal_file.exists(), f"never reached {kill_at}: {proc.communicate()[1][-3000:]}"
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=30)
        signal_file.unlink()
    start = time.monotonic()
    out, err = proc.communicate(timeout=300)
    res = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    res.seconds_after_kill = time.monotonic() - start
    return res, error_file.read_text() if error_file.exists() else ""


@pytest.mark.slow  # real servers started and killed: a minute or more on 2 cores
def test_a_server_killed_at_each_point_of_register_leaves_nothing_half_trusted(classifier_dir, eval_dir, raw_dir, cleaned_dir, validation_dir, tmp_path, monkeypatch):
    import mlflow

    from components.evaluate.gate import champion_predictions

    paths = {"classifier": str(classifier_dir), "eval": str(eval_dir), "raw": str(raw_dir), "cleaned": str(cleaned_dir), "validation": str(validation_dir)}
    folder = tmp_path / "server"
    monkeypatch.setenv("LMFORGE_PROJECT_DIR", str(tmp_path))
    server = start_mlflow_server(folder)
    try:
        for kill_at in KILL_POINTS:
            res, error = run_stage(server, paths, tmp_path, kill_at)
            assert res.returncode == 2, res.stderr[-3000:]
            assert "Traceback" not in res.stderr + res.stdout, res.stderr[-3000:]
            assert error.splitlines() == [f"register: MLflow tracking at {server.url} failed (unreachable): start the server, or unset MLFLOW_TRACKING_URI for the local sqlite store"]
            assert res.seconds_after_kill < 60  # bounded retries, no second round on the way out
            assert not (tmp_path / f"registration-{kill_at}").exists()

            server = start_mlflow_server(folder)  # the same store, back up
            monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
            [version] = mlflow.MlflowClient(server.url).search_model_versions(f"name = '{MODEL}'")  # one version, never a second
            assert version.tags[registry.STATE_TAG] == registry.INCOMPLETE, kill_at
            assert registry.list_versions(MODEL) == []  # models list ignores it
            with pytest.raises(Exception, match="is incomplete"):
                registry.promote(MODEL, version.version, force=True, reason="try anyway")
            assert champion_predictions(MODEL, "challenger", ["a film"], 8) is None  # nor is it anyone's champion
            assert registry.champion(MODEL) is None

        res, error = run_stage(server, paths, tmp_path, None)  # the same pipeline run, once more
        assert res.returncode == 0 and error == "", res.stderr[-3000:]
        assert "completing version 1, left incomplete by an interrupted attempt" in res.stdout
        [row] = registry.list_versions(MODEL)
        assert row["version"] == "1" and row["aliases"] == ["challenger"]
        client = mlflow.MlflowClient(server.url)
        version = client.get_model_version(MODEL, "1")
        assert version.tags[registry.STATE_TAG] == registry.COMPLETE and version.description.startswith("#")
        moves = [(r["alias"], r["to_version"], r["state"]) for r in registry.history(MODEL)]
        assert moves == [("challenger", "1", "done")]  # one record, confirmed, none lost or doubled
        assert json.loads((tmp_path / "registration-None" / "registration.json").read_text())["version"] == "1"
    finally:
        stop_mlflow_server(server)
