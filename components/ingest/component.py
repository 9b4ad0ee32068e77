"""KFP component for ingest: a shim that maps artifacts to paths and calls `ingest`."""

from kfp import dsl
from kfp.dsl import Dataset, Metrics, Output

from components.shared.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def ingest_op(config: dict, data_repo: str, data_rev: str, run_name: str, raw: Output[Dataset], metrics: Output[Metrics]):
    """Read the corpus and labeled set at a pinned data revision; write canonical Parquet."""
    from pathlib import Path

    from components.ingest.ingest import IngestConfig, ingest
    from components.shared import artifacts
    from components.shared.reporting import stage_task

    out = Path(raw.path)
    with stage_task("ingest", run_name, metrics, config, files=[out / artifacts.MANIFEST]) as task:
        task.metrics = ingest(out_dir=out, config=IngestConfig.from_params(config, "ingest"), data_repo=data_repo, data_rev=data_rev)
