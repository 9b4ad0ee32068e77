"""Run the DAG on this machine with kfp.local: the embedded default a newcomer meets first.

Each task runs as a child process of this interpreter (SubprocessRunner(use_venv=False)), so the
installed project in `.venv` is the stage code, and the environment set here (tracking URI, error
file) reaches every task.
"""

from __future__ import annotations

import contextlib
import signal
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from components.shared import settings, tracking
from components.shared.errors import UserError
from pipelines.config import STAGES, PipelineConfig
from pipelines.console import filtered_console, plain

SUMMARY_METRICS = [
    ("accuracy", "eval/accuracy"),
    ("macro-F1", "eval/macro_f1"),
    ("majority baseline accuracy", "eval/baseline_majority_accuracy"),
    ("TF-IDF + LR baseline accuracy", "eval/baseline_tfidf_accuracy"),
    ("random-init control accuracy", "eval/control_accuracy"),
    ("held-out MLM perplexity", "eval/perplexity"),
    ("pretrain final loss", "pretrain/final_loss"),
]


def new_run_name(preset: str) -> str:
    return f"lmforge-{Path(preset).stem}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"


def run_local(config: PipelineConfig, preset: str, data_rev: str = "", data_repo: str = "", run_name: str = "", verbose: bool = False) -> dict:
    """Run the whole DAG locally; return {'run_name', 'model_uri', 'metrics', 'seconds'}."""
    from kfp import local

    from pipelines.pipeline import arguments, lmforge_pipeline

    project = settings.project_dir()
    run_name = run_name or new_run_name(preset)
    lineage = config.lineage(preset)
    repo = data_repo or (str(project) if config.ingest.source == "dvc" else "")
    parent = tracking.open_pipeline_run(run_name, config.resolved(), lineage)
    print(f"LMForge run {run_name}: tracking at {settings.display_uri(settings.tracking_uri())} (MLflow run {parent[:8]})", flush=True)

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(project / "local_outputs"), raise_on_error=True)
    log_path = project / "local_outputs" / "logs" / f"{run_name}.log"
    print(f"full log: {log_path}", flush=True)
    start = time.perf_counter()
    with tempfile.NamedTemporaryFile("r", prefix="lmforge-error-", suffix=".txt") as err, settings.task_environment(err.name), filtered_console(log_path, verbose), _sigterm_interrupts():
        try:
            task = lmforge_pipeline(**arguments(config, run_name, repo, data_rev, lineage))
        except KeyboardInterrupt:
            tracking.finish_quietly(parent, "KILLED")  # not left RUNNING in MLflow forever
            raise
        except Exception as exc:
            # The reason first: a stage that failed on a dead tracking server says so in the
            # error file, and marking the run FAILED must not replace it with a second error.
            reason = Path(err.name).read_text().strip()
            tracking.finish_quietly(parent, "FAILED")
            raise UserError(reason or f"the pipeline failed ({plain(str(exc))}): see the task log in {log_path}") from None
    with tracking.reported_errors():
        tracking.finish(parent)
        run = tracking.connect().get_run(parent)
    return {
        "run_name": run_name, "run_id": parent, "model_uri": task.output, "alias": config.stage("register").alias,
        "metrics": run.data.metrics,
        "gate": run.data.tags.get("lmforge.gate_summary", ""), "seconds": time.perf_counter() - start,
    }


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (`kill`, a container stopping) ends the run as Ctrl-C does: marked KILLED, not left
    RUNNING. Only kill -9 cannot be seen."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def summary(result: dict) -> str:
    """Per-stage time, key metrics and the registered model URI, as a short table."""
    m = result["metrics"]
    lines = [f"\nLMForge run {result['run_name']} finished in {result['seconds']:.0f} s", "", "stage            seconds"]
    lines += [f"  {stage:<15}{m[f'{stage}/seconds']:>7.1f}" for stage in STAGES if f"{stage}/seconds" in m]
    lines += ["", "metric                          value"]
    lines += [f"  {name:<30}{m[key]:>7.4f}" for name, key in SUMMARY_METRICS if key in m]
    if result["model_uri"]:
        promoted = " and @champion" if m.get("register/promoted") else ""
        lines += ["", f"registered model: {result['model_uri']} (alias @{result['alias']}{promoted})"]
    else:
        lines += ["", f"dry run: no model version registered (MLflow run {result['run_id']})"]
    lines += [result["gate"], f"tracking: {settings.display_uri(settings.tracking_uri())}"]
    return "\n".join(lines)
