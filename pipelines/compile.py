"""Compile the DAG to KFP IR YAML, with the preset's sections as parameter defaults.

Two targets: `local` (the plain DAG, as kfp.local runs it) and `cluster` (the same DAG with the
preset's `cluster:` section applied: GPUs, node pools, tolerations, secrets as env, retries).
"""

from __future__ import annotations

from pathlib import Path

from pipelines.config import PipelineConfig


def compile_pipeline(config: PipelineConfig, preset: str, output: str | Path, target: str = "local") -> Path:
    """Write the IR YAML; every task's image is the project-version image from components/shared/images."""
    from kfp import compiler

    from pipelines.pipeline import arguments, cluster_pipeline, lmforge_pipeline

    pipeline = cluster_pipeline(config.cluster) if target == "cluster" else lmforge_pipeline
    lineage = config.lineage(preset)
    data_repo, data_rev = config.data_source(target, lineage["git_commit"])  # what `lmforge run` / `submit` would pass
    defaults = arguments(config, run_name="", data_repo=data_repo, data_rev=data_rev, lineage=lineage)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.stem}.tmp{output.suffix or '.yaml'}")  # kfp wants a .yaml/.json name
    compiler.Compiler().compile(pipeline, str(tmp), pipeline_parameters=defaults)
    tmp.replace(output)  # a failed compile leaves no half-written file under the real name
    return output
