"""Run the DAG on this machine with kfp.local: the embedded default a newcomer meets first.

Each task runs as a child process of this interpreter (SubprocessRunner(use_venv=False)), so the
installed project in `.venv` is the stage code, and the environment set here (tracking URI, error
file) reaches every task.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from components.shared import locks, settings, tracking
from components.shared.errors import UserError
from components.shared.lineage import CONFIG_HASH_TAG, GATE_SUMMARY_TAG
from pipelines import run_names
from pipelines.config import STAGES, PipelineConfig
from pipelines.console import filtered_console, plain

SUMMARY_METRICS = [
    ("accuracy", "eval/accuracy"),
    ("macro-F1", "eval/macro_f1"),
    ("majority baseline accuracy", "eval/baseline_majority_accuracy"),
    ("TF-IDF + LR baseline accuracy", "eval/baseline_tfidf_accuracy"),
    ("random-init control accuracy", "eval/control_accuracy"),
    ("Pearson", "eval/pearson"),  # regression (finetune.task: regression); a run shows its task's rows only
    ("Spearman", "eval/spearman"),
    ("RMSE", "eval/rmse"),
    ("train-mean baseline RMSE", "eval/baseline_mean_rmse"),
    ("TF-IDF + ridge baseline RMSE", "eval/baseline_ridge_rmse"),
    ("TF-IDF + ridge baseline Pearson", "eval/baseline_ridge_pearson"),
    ("random-init control Pearson", "eval/control_pearson"),
    ("held-out perplexity", "eval/perplexity"),  # the objective's (masked-LM, next-token, ELECTRA generator): the model card says which
    ("pretrain final loss", "pretrain/final_loss"),
]


def new_run_name(preset: str) -> str:
    """`lmforge-PRESET-TIMESTAMP-RANDOM`: two runs started in the same second get two names."""
    return run_names.new_run_name(f"lmforge-{Path(preset).stem}")


def run_local(config: PipelineConfig, preset: str, data_rev: str = "", data_repo: str = "", run_name: str = "", verbose: bool = False) -> dict:
    """Run the whole DAG locally; return {'run_name', 'model_uri', 'metrics', 'seconds'}.

    The run name, and every argument kfp.local would rewrite, is checked first; the name is held
    by this process for the run (a second live run of it is refused)."""
    from pipelines.pipeline import arguments

    project = settings.project_dir()
    run_name = run_names.check_run_name(run_name) if run_name else new_run_name(preset)
    lineage = config.lineage(preset)
    repo, rev = config.data_source("local", lineage["git_commit"], data_repo, data_rev)
    args = arguments(config, run_name, repo, rev, lineage)
    run_names.kfp_local_safe(args, project / "local_outputs")
    recipe = {CONFIG_HASH_TAG: lineage["config_hash"], DATA_TAG: data_request(config, repo, rev)}
    _same_recipe(run_name, recipe)  # before writing anything: a dead server is one line here
    with tracking.reported_errors():
        dead = settle_dead_runs(project)
    if dead:
        print(f"marked {len(dead)} pipeline run(s) KILLED whose process had died without ending them (kill -9, a crash): {', '.join(dead)}", flush=True)
    lock = run_lock(project, run_name)
    with locks.owned(lock, f"run name {run_name}", "wait for it to finish, or choose another --run-name"):
        _same_recipe(run_name, recipe)  # again, now that no other run of this name can start
        return _run(config, project, run_name, args, lineage, verbose, recipe[DATA_TAG])


DATA_TAG = "lmforge.data_request"  # the data a pipeline run was asked for: repo@commit, or the paths
END_REASON_TAG = "lmforge.end_reason"


def run_lock(project: Path, run_name: str) -> Path:
    """The file a live local run of `run_name` holds a flock on (the kernel drops it however the run ends)."""
    return project / "local_outputs" / "locks" / f"run-{run_name}.lock"


def settle_dead_runs(project: Path) -> list[str]:
    """End KILLED the pipeline runs that a `kill -9` (or a crash) left RUNNING in MLflow; return their names.

    Nothing can be told while a process dies of SIGKILL, so the next run tells it: a run RUNNING
    in the tracking store whose run-name lock in this project is free has no live owner. Runs
    started elsewhere (a cluster, another project) have no lock file here and are left alone."""
    if not any(run_lock(project, "*").parent.glob(run_lock(project, "*").name)):
        return []  # no local run ever started here: nothing to ask the tracking server
    client = tracking.connect().MlflowClient()
    exp = client.get_experiment_by_name(tracking.EXPERIMENT)
    if exp is None:
        return []
    running = client.search_runs([exp.experiment_id], f"attributes.status = 'RUNNING' and tags.`{tracking.STAGE_TAG}` = 'pipeline'", max_results=500)
    dead = []
    for run in running:
        name = run.data.tags.get(tracking.RUN_NAME_TAG, "")
        lock = run_lock(project, name)
        if not run_names.ALLOWED.fullmatch(name) or not lock.exists():
            continue
        try:
            fd = locks.acquire(lock, f"run name {name}", "")
        except UserError:
            continue  # a live run holds it
        try:  # held while marking, so a run of that name cannot start in between
            client.set_tag(run.info.run_id, END_REASON_TAG, "its process died without ending the run (kill -9, a crash); marked KILLED by the next lmforge run")
            client.set_terminated(run.info.run_id, "KILLED")
        finally:
            os.close(fd)
        dead.append(name)
    return dead


def data_request(config: PipelineConfig, repo: str, data_rev: str) -> str:
    """The data this run reads, as it can be known before ingest: the DVC repo at the commit its
    revision names today (HEAD moves), or the two paths."""
    from components.ingest.ingest import resolve_rev

    if config.ingest.source != "dvc":
        return f"{config.ingest.corpus_path} {config.ingest.labeled_path}"
    try:
        rev = resolve_rev(repo, data_rev)
    except UserError:
        rev = data_rev  # ingest reports a revision that does not exist, as before
    return f"{repo}@{rev}"


def _same_recipe(run_name: str, recipe: dict) -> None:
    """An existing run name may resume only the same recipe (config and data): under another,
    register would find the first run's version and report it as this run's model."""
    with tracking.reported_errors():
        found = tracking.find_pipeline_run(run_name)
    tags = found.data.tags if found else {}
    config, data = (tags.get(t, "") for t in (CONFIG_HASH_TAG, DATA_TAG))
    if config and config != recipe[CONFIG_HASH_TAG]:
        raise UserError(
            f"run name {run_name} already exists with another configuration (config hash {config[:12]}, this one {recipe[CONFIG_HASH_TAG][:12]}): "
            "choose a new --run-name, or give the same preset and --set values to resume that run"
        )
    if data and data != recipe[DATA_TAG]:
        raise UserError(
            f"run name {run_name} already exists reading other data ({data}; this run: {recipe[DATA_TAG]}): choose a new --run-name, or give the same --data-rev and data paths to resume that run"
        )


def _run(config: PipelineConfig, project: Path, run_name: str, args: dict, lineage: dict, verbose: bool, data: str) -> dict:
    from kfp import local

    from pipelines.pipeline import lmforge_pipeline

    parent = tracking.open_pipeline_run(run_name, config.resolved(), lineage)
    with tracking.reported_errors():
        tracking.connect().MlflowClient().set_tag(parent, DATA_TAG, data)  # what a resume of this name must match
    print(f"LMForge run {run_name}: tracking at {settings.display_uri(settings.tracking_uri())} (MLflow run {parent[:8]})", flush=True)

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(project / "local_outputs"), raise_on_error=True)
    log_path = project / "local_outputs" / "logs" / f"{run_name}.log"
    print(f"full log: {log_path}", flush=True)
    start = time.perf_counter()
    with tempfile.NamedTemporaryFile("r", prefix="lmforge-error-", suffix=".txt") as err, settings.task_environment(err.name), filtered_console(log_path, verbose), _sigterm_interrupts():
        try:
            task = lmforge_pipeline(**args)
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
        "run_name": run_name,
        "run_id": parent,
        "model_uri": task.output,
        "alias": config.stage("register").alias,
        "metrics": run.data.metrics,
        "gate": run.data.tags.get(GATE_SUMMARY_TAG, ""),
        "seconds": time.perf_counter() - start,
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
