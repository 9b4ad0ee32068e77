"""Fixtures of the whole-pipeline tests: a real git + DVC project with the demo data, and the CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def demo_project(tmp_path_factory) -> Path:
    """A fresh git + DVC project holding this checkout's data.dvc and the demo data built from PyPI."""
    from data_builders.demo_data import build_demo_data

    root = tmp_path_factory.mktemp("project")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / ".dvc").mkdir()
    for name in (".dvc/config", ".dvc/.gitignore", ".dvcignore", "data.dvc"):
        shutil.copy(REPO / name, root / name)
    (root / ".gitignore").write_text("/data/\n/.dvcstore/\n/mlflow.db\n/local_outputs/\n")
    build_demo_data(root, log=lambda _: None)
    subprocess.run(["git", "-C", str(root), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(root), "commit", "-qm", "demo data"], check=True)
    return root


@pytest.fixture(scope="session")
def lmforge():
    return run_cli


def run_cli(project: Path, *args: str, tracking_uri: str | None = None) -> subprocess.CompletedProcess:
    """The real CLI in a child process, with the project and tracking store it would get from a user's shell."""
    uri = tracking_uri or f"sqlite:///{project}/mlflow.db"
    env = {**os.environ, "LMFORGE_PROJECT_DIR": str(project), "MLFLOW_TRACKING_URI": uri}
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True, env=env, timeout=900)
