"""`lmforge submit`: compile for the cluster and start a run on a KFP API server.

The run carries the resolved preset as its parameters (one section per stage, as locally) and the
pipeline spec inline (KFP v2beta1 `POST /runs`); the experiment is found or created by name.
Credentials come from the environment (components/shared/settings.py) and are never printed.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

from components.shared import settings
from components.shared.errors import UserError
from pipelines.config import PipelineConfig


def submit(config: PipelineConfig, preset: str, host: str = "", experiment: str = "", run_name: str = "", data_rev: str = "", data_repo: str = "") -> dict:
    """Submit one run; return {'run_id', 'run_name', 'experiment', 'url'}."""
    from pipelines.compile import compile_pipeline
    from pipelines.local import new_run_name
    from pipelines.pipeline import arguments
    from pipelines.run_names import check_run_name

    run_name = check_run_name(run_name, local=False) if run_name else new_run_name(preset)  # before any connection
    host = (host or settings.kfp_host()).rstrip("/")
    if not host:
        raise UserError("no KFP host: pass --host URL (e.g. http://localhost:8080 after kubectl port-forward) or set KFP_HOST")
    token = settings.kfp_token()
    if config.cluster.auth == "token" and not token:
        raise UserError("the preset's cluster.auth is 'token' but KFP_TOKEN is not set: export KFP_TOKEN (see infra/README.md)")
    lineage = config.lineage(preset)
    data_repo, data_rev = config.data_source("cluster", lineage["git_commit"], data_repo, data_rev)
    if config.ingest.source == "dvc" and not data_repo:
        raise UserError("no data repository for the cluster (its pods have no checkout): set cluster.data_repo to the data's git URL or pass --data-repo")
    experiment = experiment or config.cluster.experiment
    params = arguments(config, run_name, data_repo, data_rev, lineage)
    with tempfile.TemporaryDirectory(prefix="lmforge-submit-") as tmp:
        package = compile_pipeline(config, preset, Path(tmp) / "lmforge.yaml", target="cluster")
        with _talking_to(host):
            client = _client(host, token, config.cluster.namespace)
            result = client.create_run_from_pipeline_package(
                str(package),
                arguments=params,
                run_name=run_name,
                experiment_name=experiment,
                namespace=config.cluster.namespace,
                pipeline_root=config.cluster.pipeline_root,
                service_account=config.cluster.service_account,
            )
    return {"run_id": result.run_id, "run_name": run_name, "experiment": experiment, "url": f"{settings.display_uri(host)}/#/runs/details/{result.run_id}"}


def _client(host: str, token: str, namespace: str | None):
    import kfp

    kwargs = {"host": host, "existing_token": token or None}
    if namespace:
        kwargs["namespace"] = namespace
    return kfp.Client(**kwargs)


@contextlib.contextmanager
def _talking_to(host: str) -> Iterator[None]:
    """KFP API failures as one line each; kfp's own prints, warnings and logged tracebacks hushed."""
    from kfp_server_api.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    shown = settings.display_uri(host)
    logging.disable(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    except ApiException as exc:
        hint = ": check KFP_TOKEN and the namespace's permissions" if exc.status in (401, 403) else ""
        raise UserError(f"KFP API at {shown} rejected the request ({exc.status} {exc.reason}{_message(exc.body)}){hint}") from None
    except HTTPError as exc:  # MaxRetryError (nothing listens), protocol and TLS errors
        reason = str(getattr(exc, "reason", None) or exc).rsplit(": ", 1)[-1][:120]  # e.g. "[Errno 111] Connection refused"
        raise UserError(f"KFP API at {shown} is unreachable ({reason}): check --host, or `kubectl port-forward` to ml-pipeline-ui") from None
    except TimeoutError:  # kfp.Client retries a failing health check 5 times, then gives up
        raise UserError(f"KFP API at {shown} did not pass its health check: is this a KFP v2 API server?") from None
    finally:
        logging.disable(logging.NOTSET)


def _message(body) -> str:
    """The server's own reason, if its error body has one (grpc-gateway: {"message": ...})."""
    try:
        data = json.loads(body or "")
    except (TypeError, ValueError):
        return ""
    text = data.get("message") or data.get("error") if isinstance(data, dict) else ""
    return f": {str(text).splitlines()[0][:200]}" if text else ""
