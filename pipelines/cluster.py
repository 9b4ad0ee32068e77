"""Where each task runs on a Kubernetes cluster: GPUs, node pools, resources, secrets, retries.

The preset's `cluster:` section. It is applied to the tasks only when the pipeline is compiled
for the cluster (`lmforge compile --target cluster`, `lmforge submit`); `kfp.local` never sees it,
and it is not part of the training-recipe hash (`PipelineConfig.hash`): moving a run to another
node pool does not change what is trained.

    cluster:
      defaults: {cpu_request: "1", memory_request: 4Gi}          # every task
      stages:
        pretrain: {accelerator_type: nvidia.com/gpu, accelerator_count: 8, node_selector: {...}}
      secrets:
        - {name: lmforge-mlflow, env: {MLFLOW_TRACKING_URI: tracking_uri}}
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from components.shared.config import StrictModel

# KFP 2.17's kubernetes extension cannot set a pod's priorityClassName; the class travels as this
# pod label, which Kueue (or an admission policy of the cluster's admins) maps to the real class.
# The multi-node TrainJob manifest (pipelines/trainjob.py) sets priorityClassName directly.
PRIORITY_LABEL = "lmforge.io/priority-class"

# Kubernetes resource quantities: "500m", "2", "16Gi", "1.5G".
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DURATION = re.compile(r"^[0-9]+(s|m|h)$")


class _Strict(StrictModel):
    """Unknown keys refused, no yes/no value for a number (components/shared/config.py)."""


class Toleration(_Strict):
    key: str | None = Field(None, description="taint key, e.g. nvidia.com/gpu; None with operator Exists tolerates every taint")
    operator: Literal["Equal", "Exists"] = Field("Equal", description="Equal matches `value`; Exists any value")
    value: str | None = Field(None, description="taint value for operator Equal")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(None, description="taint effect; None matches all")


class PvcMount(_Strict):
    name: str = Field(description="an existing PersistentVolumeClaim in the run's namespace (e.g. a shared HF cache)")
    mount_path: str = Field("/mnt/lmforge", description="where the task sees it")


class Placement(_Strict):
    """One task's settings. A stage's entry overrides `defaults` key by key."""

    accelerator_type: str | None = Field(None, description="accelerator resource name, e.g. nvidia.com/gpu (the GPU model comes from node_selector)")
    accelerator_count: int = Field(0, ge=0, le=16, description="accelerators per task; >1 runs the stage under torchrun with this many processes")
    cpu_request: str | None = Field(None, description="Kubernetes quantity, e.g. '4' or '500m'")
    cpu_limit: str | None = Field(None, description="Kubernetes quantity")
    memory_request: str | None = Field(None, description="Kubernetes quantity, e.g. 16Gi")
    memory_limit: str | None = Field(None, description="Kubernetes quantity")
    node_selector: dict[str, str] = Field(default_factory=dict, description="node labels the task must land on (the GPU pool)")
    tolerations: list[Toleration] = Field(default_factory=list, description="taints of the pool the task may land on")
    priority_class: str | None = Field(None, description=f"PriorityClass name, set as the pod label {PRIORITY_LABEL}")
    caching: bool = Field(True, description="false: never reuse a cached result (register is never cached either way)")
    retries: int = Field(0, ge=0, le=10, description="retries of a failed task (preempted spot nodes, transient I/O)")
    retry_backoff: str = Field("60s", description="first wait between retries, doubled each time (e.g. 30s, 5m)")
    timeout_s: int | None = Field(None, ge=1, description="kill the task after this many seconds")
    pvc: PvcMount | None = Field(None, description="a PersistentVolumeClaim to mount")

    @field_validator("cpu_request", "cpu_limit", "memory_request", "memory_limit")
    @classmethod
    def _quantity(cls, v):
        if v is not None and not QUANTITY.match(str(v)):
            raise ValueError(f"{v!r} is not a Kubernetes quantity: write e.g. '4', '500m', '16Gi'")
        return v

    @field_validator("retry_backoff")
    @classmethod
    def _duration(cls, v):
        if not DURATION.match(v):
            raise ValueError(f"{v!r} is not a duration: write e.g. 30s, 5m, 1h")
        return v

    @property
    def nproc_per_node(self) -> int:
        """Processes per task: one per accelerator, one on the CPU."""
        return max(1, self.accelerator_count)


class SecretEnv(_Strict):
    name: str = Field(description="Kubernetes Secret in the run's namespace (created by infra/, never in a preset)")
    env: dict[str, str] = Field(description="environment variable -> key in the Secret")
    stages: list[str] | None = Field(None, description="stages that get it; None = every stage")

    @model_validator(mode="after")
    def _names(self):
        if not DNS_NAME.match(self.name):
            raise ValueError(f"secret name {self.name!r} is not a Kubernetes name: lower case, digits, '-' and '.'")
        bad = [k for k in self.env if not ENV_NAME.match(k)]
        if bad:
            raise ValueError(f"secret {self.name}: {bad[0]!r} is not an environment variable name")
        return self


class ClusterConfig(_Strict):
    """The `cluster:` section of a preset."""

    defaults: Placement = Field(default_factory=Placement, description="settings of every task")
    stages: dict[str, Placement] = Field(default_factory=dict, description="per stage: overrides of `defaults`, key by key")
    secrets: list[SecretEnv] = Field(default_factory=list, description="Secrets exposed to tasks as environment variables")
    experiment: str = Field("lmforge", description="KFP experiment `lmforge submit` files runs under")
    namespace: str | None = Field(None, description="KFP multi-user namespace (profile) to submit into; None for single-user KFP")
    service_account: str | None = Field(None, description="Kubernetes service account the run's pods use (infra/: lmforge-pipeline-runner)")
    pipeline_root: str | None = Field(None, description="where KFP stores artifacts, e.g. s3://bucket/pipeline-root; None = the KFP default")
    data_repo: str = Field("", description="git URL of the DVC data repository ingest reads on the cluster (the pods have no checkout)")
    auth: Literal["none", "token"] = Field("none", description="token: `lmforge submit` sends $KFP_TOKEN as a bearer token")
    data_shards: int = Field(1, ge=1, le=256, description="clean_tokenize tokenizes the corpus in this many parallel tasks (KFP ParallelFor) and merges them, same bytes as one task; 1: one task")

    @model_validator(mode="after")
    def _known_stages(self):
        from pipelines.config import STAGES

        named = list(self.stages) + [s for secret in self.secrets for s in secret.stages or ()]
        unknown = [s for s in named if s not in STAGES]
        if unknown:
            raise ValueError(f"cluster: unknown stage {unknown[0]!r}: use one of {', '.join(STAGES)}")
        for stage in STAGES:  # after merging: a stage may take accelerator_type from defaults
            if self.placement(stage).accelerator_count and not self.placement(stage).accelerator_type:
                raise ValueError(f"cluster: {stage} sets accelerator_count but no accelerator_type: add accelerator_type (e.g. nvidia.com/gpu)")
        return self

    def placement(self, stage: str) -> Placement:
        """`defaults` with the stage's own keys laid over them."""
        own = self.stages.get(stage)
        if own is None:
            return self.defaults
        return self.defaults.model_copy(update={k: getattr(own, k) for k in own.model_fields_set})

    def secrets_for(self, stage: str) -> list[SecretEnv]:
        return [s for s in self.secrets if s.stages is None or stage in s.stages]

    def apply(self, tasks: dict) -> None:
        """Put each task on its node pool: called inside the pipeline body, at compile time."""
        from kfp import kubernetes

        for stage, stage_tasks in tasks.items():
            for task in stage_tasks if isinstance(stage_tasks, list) else [stage_tasks]:  # a stage may be several tasks
                apply_placement(task, self.placement(stage))
                for secret in self.secrets_for(stage):
                    # Only the Secret's name and keys go into the YAML; the values stay in the cluster.
                    # One call per variable: two variables may read the same key (an S3 endpoint).
                    for env, key in secret.env.items():
                        kubernetes.use_secret_as_env(task, secret.name, secret_key_to_env={key: env})


def apply_placement(task, p: Placement) -> None:
    """Resources, node pool, priority, caching and retries of one task (kfp + kfp.kubernetes)."""
    from kfp import kubernetes

    if p.accelerator_count:
        task.set_accelerator_type(p.accelerator_type).set_accelerator_limit(p.accelerator_count)
    setters = {"cpu_request": task.set_cpu_request, "cpu_limit": task.set_cpu_limit, "memory_request": task.set_memory_request, "memory_limit": task.set_memory_limit}
    for field, setter in setters.items():
        if getattr(p, field):
            setter(getattr(p, field))
    for key, value in p.node_selector.items():
        kubernetes.add_node_selector(task, key, value)
    for t in p.tolerations:
        kubernetes.add_toleration(task, key=t.key, operator=t.operator, value=t.value, effect=t.effect)
    if p.priority_class:
        kubernetes.add_pod_label(task, PRIORITY_LABEL, p.priority_class)
    if not p.caching:  # only ever switches caching off: register stays uncached whatever the preset says
        task.set_caching_options(False)
    if p.retries:
        task.set_retry(p.retries, backoff_duration=p.retry_backoff, backoff_factor=2.0)
    if p.timeout_s:
        kubernetes.set_timeout(task, p.timeout_s)
    if p.pvc:
        kubernetes.mount_pvc(task, p.pvc.name, p.pvc.mount_path)
