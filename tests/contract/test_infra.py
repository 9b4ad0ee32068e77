"""Contract: every kustomize overlay builds and validates offline, strictly, against a current
Kubernetes; the manifests carry no secret values and keep their security promises."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from components.shared import images

INFRA = Path(__file__).resolve().parents[2] / "infra"
OVERLAYS = ("local", "cluster")


def kubernetes_version() -> str:
    """The newest Kubernetes whose schemas kubernetes-validate bundles (1.37 with 1.37.0)."""
    import kubernetes_validate

    return kubernetes_validate.latest_version()


@pytest.fixture(scope="module", params=OVERLAYS)
def built(request) -> tuple[str, list[dict]]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl (with kustomize) is not installed")
    res = subprocess.run(["kubectl", "kustomize", str(INFRA / "overlays" / request.param)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return request.param, [o for o in yaml.safe_load_all(res.stdout) if o]


def test_every_object_validates_strictly(built):
    import kubernetes_validate

    _, objects = built
    version = kubernetes_version()
    assert tuple(int(x) for x in version.split(".")[:2]) >= (1, 33), f"validating against an old Kubernetes {version}"
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)  # raises on an unknown or mistyped field


def test_strict_validation_would_catch_a_typo():
    import kubernetes_validate

    bad = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"ports": [{"port": 80, "targetPrt": 8080}]}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, kubernetes_version(), strict=True)


def test_what_the_pipeline_needs_is_there(built):
    overlay, objects = built
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    for needed in [
        ("Namespace", "lmforge"),
        ("ServiceAccount", "lmforge-pipeline-runner"),
        ("Role", "lmforge-pipeline-runner"),
        ("RoleBinding", "lmforge-pipeline-runner"),
        ("Deployment", "lmforge-mlflow"),
        ("Service", "lmforge-mlflow"),
        ("StatefulSet", "lmforge-postgres"),
        ("StatefulSet", "lmforge-minio"),
        ("PriorityClass", "lmforge-gpu-training"),
        ("NetworkPolicy", "default-deny-ingress"),
    ]:
        assert needed in kinds, (overlay, needed)
    if overlay == "cluster":
        assert ("PersistentVolumeClaim", "lmforge-shared") in kinds
    namespaced = [o for o in objects if o["kind"] not in ("Namespace", "PriorityClass")]
    assert {o["metadata"].get("namespace") for o in namespaced} == {"lmforge"}


def test_the_presets_name_what_infra_creates(built):
    from pipelines.config import load_config

    _, objects = built
    names = {o["metadata"]["name"] for o in objects}
    gpu = load_config("gpu").cluster
    assert gpu.service_account in names
    assert gpu.placement("pretrain").priority_class in names


def test_no_secret_values_and_least_privilege(built):
    _, objects = built
    assert not [o for o in objects if o["kind"] == "Secret"], "secrets are created by hand from infra/secrets/*.env.example"
    [role] = [o for o in objects if o["kind"] == "Role"]
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]
        if "secrets" in rule["resources"]:
            assert rule["verbs"] == ["get"] and rule.get("resourceNames"), "secrets: named ones, read only"
    for example in (INFRA / "secrets").glob("*.env.example"):
        values = [line.split("=", 1)[1] for line in example.read_text().splitlines() if "=" in line and not line.startswith("#")]
        assert values and all(v == "" for v in values), example


def test_workloads_run_non_root_with_probes_and_limits(built):
    _, objects = built
    workloads = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet", "Job")]
    assert len(workloads) >= 4
    for w in workloads:
        pod = w["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"].get("runAsUser", 1) != 0, w["metadata"]["name"]
        for c in pod["containers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False and c["securityContext"]["capabilities"]["drop"] == ["ALL"]
            assert c["resources"]["limits"]["memory"] and c["resources"]["requests"]["cpu"]
            assert ":" in c["image"] and not c["image"].endswith(":latest"), c["image"]
            if w["kind"] != "Job":
                assert c["readinessProbe"] and c["livenessProbe"], (w["metadata"]["name"], c["name"])
            if "lmforge-cpu" in c["image"]:
                assert c["image"] == f"ghcr.io/lmforge/lmforge-cpu:{images.VERSION}", "infra runs the project version's image"


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not installed")
def test_terraform_is_formatted():
    """Providers cannot be downloaded here, so `fmt -check` is the whole Terraform check."""
    res = subprocess.run(["terraform", "fmt", "-check", "-recursive", str(INFRA / "terraform")], capture_output=True, text=True)
    assert res.returncode == 0, f"run terraform fmt -recursive infra/terraform: {res.stdout}"
    assert list((INFRA / "terraform").rglob("*.tf"))


def test_mlflow_server_authenticates_with_credentials_from_secrets(built, tmp_path, monkeypatch):
    """The server runs MLflow's basic-auth app with an ini MLflow itself reads, admin and CSRF key
    from the lmforge-mlflow-admin Secret, and no password in the ini, the args or a literal value."""
    from mlflow.server.auth.config import read_auth_config

    _, objects = built
    [deploy] = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "lmforge-mlflow"]
    pod = deploy["spec"]["template"]["spec"]
    [server] = pod["containers"]
    assert "--app-name=basic-auth" in server["args"]
    env = {e["name"]: e for e in server["env"]}
    for name, key in [("MLFLOW_AUTH_ADMIN_USERNAME", "username"), ("MLFLOW_AUTH_ADMIN_PASSWORD", "password"), ("MLFLOW_FLASK_SERVER_SECRET_KEY", "flask_secret_key")]:
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "lmforge-mlflow-admin", "key": key}, name
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "lmforge-postgres"
    assert not [e for e in server["env"] if any(w in e["name"] for w in ("PASSWORD", "SECRET")) and "value" in e], "secrets only by reference"

    # the ini is the ConfigMap mounted where MLFLOW_AUTH_CONFIG_PATH points; MLflow's own reader parses it
    [mount] = [m for m in server["volumeMounts"] if env["MLFLOW_AUTH_CONFIG_PATH"]["value"].startswith(m["mountPath"] + "/")]
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    [config_map] = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == volume["configMap"]["name"]]
    ini = tmp_path / "basic_auth.ini"
    ini.write_text(config_map["data"][env["MLFLOW_AUTH_CONFIG_PATH"]["value"].rsplit("/", 1)[1]])
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(ini))
    for name in ("MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    config = read_auth_config()
    assert config.default_permission in ("READ", "NO_PERMISSIONS"), "an authenticated user gets no write rights by default"
    assert config.admin_password is None and config.database_uri.startswith("postgresql://") and "@" not in config.database_uri
    assert config.authorization_function == "mlflow.server.auth:authenticate_request_basic_auth"


def test_the_pipeline_user_setup_needs_its_secrets(monkeypatch):
    """The documented setup script (infra/README.md, step 3) exists and refuses to run half-configured."""
    from pipelines import mlflow_auth_setup

    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "LMFORGE_PIPELINE_USERNAME", "LMFORGE_PIPELINE_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    assert mlflow_auth_setup.main() == 2
    assert "python -m pipelines.mlflow_auth_setup" in (INFRA / "README.md").read_text()
