"""Contract: `lmforge trainjob` writes a PyTorchJob (kubeflow.org/v1) for multi-node pretraining
with the preset's pretrain placement; its pod template validates strictly as a Kubernetes
PodTemplate (kubernetes-validate has no CRD schemas, so the job's own fields are checked here),
and the command each pod runs trains a model on real data."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from components.shared import images
from components.shared.errors import UserError
from pipelines.config import load_config
from pipelines.trainjob import trainjob_manifest


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    out = tmp_path_factory.mktemp("job") / "job.yaml"
    cmd = [sys.executable, "-m", "pipelines.cli", "trainjob", "--config", "gpu", "--nodes", "4", "--pvc", "lmforge-shared", "-o", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return load_config("gpu"), yaml.safe_load(out.read_text())


def test_job_structure(job):
    config, manifest = job
    assert manifest["apiVersion"] == "kubeflow.org/v1" and manifest["kind"] == "PyTorchJob"
    assert manifest["metadata"] == {**manifest["metadata"], "name": "lmforge-pretrain", "namespace": "lmforge"}
    spec = manifest["spec"]
    assert set(spec) == {"nprocPerNode", "runPolicy", "pytorchReplicaSpecs"}
    assert spec["nprocPerNode"] == "8"
    replicas = spec["pytorchReplicaSpecs"]
    assert set(replicas) == {"Master", "Worker"}
    assert replicas["Master"]["replicas"] + replicas["Worker"]["replicas"] == 4
    assert spec["runPolicy"]["schedulingPolicy"]["priorityClass"] == config.cluster.placement("pretrain").priority_class
    for replica in replicas.values():
        assert set(replica) == {"replicas", "restartPolicy", "template"} and replica["restartPolicy"] == "OnFailure"


def test_pod_template_validates_strictly_and_carries_the_placement(job):
    import kubernetes_validate

    config, manifest = job
    place = config.cluster.placement("pretrain")
    template = manifest["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]
    wrapped = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "check"}, "template": template}
    kubernetes_validate.validate(wrapped, kubernetes_validate.latest_version(), strict=True)
    pod = template["spec"]
    [container] = pod["containers"]
    assert container["name"] == "pytorch", "the training operator looks for this container name"
    assert container["image"] == images.GPU_IMAGE and container["image"].endswith(f":{images.VERSION}")
    assert container["command"] == ["torchrun", "-m", "pipelines.trainjob"]
    assert json.loads(container["args"][container["args"].index("--config") + 1]) == config.section("pretrain")
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert pod["nodeSelector"] == place.node_selector and pod["priorityClassName"] == place.priority_class
    assert pod["tolerations"] == [t.model_dump(exclude_none=True) for t in place.tolerations]
    env = {e["name"]: e for e in container["env"]}
    assert env["MLFLOW_TRACKING_URI"]["valueFrom"]["secretKeyRef"] == {"name": "lmforge-mlflow", "key": "tracking_uri"}
    assert all("value" not in e for e in env.values()), "secrets by reference only"
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "lmforge-shared"}} in pod["volumes"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"nodes": 1}, "needs 2 or more nodes"),
        ({"pvc": ""}, "needs a shared volume"),
        ({"cleaned": "/data/cleaned"}, "must lie on the shared volume"),
        ({"name": "Pretrain_1"}, "is not a Kubernetes name"),
    ],
)
def test_bad_requests_are_one_line(kwargs, message):
    args = {"nodes": 2, "name": "lmforge-pretrain", "cleaned": "/mnt/lmforge/cleaned", "out": "/mnt/lmforge/pretrained", "pvc": "lmforge-shared", **kwargs}
    with pytest.raises(UserError, match=message):
        trainjob_manifest(load_config("gpu"), **args)


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None, reason="torchrun not in the venv")
def test_the_pod_command_trains_under_torchrun(cleaned_dir, tmp_path):
    """What each pod runs, on the tiny real chain: torchrun -m pipelines.trainjob (one process here)."""
    model = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64, "max_position": 64}
    section = {"model": model, "max_steps": 4, "batch_size": 8, "log_every": 2, "threads": 1}
    torchrun = str(Path(sys.executable).parent / "torchrun")
    cmd = [torchrun, "--nproc_per_node", "1", "-m", "pipelines.trainjob", "--cleaned", str(cleaned_dir), "--out", str(tmp_path / "mlm"), "--config", json.dumps(section)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    metrics = json.loads(res.stdout.strip().splitlines()[-1])
    assert metrics["pretrain/final_loss"] > 0 and (tmp_path / "mlm" / "config.json").is_file()
