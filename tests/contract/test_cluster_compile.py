"""Contract: `lmforge compile --target cluster` puts GPUs, node pools, tolerations, priority and
secrets-as-env on the tasks the preset names, pins every image, and writes no secret value."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from components.shared import images
from components.shared.errors import UserError
from pipelines.cluster import PRIORITY_LABEL
from pipelines.compile import compile_pipeline
from pipelines.config import STAGES, load_config, presets

SECRET_VALUES = {"MLFLOW_TRACKING_PASSWORD": "pa55-not-for-yaml", "AWS_SECRET_ACCESS_KEY": "aws-key-not-for-yaml", "KFP_TOKEN": "kfp-token-not-for-yaml"}


def compiled_docs(path):
    """The IR document and the Kubernetes platform document."""
    docs = list(yaml.safe_load_all(path.read_text()))
    return docs[0], (docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"] if len(docs) > 1 else {})


@pytest.fixture(scope="module")
def gpu(tmp_path_factory):
    path = tmp_path_factory.mktemp("cluster") / "gpu.yaml"
    with pytest.MonkeyPatch.context() as mp:  # environment that must never reach the YAML
        for var, value in SECRET_VALUES.items():
            mp.setenv(var, value)
        res = subprocess.run([sys.executable, "-m", "pipelines.cli", "compile", "--target", "cluster", "--config", "gpu", "-o", str(path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    ir, platform = compiled_docs(path)
    return load_config("gpu"), ir, platform, path.read_text()


@pytest.mark.parametrize("stage", ["pretrain", "finetune"])
def test_training_tasks_request_the_configured_gpus_on_the_gpu_pool(gpu, stage):
    config, ir, platform, _ = gpu
    place = config.cluster.placement(stage)
    assert place.accelerator_count >= 1 and place.node_selector and place.tolerations  # the preset says so
    container = ir["deploymentSpec"]["executors"][f"exec-{stage}-op"]["container"]
    accel = container["resources"]["accelerator"]
    assert accel["resourceType"] == place.accelerator_type == "nvidia.com/gpu"
    assert accel["resourceCount"] == str(place.accelerator_count)
    assert container["resources"]["resourceCpuRequest"] == place.cpu_request
    assert container["resources"]["resourceMemoryLimit"] == place.memory_limit
    k8s = platform[f"exec-{stage}-op"]
    assert k8s["nodeSelector"]["labels"] == place.node_selector
    assert k8s["tolerations"] == [t.model_dump(exclude_none=True) for t in place.tolerations]
    assert k8s["podMetadata"]["labels"][PRIORITY_LABEL] == place.priority_class


def test_pretrain_uses_one_node_with_several_gpus(gpu):
    config, ir, _, _ = gpu
    assert config.cluster.placement("pretrain").accelerator_count == 8
    model = config.pretrain.model
    assert (model.hidden_size, model.num_layers, model.num_heads, model.intermediate_size, model.max_position) == (768, 12, 12, 3072, 512)
    assert config.clean_tokenize.block_size == 512
    assert ir["root"]["dag"]["tasks"]["pretrain-op"]["retryPolicy"]["maxRetryCount"] == 2


def test_data_stages_stay_off_the_gpu_pool(gpu):
    _, ir, platform, _ = gpu
    for stage in ("ingest", "clean_tokenize", "validate", "register"):
        name = stage.replace("_", "-")
        assert "accelerator" not in ir["deploymentSpec"]["executors"][f"exec-{name}-op"]["container"].get("resources", {})
        assert "nodeSelector" not in platform[f"exec-{name}-op"] and "tolerations" not in platform[f"exec-{name}-op"]


def test_secrets_reach_every_task_as_env_by_name_only(gpu):
    config, _, platform, text = gpu
    wanted = {(s.name, key, env) for s in config.cluster.secrets for env, key in s.env.items()}
    assert len(platform) == len(STAGES)
    for name, k8s in platform.items():
        got = {(e["secretName"], kv["secretKey"], kv["envVar"]) for e in k8s["secretAsEnv"] for kv in e["keyToEnv"]}
        assert got == wanted, name
    for value in SECRET_VALUES.values():
        assert value not in text


def test_every_image_pinned_to_the_project_version(gpu):
    _, ir, _, _ = gpu
    seen = {ex["container"]["image"] for ex in ir["deploymentSpec"]["executors"].values()}
    assert seen == {images.CPU_IMAGE, images.GPU_IMAGE}
    assert all(image.endswith(f":{images.VERSION}") for image in seen)


def test_register_is_never_cached_and_caching_follows_the_preset(gpu):
    _, ir, _, _ = gpu
    tasks = ir["root"]["dag"]["tasks"]
    assert not tasks["register-op"].get("cachingOptions", {}).get("enableCache")
    assert tasks["pretrain-op"]["cachingOptions"]["enableCache"] is True


def test_image_digests_pin_the_images_by_digest(tmp_path):
    digest = "sha256:" + "ab" * 32
    out = tmp_path / "p.yaml"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LMFORGE_IMAGE_DIGESTS": f"cpu={digest},train={digest.replace('ab', 'cd')}"}
    res = subprocess.run([sys.executable, "-m", "pipelines.cli", "compile", "--target", "cluster", "--config", "tiny", "-o", str(out)], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    ir, _ = compiled_docs(out)
    seen = {ex["container"]["image"] for ex in ir["deploymentSpec"]["executors"].values()}
    assert seen == {f"ghcr.io/lmforge/lmforge-cpu:{images.VERSION}@{digest}", f"ghcr.io/lmforge/lmforge-train:{images.VERSION}@{digest.replace('ab', 'cd')}"}

    env["LMFORGE_IMAGE_DIGESTS"] = "train=latest"
    res = subprocess.run([sys.executable, "-m", "pipelines.cli", "compile", "--target", "cluster", "--config", "tiny", "-o", str(tmp_path / "q.yaml")], capture_output=True, text=True, env=env)
    assert res.returncode == 2 and res.stderr.startswith("error: LMFORGE_IMAGE_DIGESTS entry 'train=latest'") and len(res.stderr.splitlines()) == 1
    assert not (tmp_path / "q.yaml").exists()


@pytest.mark.parametrize("preset", presets())
def test_every_preset_compiles_for_both_targets(preset, tmp_path):
    config = load_config(preset)
    local_ir, local_platform = compiled_docs(compile_pipeline(config, preset, tmp_path / "local.yaml"))
    cluster_ir, cluster_platform = compiled_docs(compile_pipeline(config, preset, tmp_path / "cluster.yaml", target="cluster"))
    assert local_platform == {}, "the local target carries no Kubernetes settings"
    assert cluster_platform and set(cluster_ir["root"]["dag"]["tasks"]) == set(local_ir["root"]["dag"]["tasks"])
    # Building the cluster DAG leaves the local one as it was.
    again, platform = compiled_docs(compile_pipeline(config, preset, tmp_path / "again.yaml"))
    assert platform == {} and again["deploymentSpec"] == local_ir["deploymentSpec"]


def test_cluster_placement_is_not_part_of_the_recipe_hash():
    base = load_config("gpu")
    moved = load_config("gpu", ["cluster.stages.pretrain.cpu_request='32'", "cluster.stages.pretrain.priority_class=other", "cluster.experiment=elsewhere"])
    assert moved.cluster.placement("pretrain").cpu_request == "32"
    assert moved.hash() == base.hash()
    assert load_config("gpu", ["pretrain.max_steps=5"]).hash() != base.hash()


def test_a_stage_entry_overrides_the_defaults_key_by_key():
    config = load_config("gpu")
    pretrain, ingest = config.cluster.placement("pretrain"), config.cluster.placement("ingest")
    assert ingest.cpu_request == config.cluster.defaults.cpu_request == "2"
    assert pretrain.cpu_request == "64" and pretrain.retry_backoff == "5m"
    assert config.cluster.placement("validate").retries == config.cluster.defaults.retries == 1


@pytest.mark.parametrize(
    "override, message",
    [
        ("cluster.stages.pretrian.accelerator_count=2", "unknown stage 'pretrian'"),
        ("cluster.stages.pretrain.accelerator_type=null", "pretrain sets accelerator_count but no accelerator_type"),
        ("cluster.defaults.memory_limit=16 GB", "is not a Kubernetes quantity"),
        ("cluster.stages.pretrain.gpus=8", "unknown config key 'cluster.stages.pretrain.gpus'"),
        ("cluster.secrets=[{name: Bad_Name, env: {X: y}}]", "is not a Kubernetes name"),
        ("cluster.stages.pretrain.accelerator_count=4", "pretrain.nproc is 8 but cluster.stages.pretrain.accelerator_count is 4"),
        ("cluster.stages.finetune.accelerator_count=2", "finetune.nproc is 1 but cluster.stages.finetune.accelerator_count is 2"),
    ],
)
def test_bad_cluster_settings_are_one_line_naming_the_key(override, message):
    with pytest.raises(UserError) as err:
        load_config("gpu", [override])
    assert message in str(err.value) and "\n" not in str(err.value)
