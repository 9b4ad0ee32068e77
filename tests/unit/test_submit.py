"""`lmforge submit` against a small recording KFP API server on 127.0.0.1 (the v2beta1 endpoints
kfp.Client 2.17 calls: healthz in its constructor, experiments by name, then POST /runs with the
pipeline spec inline), and its one-line failures: nothing listening, a rejected request, a
missing credential."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipelines.cli import main
from pipelines.config import load_config

API = "/apis/v2beta1"


class KfpApi(ThreadingHTTPServer):
    """Records every request; answers like a single-user KFP API server (or refuses runs)."""

    def __init__(self, refuse_runs: int = 0):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict] = []
        self.refuse_runs = refuse_runs

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def find(self, method: str, path: str) -> list[dict]:
        return [r for r in self.requests if r["method"] == method and r["path"].split("?")[0] == path]


class _Handler(BaseHTTPRequestHandler):
    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        req = {"method": self.command, "path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": json.loads(raw) if raw else None}
        self.server.requests.append(req)
        return req

    def do_GET(self):
        req = self._record()
        path = req["path"].split("?")[0]
        if path == f"{API}/healthz":
            return self._answer(200, {"multi_user": False})
        if path == f"{API}/experiments":
            return self._answer(200, {})  # no experiment of that name yet
        self._answer(404, {"message": f"no route {path}"})

    def do_POST(self):
        req = self._record()
        if req["path"] == f"{API}/experiments":
            return self._answer(200, {"experiment_id": "exp-123", "display_name": req["body"]["display_name"]})
        if req["path"] == f"{API}/runs":
            if self.server.refuse_runs:
                return self._answer(self.server.refuse_runs, {"error": "x", "message": "pipeline spec is invalid: missing executor"})
            return self._answer(200, {"run_id": "run-456", "display_name": req["body"]["display_name"], "experiment_id": "exp-123"})
        self._answer(404, {"message": "no route"})

    def log_message(self, *args):  # keep pytest's output clean
        pass


@pytest.fixture
def kfp_api(request):
    server = KfpApi(**getattr(request, "param", {}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def _no_kfp_env(monkeypatch, tmp_path):
    for var in ("KFP_HOST", "KFP_TOKEN", "KF_PIPELINES_ENDPOINT", "LMFORGE_IMAGE_DIGESTS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # kfp.Client reads ~/.config/kfp/context.json


def test_submit_sends_the_compiled_pipeline_and_the_run_parameters(kfp_api, monkeypatch, capsys):
    monkeypatch.setenv("KFP_TOKEN", "tok-not-to-be-printed")
    argv = ["submit", "--host", kfp_api.url, "--config", "gpu", "--set", "pretrain.max_steps=7", "--run-name", "lmforge-test-1", "--data-rev", "abc123"]
    assert main(argv) == 0
    out = capsys.readouterr()
    assert out.out.strip() == f"submitted lmforge-test-1 to experiment lmforge-gpu: {kfp_api.url}/#/runs/details/run-456"
    assert "tok-not-to-be-printed" not in out.out + out.err

    [lookup] = kfp_api.find("GET", f"{API}/experiments")
    assert "namespace=lmforge" in lookup["path"], "the experiment is looked up in the preset's profile namespace"
    [experiment] = kfp_api.find("POST", f"{API}/experiments")
    assert experiment["body"]["display_name"] == "lmforge-gpu" and experiment["body"]["namespace"] == "lmforge"
    [run] = kfp_api.find("POST", f"{API}/runs")
    assert run["headers"]["authorization"] == "Bearer tok-not-to-be-printed"
    body = run["body"]
    assert body["display_name"] == "lmforge-test-1" and body["experiment_id"] == "exp-123"
    assert body["service_account"] == "lmforge-pipeline-runner"

    # The compiled pipeline, inline: seven tasks, and the GPU placement of the cluster target.
    spec = body["pipeline_spec"]
    assert len(spec["pipeline_spec"]["root"]["dag"]["tasks"]) == 7
    resources = spec["pipeline_spec"]["deploymentSpec"]["executors"]["exec-pretrain-op"]["container"]["resources"]
    assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu" and resources["accelerator"]["resourceCount"] == "8"
    platform = spec["platform_spec"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-pretrain-op"]
    assert platform["tolerations"][0]["key"] == "nvidia.com/gpu"

    # The run parameters: the resolved preset with the override, one section per stage.
    params = body["runtime_config"]["parameters"]
    config = load_config("gpu", ["pretrain.max_steps=7"])
    assert params["pretrain_config"] == config.section("pretrain") and params["pretrain_config"]["max_steps"] == 7
    assert params["run_name"] == "lmforge-test-1" and params["data_rev"] == "abc123"
    assert params["data_repo"] == config.cluster.data_repo
    assert params["lineage"]["config_hash"] == config.hash()


@pytest.mark.parametrize("kfp_api", [{"refuse_runs": 400}], indirect=True)
def test_a_rejected_run_is_one_line_with_status_and_reason(kfp_api, capsys):
    assert main(["submit", "--host", kfp_api.url, "--config", "tiny"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: KFP API at {kfp_api.url} rejected the request (400 Bad Request: pipeline spec is invalid: missing executor)"]
    assert kfp_api.find("GET", f"{API}/healthz"), "single-user: kfp.Client checks the server's health first"


def test_a_missing_token_is_caught_before_any_request(kfp_api, capsys):
    assert main(["submit", "--host", kfp_api.url, "--config", "tiny", "--set", "cluster.auth=token"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: the preset's cluster.auth is 'token' but KFP_TOKEN is not set") and "\n" not in err
    assert kfp_api.requests == []


def test_a_dvc_source_without_a_data_repository_is_one_line(kfp_api, capsys):
    assert main(["submit", "--host", kfp_api.url, "--config", "tiny", "--set", "cluster.data_repo="]) == 2
    assert capsys.readouterr().err.startswith("error: no data repository for the cluster")
    assert kfp_api.requests == []


def test_no_host_is_one_line(capsys):
    assert main(["submit", "--config", "tiny"]) == 2
    assert capsys.readouterr().err.startswith("error: no KFP host: pass --host URL")


def test_nothing_listening_is_one_line_through_the_real_cli(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    res = subprocess.run([sys.executable, "-m", "pipelines.cli", "submit", "--host", "http://127.0.0.1:9", "--config", "tiny"], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: KFP API at http://127.0.0.1:9 is unreachable"), res.stderr
