"""What every component shim wraps its stage call in: KFP metrics, MLflow, and clear errors."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import SimpleNamespace

from components.shared import artifacts, settings
from components.shared.errors import UserError


@contextlib.contextmanager
def stage_task(stage: str, run_name: str, kfp_metrics, config: dict, files: Iterable[Path] = (), history: Path | None = None) -> Iterator[SimpleNamespace]:
    """Run one stage: set `task.metrics` inside the block.

    Afterwards, pass or fail, the metrics, the task's wall time and whichever of `files` exist go
    to the KFP Metrics artifact and the stage's nested MLflow run (so failed validation still
    shows its Data Docs). A UserError then becomes one line on stderr, in the CLI's error file,
    and a failed task; so does a tracking server that fails, in the stage or while logging it (a
    dead server is not asked again on the way out); any other exception keeps its traceback.
    """
    from components.shared import tracking

    task = SimpleNamespace(metrics={})
    try:
        yield task
    except UserError as exc:
        with contextlib.suppress(Exception):  # the stage's own error is the one to report
            _log(stage, run_name, {**task.metrics, f"{stage}/failed": 1.0}, kfp_metrics, config, files, history, failed=True)
        fail(stage, exc)
    except Exception as exc:
        if not tracking.is_tracking_failure(exc):
            raise
        fail(stage, tracking.tracking_error(exc))
    try:
        _log(stage, run_name, task.metrics, kfp_metrics, config, files, history)
    except Exception as exc:
        if not tracking.is_tracking_failure(exc):
            raise
        fail(stage, tracking.tracking_error(exc))


def _log(stage: str, run_name: str, metrics: dict, kfp_metrics, config: dict, files: Iterable[Path], history: Path | None, failed: bool = False) -> None:
    from components.shared import tracking

    metrics = {**metrics, f"{stage}/seconds": task_seconds()}
    for key, value in metrics.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            kfp_metrics.log_metric(key.replace("/", "_"), float(value))
    steps = artifacts.read_json(history) if history and Path(history).is_file() else None
    settings.fault_point(f"{stage}.log")
    tracking.log_stage(run_name, stage, metrics, params=config, files=files, history=steps, failed=failed)


def fail(stage: str, exc: UserError) -> None:
    line = f"{stage}: {exc}"
    print(f"ERROR {line}", file=sys.stderr, flush=True)
    error_file = settings.error_file()
    if error_file:
        Path(error_file).write_text(line + "\n")
    raise SystemExit(2) from None


def task_seconds() -> float:
    """Wall time of this task so far: the process start (imports included) until now."""
    import psutil

    return time.time() - psutil.Process().create_time()


def log_confusion_matrix(kfp_confusion, eval_report: Path) -> None:
    """The evaluate report's confusion matrix as a KFP ClassificationMetrics artifact (a regression
    report has none: the artifact stays empty, its scatter plot is on the HTML page)."""
    scores = artifacts.read_json(eval_report)
    if "confusion_matrix" in scores:
        kfp_confusion.log_confusion_matrix(scores["label_names"], scores["confusion_matrix"])


def registered_uri(registration_dir: Path) -> str:
    return artifacts.read_json(Path(registration_dir) / artifacts.REGISTRATION)["uri"]
