"""The LMForge DAG: ingest -> clean_tokenize -> validate -> pretrain -> finetune -> evaluate -> register.

One definition for both targets; nothing here knows whether it runs under kfp.local or on a
cluster. Each stage gets only its own config section as a parameter.
"""

from contextvars import ContextVar

from kfp import dsl

from components.clean_tokenize.component import clean_tokenize_op
from components.clean_tokenize.sharded_component import clean_tokenize_merge_op, clean_tokenize_prepare_op, clean_tokenize_shard_op
from components.evaluate.component import evaluate_op
from components.finetune.component import finetune_op
from components.ingest.component import ingest_op
from components.pretrain.component import pretrain_op
from components.register.component import register_op
from components.validate.component import validate_op

PIPELINE_NAME = "lmforge"
DESCRIPTION = "Pretrain, fine-tune, evaluate and register a BERT-style sentiment model."

# The preset's cluster section while `cluster_pipeline` builds the DAG; None for kfp.local.
_CLUSTER: ContextVar = ContextVar("lmforge_cluster", default=None)


def _place(**tasks) -> None:
    """GPUs, node pools, secrets and retries from the preset's `cluster:` section, when compiling for a cluster."""
    cluster = _CLUSTER.get()
    if cluster is not None:
        cluster.apply(tasks)


def _clean_tokenize(config, run_name, raw):
    """One clean_tokenize task; on the cluster with `data_shards` > 1, prepare -> ParallelFor of
    shard tasks -> merge (components/clean_tokenize/sharded.py), whose output is the same bytes.
    Returns the task whose `cleaned` output the later stages read, and the others."""
    cluster = _CLUSTER.get()
    shards = cluster.data_shards if cluster is not None else 1
    if shards == 1:
        return clean_tokenize_op(config=config, run_name=run_name, raw=raw).set_display_name("clean_tokenize"), []
    prepare = clean_tokenize_prepare_op(config=config, run_name=run_name, raw=raw).set_display_name("clean_tokenize_prepare")
    with dsl.ParallelFor(items=list(range(shards)), parallelism=shards) as shard:
        part = clean_tokenize_shard_op(prepared=prepare.outputs["prepared"], shard=shard, num_shards=shards).set_display_name("clean_tokenize_shard")
    merge = clean_tokenize_merge_op(config=config, run_name=run_name, prepared=prepare.outputs["prepared"], parts=dsl.Collected(part.outputs["part"])).set_display_name("clean_tokenize_merge")
    return merge, [prepare, part]


@dsl.pipeline(name=PIPELINE_NAME, description=DESCRIPTION)
def lmforge_pipeline(
    run_name: str,
    data_repo: str,
    data_rev: str,
    lineage: dict,
    ingest_config: dict,
    clean_tokenize_config: dict,
    validate_config: dict,
    pretrain_config: dict,
    finetune_config: dict,
    evaluate_config: dict,
    register_config: dict,
) -> str:
    ingest = ingest_op(config=ingest_config, data_repo=data_repo, data_rev=data_rev, run_name=run_name).set_display_name("ingest")
    clean, fan_out = _clean_tokenize(clean_tokenize_config, run_name, ingest.outputs["raw"])
    cleaned = clean.outputs["cleaned"]
    validate = validate_op(config=validate_config, run_name=run_name, cleaned=cleaned).set_display_name("validate")
    # Pretraining must not start on data that failed validation: an explicit edge, no data passes.
    pretrain = pretrain_op(config=pretrain_config, run_name=run_name, cleaned=cleaned).after(validate).set_display_name("pretrain")
    finetune = finetune_op(config=finetune_config, run_name=run_name, cleaned=cleaned, pretrained=pretrain.outputs["pretrained"]).set_display_name("finetune")
    evaluate = evaluate_op(
        config=evaluate_config, register_config=register_config, run_name=run_name, cleaned=cleaned, pretrained=pretrain.outputs["pretrained"], classifier=finetune.outputs["classifier"]
    ).set_display_name("evaluate")
    register = register_op(
        config=register_config,
        run_name=run_name,
        lineage=lineage,
        kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,  # the KFP run, on a cluster and under kfp.local
        raw=ingest.outputs["raw"],
        cleaned=cleaned,
        validation=validate.outputs["report_dir"],
        classifier=finetune.outputs["classifier"],
        evaluation=evaluate.outputs["evaluation"],
    ).set_display_name("register")
    register.set_caching_options(False)  # a registry write is never replayed from cache
    _place(ingest=ingest, clean_tokenize=[clean, *fan_out], validate=validate, pretrain=pretrain, finetune=finetune, evaluate=evaluate, register=register)
    return register.outputs["Output"]


def cluster_pipeline(cluster):
    """The same DAG, built anew with `cluster` (a ClusterConfig) applied to its tasks.

    KFP builds a pipeline's graph when the decorator runs, so the placement is set while a fresh
    copy is decorated; `lmforge_pipeline` (the local path) stays as it is.
    """
    token = _CLUSTER.set(cluster)
    try:
        return dsl.pipeline(name=PIPELINE_NAME, description=DESCRIPTION)(lmforge_pipeline.pipeline_func)
    finally:
        _CLUSTER.reset(token)


def arguments(config, run_name: str, data_repo: str, data_rev: str, lineage: dict) -> dict:
    """The pipeline's parameters for one run: run identity plus one config section per stage."""
    from pipelines.config import STAGES

    params = {f"{s}_config": config.section(s) for s in STAGES}
    return {"run_name": run_name, "data_repo": data_repo, "data_rev": data_rev, "lineage": lineage, **params}
