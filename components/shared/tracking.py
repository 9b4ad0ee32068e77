"""MLflow tracking for one pipeline run: one parent run, a nested run per stage.

Stages find the parent by the pipeline run name (a tag), so no run id has to travel through the
DAG and a re-run of one stage logs into the same parent instead of starting a new one.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from components.shared import settings
from components.shared.errors import UserError
from components.shared.lineage import CONFIG_HASH_TAG, GIT_COMMIT_TAG, GIT_DIRTY_TAG, PRESET_TAG

EXPERIMENT = "lmforge"
RUN_NAME_TAG = "lmforge.run_name"  # the pipeline run a run belongs to (parent and stages)
STAGE_TAG = "lmforge.stage"  # "pipeline" on the parent, the stage name on each child


def connect():
    """The mlflow module, pointed at the tracking URI from settings (quietly)."""
    settings.quiet_environment()
    import mlflow

    mlflow.set_tracking_uri(settings.tracking_uri())
    return mlflow


def experiment_id(client, name: str, what: str, tags: dict | None = None) -> str:
    """The id of an active experiment, created on first use. Race-safe: concurrent first runs
    against one fresh server all try to create it, and every loser adopts the winner's."""
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            return client.create_experiment(name, artifact_location=settings.artifact_location(), tags=tags)
        except MlflowException:  # RESOURCE_ALREADY_EXISTS: a concurrent run created it first
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    if exp.lifecycle_stage != "active":
        raise UserError(f"the MLflow experiment {name!r} ({what}) is deleted: restore it with mlflow experiments restore --experiment-id {exp.experiment_id}")
    return exp.experiment_id


def parent_run_id(run_name: str) -> str:
    """The MLflow run of this pipeline run, created by the first stage that asks."""
    mlflow = connect()
    client = mlflow.MlflowClient()
    exp_id = experiment_id(client, EXPERIMENT, "every pipeline run")
    found = find_pipeline_run(run_name)
    if found:
        return found.info.run_id
    return client.create_run(exp_id, run_name=run_name, tags={RUN_NAME_TAG: run_name, STAGE_TAG: "pipeline"}).info.run_id


def find_pipeline_run(run_name: str):
    """The pipeline run's MLflow run if one exists (run names are checked: no quote to escape)."""
    client = connect().MlflowClient()
    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is None:
        return None
    found = client.search_runs([exp.experiment_id], f"tags.`{RUN_NAME_TAG}` = '{run_name}' and tags.`{STAGE_TAG}` = 'pipeline'", max_results=1)
    return found[0] if found else None


def log_stage(run_name: str, stage: str, metrics: dict, params: dict | None = None, files: Iterable[Path] = (), history: list[dict] | None = None, failed: bool = False) -> None:
    """Log a stage's params, metrics, step history and files into a run nested under the
    pipeline's parent run; its metrics also go to the parent.

    Client calls only, never `mlflow.start_run(run_id=parent)`: ending that context ends the
    parent run too (FINISHED), so a pipeline that dies later would still show FINISHED. The
    parent stays RUNNING until the CLI ends it (FINISHED, FAILED or KILLED)."""
    mlflow = connect()
    from mlflow.entities import Metric, Param
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    parent = parent_run_id(run_name)
    client = mlflow.MlflowClient()
    exp_id = client.get_run(parent).info.experiment_id
    # Real timestamps: a pipeline run resumed under its name logs a stage again into the same
    # parent, and two values of one metric at the same (timestamp, step) collide when MLflow
    # copies the run's metrics onto the logged model (a UNIQUE constraint on a server).
    now = int(time.time() * 1000)
    numeric = [Metric(k, float(v), now, 0) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    flat = [Param(k, str(v)[:6000]) for k, v in flatten(params or {}, stage).items()]
    steps = [Metric(f"{stage}/{key}", float(h[key]), now, int(h["step"])) for h in history or [] for key in ("loss", "lr", "eval_loss", "eval_accuracy") if key in h]
    child = client.create_run(exp_id, run_name=stage, tags={RUN_NAME_TAG: run_name, STAGE_TAG: stage, MLFLOW_PARENT_RUN_ID: parent}).info.run_id
    status = "FAILED"
    try:
        # Batched calls (MLflow takes at most 1000 metrics and 100 params a call), never one
        # tracking request per step.
        for i in range(0, len(flat), 100):
            client.log_batch(child, params=flat[i : i + 100])
        batch = numeric + steps
        for i in range(0, len(batch), 1000):
            client.log_batch(child, metrics=batch[i : i + 1000])
        for f in map(Path, files):
            if f.is_dir():
                client.log_artifacts(child, str(f), artifact_path=f"{stage}/{f.name}")
            elif f.is_file():
                client.log_artifact(child, str(f), artifact_path=stage)
        status = "FAILED" if failed else "FINISHED"
    finally:
        with contextlib.suppress(Exception):  # a failure above is the one to report
            client.set_terminated(child, status)
    client.log_batch(parent, metrics=numeric)


def finish(run_id: str, status: str = "FINISHED") -> None:
    """End the pipeline's parent run with `status` (FINISHED, FAILED or KILLED)."""
    connect().MlflowClient().set_terminated(run_id, status)


def finish_quietly(run_id: str, status: str) -> bool:
    """`finish` on a failure path: one attempt without retries or retry warnings, never a second
    error on top of the first (a dead server cannot be told, and is not kept waiting for; the run
    then stays RUNNING there, never FINISHED). True if recorded."""
    try:
        with one_attempt():
            finish(run_id, status)
        return True
    except Exception:
        return False


@contextlib.contextmanager
def one_attempt() -> Iterator[None]:
    """MLflow calls inside make one HTTP attempt each (MLflow reads the retry count per call) and
    urllib3 prints no "Retrying ..." warnings."""
    import logging

    log = logging.getLogger("urllib3")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with settings.environment({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}):
            yield
    finally:
        log.setLevel(level)


def is_tracking_failure(exc: BaseException) -> bool:
    """An error of the tracking client or its transport (not a bug in a stage)."""
    import requests
    from mlflow.exceptions import MlflowException

    return isinstance(exc, (MlflowException, requests.RequestException, ConnectionError))


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        out.update(flatten(v, key) if isinstance(v, dict) else {key: v})
    return out


def open_pipeline_run(run_name: str, resolved: dict, lineage: dict) -> str:
    """Create (or find) the pipeline's MLflow run and log its config; an unreachable or refusing
    tracking server is one clear error here, before any stage starts."""
    with reported_errors():
        run_id = parent_run_id(run_name)
        client = connect().MlflowClient()
        if client.get_run(run_id).info.status != "RUNNING":  # a resumed run (it ended FAILED or KILLED) is live again
            client.update_run(run_id, status="RUNNING")
        log_config(run_id, resolved, lineage)
    return run_id


_UNREACHABLE = ("Max retries exceeded", "Connection refused", "Failed to establish", "Connection aborted", "RemoteDisconnected")


def is_unreachable(exc: BaseException) -> bool:
    """The tracking server did not answer at all (down, killed, wrong port), as opposed to one
    that answered with a refusal: a dead server is not asked for any clean-up."""
    import requests

    return isinstance(exc, (requests.ConnectionError, ConnectionError)) or any(s in str(exc) for s in _UNREACHABLE)


def tracking_error(exc: Exception) -> UserError:
    """One line for a tracking server that is down or refuses, without credentials."""
    raw, uri = settings.tracking_uri(), settings.display_uri(settings.tracking_uri())
    text = settings.redact(str(exc).replace(raw, uri))
    reason = "unreachable" if is_unreachable(exc) else (text.splitlines()[0][:160] if text else type(exc).__name__)
    return UserError(f"MLflow tracking at {uri} failed ({reason}): start the server, or unset MLFLOW_TRACKING_URI for the local sqlite store")


@contextlib.contextmanager
def reported_errors() -> Iterator[None]:
    """Any tracking failure inside the block (MlflowException, requests' ConnectionError, sqlite
    errors, ...) becomes `tracking_error`'s one line; a UserError passes through."""
    try:
        yield
    except UserError:
        raise
    except Exception as exc:
        raise tracking_error(exc) from None


def log_config(run_id: str, resolved: dict, lineage: dict) -> None:
    """The whole resolved preset as an artifact of the pipeline run, its hash and code state as tags."""
    mlflow = connect()
    from mlflow.entities import RunTag

    client = mlflow.MlflowClient()
    client.log_dict(run_id, resolved, "config.yaml")
    tags = {CONFIG_HASH_TAG: lineage.get("config_hash", ""), PRESET_TAG: lineage.get("preset", "")}
    tags |= {GIT_COMMIT_TAG: lineage.get("git_commit", ""), GIT_DIRTY_TAG: str(lineage.get("git_dirty", "")).lower()}
    client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
