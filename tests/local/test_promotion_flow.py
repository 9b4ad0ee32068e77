"""What a user does in a week, through the real CLI: two runs on two data revisions, the gate
between them, and an exact rebuild of the first version after the data moved on."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from components.shared.lineage import (
    DATA_FILES_MD5_TAG,
    DATA_MD5_TAG,
    DATA_REV_TAG,
    GATE_SUMMARY_TAG,
    GATE_TAG,
    KFP_RUN_ID_TAG,
    PACKAGES_TAG,
    SEEDS_TAG,
    VALIDATION_SUITES_TAG,
    WEIGHTS_SHA256_TAG,
    git_state,
)

REPO = Path(__file__).resolve().parents[2]
MODEL = "lmforge-sentiment"
# A dirty checkout (someone's work in progress) records git_dirty=true; reproduce then refuses
# unless told to go ahead, which is what a developer running these tests would do too.
ALLOW_DIRTY = ["--allow-dirty"] if git_state(REPO)["git_dirty"] else []


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def change_data(project: Path) -> str:
    """A new data revision, as a user makes one: edit data/, `dvc add`, commit. Returns its sha."""
    path = project / "data" / "labeled" / "rt_sentences.csv"
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    table.drop(table.index[::10]).to_csv(path, index=False)
    subprocess.run([sys.executable, "-m", "dvc", "add", "-q", "data"], cwd=project, check=True, env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    git(project, "add", "data.dvc")
    git(project, "commit", "-qm", "data: drop a tenth of the labeled sentences")
    return git(project, "rev-parse", "HEAD")


def copy_project(demo_project: Path, root: Path) -> Path:
    """A copy of the demo project (its git history, DVC cache and remote) that a test may change."""
    shutil.copytree(demo_project, root, ignore=shutil.ignore_patterns("mlflow.db", "mlruns", "local_outputs"))
    return root


@pytest.fixture
def flow_project(demo_project, tmp_path) -> Path:
    return copy_project(demo_project, tmp_path / "project")


def check(res) -> str:
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout


@pytest.mark.network
@pytest.mark.slow
def test_two_revisions_gate_and_exact_reproduction(flow_project, lmforge, tmp_path):
    import mlflow

    first_rev = git(flow_project, "rev-parse", "HEAD")
    out = check(lmforge(flow_project, "run", "--config", "tiny"))
    assert "(alias @challenger and @champion)" in out and "gate passed" in out  # first model: baseline gate

    second_rev = change_data(flow_project)
    out = check(lmforge(flow_project, "run", "--config", "tiny"))
    assert "models:/lmforge-sentiment/2" in out and "against champion version 1" in out

    client = mlflow.MlflowClient(f"sqlite:///{flow_project}/mlflow.db")
    v1, v2 = (client.get_model_version(MODEL, v) for v in ("1", "2"))
    assert (v1.tags[DATA_REV_TAG], v2.tags[DATA_REV_TAG]) == (first_rev, second_rev)
    assert v1.tags[DATA_MD5_TAG] != v2.tags[DATA_MD5_TAG]
    # The gate report of version 2: it against version 1, the difference with its interval.
    gate = json.loads(Path(client.download_artifacts(v2.run_id, "evaluate/gate.json", str(tmp_path))).read_text())
    acc = gate["vs_champion"]["accuracy"]
    assert gate["champion"]["version"] == "1" and acc["low"] <= acc["diff"] <= acc["high"]
    assert v2.tags[GATE_TAG] == ("passed" if gate["passed"] else "failed")
    assert f"{acc['diff']:+.4f} [{acc['low']:+.4f}, {acc['high']:+.4f}]" in v2.tags[GATE_SUMMARY_TAG]
    card = client.get_model_version(MODEL, "2").description
    assert card.startswith(f"# {MODEL} version 2") and second_rev in card and "## Intended use" in card and "## Limits" in card
    for key in (PACKAGES_TAG, SEEDS_TAG, DATA_FILES_MD5_TAG, KFP_RUN_ID_TAG, WEIGHTS_SHA256_TAG, VALIDATION_SUITES_TAG):
        assert v2.tags.get(key), key
    assert json.loads(v2.tags[PACKAGES_TAG])["torch"].startswith("2.13.0")

    # The working copy has moved on to the second revision; version 1 is rebuilt from the first.
    res = lmforge(flow_project, "reproduce", f"{MODEL}/1", *ALLOW_DIRTY)
    out = check(res)
    assert f"reproducing {MODEL}/1 from data revision {first_rev[:12]}" in out
    assert f"{MODEL}/1 reproduced exactly" in out and "<- differs" not in out
    assert len(client.search_model_versions(f"name = '{MODEL}'")) == 2  # a rebuild registers nothing


@pytest.mark.network
@pytest.mark.slow
def test_register_promote_and_reproduce_through_a_real_tracking_server(demo_project, mlflow_server, lmforge, tmp_path):
    """The same commands over HTTP: the run registers and auto-promotes through the server, the
    rebuild's evaluate downloads the champion through it, and reproduce compares through it."""
    project = copy_project(demo_project, tmp_path / "project")
    model = "lmforge-http-flow"  # the session's server is shared with the registry tests
    out = check(lmforge(project, "run", "--config", "tiny", "--set", f"register.model_name={model}", tracking_uri=mlflow_server))
    assert f"models:/{model}/1 (alias @challenger and @champion)" in out
    listing = check(lmforge(project, "models", "list", model, tracking_uri=mlflow_server))
    assert git(project, "rev-parse", "HEAD")[:8] in listing
    history = check(lmforge(project, "models", "history", model, tracking_uri=mlflow_server))
    assert "auto-promote" in history and "register" in history

    out = check(lmforge(project, "reproduce", f"{model}@champion", *ALLOW_DIRTY, tracking_uri=mlflow_server))
    assert f"{model}/1 reproduced exactly" in out
