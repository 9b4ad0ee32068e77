"""Pretraining on more than one node: a Kubeflow PyTorchJob manifest (kubeflow.org/v1).

The DAG runs every stage as one pod, so it trains on at most one node (all its GPUs under
torchrun). For more, `lmforge trainjob --config gpu --nodes 4` writes a PyTorchJob that runs the
same `pretrain` function under torchrun on N nodes, with the image, GPUs, node pool, tolerations,
priority class and secrets of the preset's `cluster.stages.pretrain`. It reads the cleaned data
from and writes the model to a shared PersistentVolumeClaim; infra/README.md describes the
hand-off to the DAG. The training operator sets PET_NNODES, PET_NODE_RANK, PET_MASTER_ADDR and
PET_MASTER_PORT in every pod, and torchrun reads them as its defaults.

    python -m pipelines.trainjob --cleaned DIR --out DIR --config JSON   # what each pod runs
"""

from __future__ import annotations

import argparse
import json
import re
import sys

from components.shared.errors import UserError
from pipelines.config import PipelineConfig

API_VERSION = "kubeflow.org/v1"
KIND = "PyTorchJob"
CONTAINER = "pytorch"  # the training operator finds the training container by this name


def trainjob_manifest(config: PipelineConfig, nodes: int, name: str, cleaned: str, out: str, pvc: str = "", namespace: str = "lmforge") -> dict:
    """A PyTorchJob: 1 Master + nodes-1 Workers, each with the pretrain task's placement."""
    from components.shared.images import GPU_IMAGE

    if nodes < 2:
        raise UserError(f"--nodes {nodes}: a multi-node job needs 2 or more nodes; one node runs inside the DAG (lmforge submit)")
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?", name):
        raise UserError(f"job name {name!r} is not a Kubernetes name: lower case letters, digits and '-', at most 52 characters")
    place = config.cluster.placement("pretrain")
    claim = pvc or (place.pvc.name if place.pvc else "")
    if not claim:
        raise UserError("the job needs a shared volume for the cleaned data and the model: set cluster.stages.pretrain.pvc or pass --pvc")
    mount = place.pvc.mount_path if place.pvc else "/mnt/lmforge"
    for path, flag in ((cleaned, "--cleaned"), (out, "--out")):
        if not path.startswith(mount.rstrip("/") + "/"):
            raise UserError(f"{flag} {path}: must lie on the shared volume, under {mount}/")
    pod = _pod_spec(config, place, GPU_IMAGE, claim, mount, ["--cleaned", cleaned, "--out", out, "--config", json.dumps(config.section("pretrain"), sort_keys=True)])
    template = {"metadata": {"labels": {"app.kubernetes.io/name": "lmforge", "app.kubernetes.io/component": "pretrain"}}, "spec": pod}
    replica = {"restartPolicy": "OnFailure", "template": template}
    run_policy = {"cleanPodPolicy": "None", "backoffLimit": place.retries}
    if place.priority_class:
        run_policy["schedulingPolicy"] = {"priorityClass": place.priority_class}
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/name": "lmforge", "lmforge.io/config-hash": config.hash()[:63]}},
        "spec": {
            "nprocPerNode": str(place.nproc_per_node),
            "runPolicy": run_policy,
            "pytorchReplicaSpecs": {"Master": {"replicas": 1, **replica}, "Worker": {"replicas": nodes - 1, **replica}},
        },
    }


def _pod_spec(config: PipelineConfig, place, image: str, claim: str, mount: str, args: list[str]) -> dict:
    """The pod of every node: torchrun over the pretrain entry point, on the GPU pool."""
    requests = {k: v for k, v in (("cpu", place.cpu_request), ("memory", place.memory_request)) if v}
    limits = {k: v for k, v in (("cpu", place.cpu_limit), ("memory", place.memory_limit)) if v}
    if place.accelerator_count:
        limits[place.accelerator_type] = str(place.accelerator_count)
    env = [{"name": var, "valueFrom": {"secretKeyRef": {"name": s.name, "key": key}}} for s in config.cluster.secrets_for("pretrain") for var, key in s.env.items()]
    container = {
        "name": CONTAINER,
        "image": image,
        "command": ["torchrun", "-m", "pipelines.trainjob"],
        "args": args,
        "env": env,
        "resources": {k: v for k, v in (("requests", requests), ("limits", limits)) if v},
        # NCCL moves tensors through /dev/shm; the container default (64 MiB) stalls it.
        "volumeMounts": [{"name": "data", "mountPath": mount}, {"name": "dshm", "mountPath": "/dev/shm"}],
        "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
    }
    pod = {
        "containers": [container],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}, {"name": "dshm", "emptyDir": {"medium": "Memory"}}],
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "fsGroup": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
    }
    if config.cluster.service_account:
        pod["serviceAccountName"] = config.cluster.service_account
    if place.node_selector:
        pod["nodeSelector"] = dict(place.node_selector)
    if place.tolerations:
        pod["tolerations"] = [t.model_dump(exclude_none=True) for t in place.tolerations]
    if place.priority_class:
        pod["priorityClassName"] = place.priority_class
    return pod


def main(argv: list[str] | None = None) -> int:
    """What each process of the job runs (under torchrun): the pretrain stage on the shared volume."""
    from pathlib import Path

    from components.pretrain.pretrain import PretrainConfig, pretrain

    ap = argparse.ArgumentParser(prog="python -m pipelines.trainjob", description="pretrain on the shared volume (one process of a PyTorchJob)")
    ap.add_argument("--cleaned", required=True, help="clean_tokenize's output directory")
    ap.add_argument("--out", required=True, help="where the model is written")
    ap.add_argument("--config", required=True, help="the preset's pretrain section as JSON")
    args = ap.parse_args(argv)
    try:
        config = PretrainConfig.from_params(json.loads(args.config), "pretrain")
        # On the shared volume, so a restarted pod resumes from the same step as every other node.
        checkpoints = Path(config.checkpoint_dir) if config.checkpoint_dir else Path(args.out).parent / "checkpoints"
        metrics = pretrain(Path(args.cleaned), Path(args.out), config, checkpoint_dir=checkpoints)
    except UserError as exc:
        print(f"error: pretrain: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(metrics, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
