"""KFP component for validate: a shim that maps artifacts to paths and calls `validate`."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Output

from components.shared.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def validate_op(config: dict, run_name: str, cleaned: Input[Dataset], report_dir: Output[Dataset], data_docs: Output[HTML], metrics: Output[Metrics]):
    """Run the great-expectations suites; keep the Data Docs either way; fail the run on bad data."""
    from pathlib import Path

    from components.shared import artifacts
    from components.shared.reporting import stage_task
    from components.validate.validate import ValidateConfig, validate

    out = Path(report_dir.path)
    with stage_task("validate", run_name, metrics, config, files=[out / artifacts.VALIDATION, out / artifacts.DATA_DOCS_DIR]) as task:
        task.metrics = validate(cleaned_dir=Path(cleaned.path), out_dir=out, config=ValidateConfig.from_params(config, "validate"), docs_page=Path(data_docs.path))
