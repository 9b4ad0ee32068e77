"""KFP component for ingest: a shim that maps artifacts to paths and calls `ingest`."""

from kfp import dsl
from kfp.dsl import Dataset, Metrics, Output

from components.shared.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def ingest_op(config: dict, data_repo: str, data_rev: str, run_name: str, raw: Output[Dataset], metrics: Output[Metrics]):
    """Read the corpus and labeled set at a pinned data revision; write canonical Parquet."""
    from pathlib import Path

    from components.ingest.ingest import IngestConfig, ingest
    from components.shared.reporting import report, user_errors

    with user_errors("ingest"):
        result = ingest(Path(raw.path), IngestConfig.from_params(config, "ingest"), data_repo, data_rev)
    report("ingest", run_name, result, metrics, config, files=[Path(raw.path) / "manifest.json"])
