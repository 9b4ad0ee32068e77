"""Least-privilege MLflow user for the pipeline, on a server started with `--app-name basic-auth`.

Run as the admin (infra/base/mlflow-auth.yaml runs it as a Job; by hand:
`MLFLOW_TRACKING_USERNAME=admin MLFLOW_TRACKING_PASSWORD=... python -m pipelines.mlflow_auth_setup`).
Reads from the environment: MLFLOW_TRACKING_URI, the admin's MLFLOW_TRACKING_USERNAME/PASSWORD,
LMFORGE_PIPELINE_USERNAME/PASSWORD (the user the pipeline's tasks log in as) and
LMFORGE_MODEL_NAMES (comma-separated registered models, default lmforge-sentiment).

What the pipeline user may do, and why (the server's default_permission is READ):
- the alias history (experiment lmforge-registry-audit and each model's ledger, created here by
  the admin): EDIT - it appends records and moves aliases, but cannot delete the ledger run or
  the experiment (DeleteRun/DeleteExperiment need MANAGE), so it cannot hide its own history;
  the pointer experiments: READ only, so it cannot repoint a ledger;
- each registered model: MANAGE - the register stage deletes a version it could not finish
  (DeleteModelVersion needs MANAGE); it is not an admin and gets nothing on other models;
- its own training experiments: MANAGE, which MLflow grants to an experiment's creator.
Idempotent: running it again changes the user's password to the Secret's and re-grants.
"""

from __future__ import annotations

import os
import sys

from components.shared import audit_ledger

DEFAULT_MODELS = "lmforge-sentiment"


def setup(tracking_uri: str, username: str, password: str, models: list[str]) -> dict:
    """Create or update the pipeline user and grant it the permissions above; returns them."""
    import mlflow
    from mlflow.server import get_app_client

    auth = get_app_client("basic-auth", tracking_uri=tracking_uri)
    client = mlflow.MlflowClient(tracking_uri)
    try:
        auth.get_user(username)
        auth.update_user_password(username, password)
    except mlflow.exceptions.RestException:
        auth.create_user(username, password)
    grants = {("experiment", audit_ledger.audit_experiment(client)): "EDIT"}
    for model in models:
        try:
            client.create_registered_model(model, description="LMForge sentiment classifier (BERT-style encoder pretrained by LMForge)")
        except mlflow.exceptions.MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        audit_ledger.ledger_run_id(client, model, create=True)  # the admin owns the ledger and its pointer
        pointer = client.get_experiment_by_name(audit_ledger.pointer_name(model))
        grants[("experiment", pointer.experiment_id)] = "READ"
        grants[("registered_model", model)] = "MANAGE"
    for (kind, resource), permission in grants.items():
        auth.grant_user_permission(username, kind, resource, permission)
    return {f"{kind}:{resource}": permission for (kind, resource), permission in grants.items()}


def main() -> int:
    missing = [k for k in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "LMFORGE_PIPELINE_USERNAME", "LMFORGE_PIPELINE_PASSWORD") if not os.environ.get(k)]
    if missing:
        print(f"error: {', '.join(missing)} not set: the admin's credentials and the pipeline user's come from Secrets (infra/README.md)", file=sys.stderr)
        return 2
    models = [m.strip() for m in os.environ.get("LMFORGE_MODEL_NAMES", DEFAULT_MODELS).split(",") if m.strip()]
    granted = setup(os.environ["MLFLOW_TRACKING_URI"], os.environ["LMFORGE_PIPELINE_USERNAME"], os.environ["LMFORGE_PIPELINE_PASSWORD"], models)
    for resource, permission in granted.items():
        print(f"{os.environ['LMFORGE_PIPELINE_USERNAME']}: {permission} on {resource}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
