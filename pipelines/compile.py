"""Compile the DAG to KFP IR YAML, with the preset's sections as parameter defaults."""

from __future__ import annotations

from pathlib import Path

from pipelines.config import PipelineConfig


def compile_pipeline(config: PipelineConfig, preset: str, output: str | Path) -> Path:
    """Write the IR YAML; every task's image is the project-version image from components/shared/images."""
    from kfp import compiler

    from pipelines.pipeline import arguments, lmforge_pipeline

    lineage = config.lineage(preset)
    defaults = arguments(config, run_name="", data_repo="", data_rev="", lineage=lineage)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(lmforge_pipeline, str(output), pipeline_parameters=defaults)
    return output
