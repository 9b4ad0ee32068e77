"""Contract: every preset compiles into a KFP IR YAML with seven tasks, each image pinned."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from components.shared import images
from pipelines.compile import compile_pipeline
from pipelines.config import STAGES, load_config, presets

GPU_STAGES = {"pretrain", "finetune", "evaluate"}


SECRET_URI = "https://someone:hunter2@mlflow.example.invalid"


@pytest.fixture(scope="module", params=presets())
def compiled(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("ir") / f"{request.param}.yaml"
    config = load_config(request.param)
    with pytest.MonkeyPatch.context() as mp:  # environment that must never reach the YAML
        mp.setenv("MLFLOW_TRACKING_URI", SECRET_URI)
        compile_pipeline(config, request.param, path)
    return request.param, config, yaml.safe_load(path.read_text()), path.read_text()


def test_seven_tasks_in_dag_order(compiled):
    _, _, spec, _ = compiled
    tasks = spec["root"]["dag"]["tasks"]
    assert sorted(tasks) == sorted(f"{s.replace('_', '-')}-op" for s in STAGES)
    deps = {name: set(t.get("dependentTasks", [])) for name, t in tasks.items()}
    assert "validate-op" in deps["pretrain-op"], "pretraining must wait for validation"
    assert {"finetune-op", "evaluate-op"} <= deps["register-op"]
    # The pretrained model travels under an objective-neutral name (a causal LM is no "mlm").
    for consumer in ("finetune-op", "evaluate-op"):
        assert tasks[consumer]["inputs"]["artifacts"]["pretrained"]["taskOutputArtifact"] == {"outputArtifactKey": "pretrained", "producerTask": "pretrain-op"}


def test_every_image_pinned_to_the_project_version(compiled):
    _, _, spec, _ = compiled
    executors = spec["deploymentSpec"]["executors"]
    assert len(executors) == len(STAGES)
    for name, ex in executors.items():
        image = ex["container"]["image"]
        stage = name.removeprefix("exec-").removesuffix("-op").replace("-", "_")
        expected = images.GPU_IMAGE if stage in GPU_STAGES else images.CPU_IMAGE
        assert image == expected and image.endswith(f":{images.VERSION}"), (name, image)
        # install_kfp_package=False: the image brings kfp; no pip call per task.
        assert "pip install" not in " ".join(ex["container"].get("command", []))


def test_each_stage_gets_its_own_section_as_a_parameter_default(compiled):
    _, config, spec, text = compiled
    params = spec["root"]["inputDefinitions"]["parameters"]
    for stage in STAGES:
        assert params[f"{stage}_config"]["defaultValue"] == config.section(stage)
    lineage = params["lineage"]["defaultValue"]
    assert lineage["config_hash"] == config.hash() and lineage["images"] == images.IMAGES
    # Environment never leaks into what is sent to a cluster.
    assert "hunter2" not in text and "mlflow.example.invalid" not in text and "MLFLOW_TRACKING_URI" not in text


def test_cli_compile_writes_the_yaml(tmp_path):
    out = tmp_path / "p.yaml"
    res = subprocess.run([sys.executable, "-m", "pipelines.cli", "compile", "--config", "tiny", "-o", str(out)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert len(yaml.safe_load(out.read_text())["root"]["dag"]["tasks"]) == 7
