"""Settings that come from the environment, read in this one place.

Tracking URI, registry, credentials and the KFP host never come from YAML and are never written
into logs or compiled pipelines.
"""

from __future__ import annotations

import os
from pathlib import Path

MODEL_NAME_DEFAULT = "lmforge-sentiment"


def code_dir() -> Path:
    """The source tree this package runs from (its git commit is the code's lineage)."""
    return Path(__file__).resolve().parents[2]


def project_dir() -> Path:
    """Where runs keep their state (data, mlflow.db, local_outputs): $LMFORGE_PROJECT_DIR, else
    the source tree when it is a checkout, else the current directory."""
    env = os.environ.get("LMFORGE_PROJECT_DIR")
    if env:
        return Path(env).resolve()
    return code_dir() if (code_dir() / "pyproject.toml").exists() else Path.cwd()


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, else a sqlite store in the project (MLflow 3 refuses the file store)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_dir() / 'mlflow.db'}"


def artifact_location() -> str | None:
    """Where a new experiment keeps artifacts: beside a local sqlite store, `mlruns/` in the project
    (not wherever the command happened to run); a tracking server decides for itself."""
    if tracking_uri().startswith("sqlite:"):
        return (project_dir() / "mlruns").as_uri()
    return None


def quiet_environment() -> None:
    """Switch off telemetry and hub look-ups that would stall an offline machine."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # also silences transformers' weight-loading bars
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
