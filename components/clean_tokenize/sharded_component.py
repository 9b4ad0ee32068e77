"""KFP components of clean_tokenize's cluster fan-out: shims over components/clean_tokenize/sharded.py.

pipelines/pipeline.py uses them when `cluster.data_shards` > 1: prepare once, tokenize the shards
in a ParallelFor, merge in shard order; the merge's `cleaned` output is what clean_tokenize_op writes.
"""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from components.shared.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def clean_tokenize_prepare_op(config: dict, run_name: str, raw: Input[Dataset], prepared: Output[Dataset], metrics: Output[Metrics]):
    """Clean the text, train the tokenizer once and tokenize the labeled set; no blocks yet."""
    from pathlib import Path

    from components.clean_tokenize.clean_tokenize import CleanTokenizeConfig
    from components.clean_tokenize.sharded import prepare_stage
    from components.shared.reporting import stage_task

    with stage_task("clean_tokenize_prepare", run_name, metrics, config) as task:
        task.metrics = prepare_stage(raw_dir=Path(raw.path), out_dir=Path(prepared.path), config=CleanTokenizeConfig.from_params(config, "clean_tokenize"))


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def clean_tokenize_shard_op(prepared: Input[Dataset], shard: int, num_shards: int, part: Output[Dataset]):
    """Token streams of one contiguous shard of the prepared corpus."""
    from pathlib import Path

    from components.clean_tokenize.sharded import tokenize_shard

    tokenize_shard(prepared_dir=Path(prepared.path), out_dir=Path(part.path), shard=shard, num_shards=num_shards)


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def clean_tokenize_merge_op(config: dict, run_name: str, prepared: Input[Dataset], parts: Input[list[Dataset]], cleaned: Output[Dataset], metrics: Output[Metrics]):
    """Pack the shards' streams in shard order: the output one clean_tokenize task would write."""
    from pathlib import Path

    from components.clean_tokenize.clean_tokenize import CleanTokenizeConfig
    from components.clean_tokenize.sharded import merge_shards
    from components.shared import artifacts
    from components.shared.reporting import stage_task

    out = Path(cleaned.path)
    with stage_task("clean_tokenize", run_name, metrics, config, files=[out / artifacts.CLEAN_REPORT, out / artifacts.TOKENIZER_DIR]) as task:
        task.metrics = merge_shards(prepared_dir=Path(prepared.path), shard_dirs=[Path(p.path) for p in parts], out_dir=out, config=CleanTokenizeConfig.from_params(config, "clean_tokenize"))
