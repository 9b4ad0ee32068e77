"""Contract: the manifests' network and credential promises, checked on the built overlays.

NetworkPolicies are evaluated here as Kubernetes evaluates them (a pod is isolated for a
direction once any policy selects it; then some rule must admit the peer and the port), so the
tests ask the questions that matter: can MLflow reach Postgres, can a pod in another namespace
carrying the pipeline label reach MLflow? Credentials: every password or key only by reference to
a Secret, never in a command line, and MLflow with a bucket-scoped object-store user.
"""

from __future__ import annotations

import json
import re

import pytest
from test_infra import built  # noqa: F401 (the built overlays, both of them)

NS = "lmforge"
MLFLOW = (NS, {"app.kubernetes.io/name": "lmforge-mlflow"})
POSTGRES = (NS, {"app.kubernetes.io/name": "lmforge-postgres"})
MINIO = (NS, {"app.kubernetes.io/name": "lmforge-minio"})
BUCKETS_JOB = (NS, {"app.kubernetes.io/name": "lmforge-minio-buckets"})
PRETRAIN = (NS, {"app.kubernetes.io/name": "lmforge", "app.kubernetes.io/component": "pretrain"})
KFP_POD = ("kubeflow", {"workflows.argoproj.io/workflow": "lmforge-abc12"})
KFP_POD_PROFILE = (NS, {"workflows.argoproj.io/workflow": "lmforge-abc12"})
KUBE_DNS = ("kube-system", {"k8s-app": "kube-dns"})
# Pods that carry the labels but not the namespace, or the namespace but not the labels.
IMPOSTOR = ("default", {"workflows.argoproj.io/workflow": "x", "app.kubernetes.io/name": "lmforge-mlflow", "app.kubernetes.io/component": "pretrain"})
UNLABELLED = (NS, {"app": "debug-shell"})


def selects(selector: dict | None, labels: dict) -> bool:
    if selector is None:
        return False
    ok = all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values", [])
        ok &= {"In": labels.get(key) in values, "NotIn": labels.get(key) not in values, "Exists": key in labels, "DoesNotExist": key not in labels}[op]
    return ok


def peer_admits(peer: dict, policy_ns: str, pod: tuple[str, dict]) -> bool:
    if "ipBlock" in peer:
        return False  # in-cluster pods are not matched by ipBlock rules here
    ns, labels = pod
    in_ns = selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": ns}) if "namespaceSelector" in peer else ns == policy_ns
    return in_ns and (selects(peer["podSelector"], labels) if "podSelector" in peer else True)


def port_admits(rule: dict, port: int, protocol: str) -> bool:
    return not rule.get("ports") or any(p.get("port") == port and p.get("protocol", "TCP") == protocol for p in rule["ports"])


def direction_allows(policies: list[dict], pod: tuple[str, dict], peer: tuple[str, dict], port: int, protocol: str, kind: str) -> bool:
    field, peers_key = ("ingress", "from") if kind == "Ingress" else ("egress", "to")
    mine = [p for p in policies if p["metadata"].get("namespace") == pod[0] and kind in p["spec"].get("policyTypes", []) and selects(p["spec"]["podSelector"], pod[1])]
    if not mine:
        return True  # not isolated in this direction (e.g. a pod in a namespace these manifests do not cover)
    for policy in mine:
        for rule in policy["spec"].get(field) or []:
            if port_admits(rule, port, protocol) and (peers_key not in rule or any(peer_admits(x, pod[0], peer) for x in rule[peers_key])):
                return True
    return False


def reachable(policies, src, dst, port: int, protocol: str = "TCP") -> bool:
    return direction_allows(policies, src, dst, port, protocol, "Egress") and direction_allows(policies, dst, src, port, protocol, "Ingress")


@pytest.fixture
def policies(built):  # noqa: F811
    return [o for o in built[1] if o["kind"] == "NetworkPolicy"]


def test_what_must_connect_does(policies):
    for src, dst, port in [
        (MLFLOW, POSTGRES, 5432), (MLFLOW, MINIO, 9000), (BUCKETS_JOB, MINIO, 9000),
        (KFP_POD, MLFLOW, 5000), (KFP_POD, MINIO, 9000), (KFP_POD_PROFILE, MLFLOW, 5000), (KFP_POD_PROFILE, MINIO, 9000),
        (PRETRAIN, MLFLOW, 5000), (PRETRAIN, MINIO, 9000), (PRETRAIN, PRETRAIN, 29500),
    ]:  # fmt: skip
        assert reachable(policies, src, dst, port), (src, dst, port)
    for pod in (MLFLOW, POSTGRES, MINIO, BUCKETS_JOB, PRETRAIN, KFP_POD_PROFILE, UNLABELLED):
        assert reachable(policies, pod, KUBE_DNS, 53, "UDP") and reachable(policies, pod, KUBE_DNS, 53, "TCP"), pod


def test_labels_alone_or_the_namespace_alone_get_nowhere(policies):
    for src in (IMPOSTOR, UNLABELLED):
        for dst, port in [(MLFLOW, 5000), (MINIO, 9000), (POSTGRES, 5432), (PRETRAIN, 29500)]:
            assert not reachable(policies, src, dst, port), (src, dst)
    for src, dst, port in [
        (KFP_POD, POSTGRES, 5432),
        (PRETRAIN, POSTGRES, 5432),
        (BUCKETS_JOB, MLFLOW, 5000),
        (MLFLOW, KFP_POD, 8080),
        (POSTGRES, MINIO, 9000),
        (MINIO, MLFLOW, 5000),
        (MLFLOW, MLFLOW, 5000),
    ]:
        assert not reachable(policies, src, dst, port), (src, dst, port)


def test_deny_by_default_both_ways_and_every_foreign_peer_names_its_namespace(policies):
    names = {p["metadata"]["name"]: p["spec"] for p in policies}
    assert names["default-deny-ingress"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    assert names["default-deny-egress"] == {"podSelector": {}, "policyTypes": ["Egress"]}
    for p in policies:
        for rule in (p["spec"].get("ingress") or []) + (p["spec"].get("egress") or []):
            assert rule.get("from", rule.get("to")), f"{p['metadata']['name']}: a rule without peers admits everyone"
            for peer in rule.get("from", rule.get("to")):
                if "namespaceSelector" in peer:
                    keys = [e["key"] for e in peer["namespaceSelector"].get("matchExpressions", [])] + list(peer["namespaceSelector"].get("matchLabels", {}))
                    assert keys == ["kubernetes.io/metadata.name"] and peer.get("podSelector"), (p["metadata"]["name"], peer)
                if "ipBlock" in peer:  # egress to the outside: HTTPS only, never the node's metadata credentials
                    assert "169.254.169.254/32" in peer["ipBlock"].get("except", []) and [x["port"] for x in rule["ports"]] == [443], p["metadata"]["name"]


def containers(objects):
    for o in objects:
        if o["kind"] in ("Deployment", "StatefulSet", "Job"):
            for c in o["spec"]["template"]["spec"]["containers"]:
                yield o, c


def test_passwords_only_from_secrets_and_never_on_a_command_line(built):  # noqa: F811
    _, objects = built
    for o, c in containers(objects):
        where = f"{o['metadata']['name']}/{c['name']}"
        env = c.get("env", [])
        assert len({e["name"] for e in env}) == len(env), f"{where}: an env name set twice"
        from_secrets = {e["name"] for e in env if "secretKeyRef" in e.get("valueFrom", {})}
        assert not [e for e in env if re.search(r"PASSWORD|SECRET|TOKEN|_KEY$", e["name"]) and "value" in e], f"{where}: a literal credential"
        argv = "\n".join(c.get("command", []) + c.get("args", []))
        assert not {m for m in re.findall(r"\$\((\w+)\)", argv)} & from_secrets, f"{where}: a Secret expanded into the command line"
        assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", argv), f"{where}: credentials in a URI argument"
        script_lines = [line for line in argv.splitlines() if any(f"${s}" in line or f"${{{s}}}" in line for s in from_secrets if re.search(r"PASSWORD|SECRET", s))]
        # printf is a builtin of sh: piping from it puts the secret in no process's argv
        assert all(line.strip().startswith("printf ") for line in script_lines), f"{where}: a secret passed as an argument: {script_lines}"


def test_mlflow_has_a_bucket_scoped_object_store_user_not_the_root(built):  # noqa: F811
    _, objects = built
    root_users = {o["metadata"]["name"] for o, c in containers(objects) if any(e.get("valueFrom", {}).get("secretKeyRef", {}).get("name") == "lmforge-minio" for e in c.get("env", []))}
    assert root_users == {"lmforge-minio", "lmforge-minio-buckets"}, "only MinIO itself and the bucket Job hold the root keys"
    [(_, mlflow)] = [(o, c) for o, c in containers(objects) if o["metadata"]["name"] == "lmforge-mlflow"]
    env = {e["name"]: e for e in mlflow["env"]}
    for name, key in [("AWS_ACCESS_KEY_ID", "access_key_id"), ("AWS_SECRET_ACCESS_KEY", "secret_access_key")]:
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "lmforge-minio-mlflow", "key": key}
    store = [a for a in mlflow["args"] if a.startswith("--backend-store-uri=")]
    assert store == ["--backend-store-uri=postgresql://lmforge-postgres:5432/mlflow"] and env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "lmforge-postgres"

    [config] = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "lmforge-minio-policies"]
    for name, bucket in [("lmforge-mlflow-artifacts", "mlflow-artifacts"), ("lmforge-dvc", "lmforge-dvc")]:
        resources = {r for s in json.loads(config["data"][f"{name}.json"])["Statement"] for r in s["Resource"]}
        assert resources == {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"}, name
        actions = {a for s in json.loads(config["data"][f"{name}.json"])["Statement"] for a in s["Action"]}
        assert all(a.startswith("s3:") and "*" not in a for a in actions) and not any(a.startswith("s3:PutBucket") or a.startswith("s3:DeleteBucket") for a in actions)
    [(_, job)] = [(o, c) for o, c in containers(objects) if o["metadata"]["name"] == "lmforge-minio-buckets"]
    script = "\n".join(job["command"])
    for name in ("lmforge-mlflow-artifacts", "lmforge-dvc"):
        assert f"mc admin policy attach lmforge {name} --user" in script
