"""What every component shim does after its stage function: KFP metrics, MLflow, clear errors."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Iterable, Iterator

from components.shared import artifacts
from components.shared.errors import UserError

# Set by the local CLI: a failing stage writes its one-line reason here for the CLI to print.
ERROR_FILE_ENV = "LMFORGE_ERROR_FILE"


def report(stage: str, run_name: str, metrics: dict, kfp_metrics, config: dict, files: Iterable[Path] = (), history: Path | None = None) -> None:
    """Log numeric metrics to the KFP Metrics artifact and the stage's nested MLflow run."""
    from components.shared import tracking

    metrics = {**metrics, f"{stage}/seconds": task_seconds()}
    for key, value in metrics.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            kfp_metrics.log_metric(key.replace("/", "_"), float(value))
    steps = artifacts.read_json(history) if history and Path(history).is_file() else None
    tracking.log_stage(run_name, stage, metrics, params=config, files=files, history=steps)


def task_seconds() -> float:
    """Wall time of this task so far: the process start (imports included) until now."""
    import psutil

    return time.time() - psutil.Process().create_time()


@contextlib.contextmanager
def user_errors(stage: str) -> Iterator[None]:
    """Turn a UserError into one line on stderr (and the CLI's error file) and a failed task."""
    try:
        yield
    except UserError as exc:
        line = f"{stage}: {exc}"
        print(f"ERROR {line}", file=sys.stderr, flush=True)
        if os.environ.get(ERROR_FILE_ENV):
            Path(os.environ[ERROR_FILE_ENV]).write_text(line + "\n")
        raise SystemExit(2) from None
