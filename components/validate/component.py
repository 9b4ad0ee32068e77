"""KFP component for validate: a shim that maps artifacts to paths and calls `validate`."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Output

from components.shared.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def validate_op(config: dict, run_name: str, cleaned: Input[Dataset], report_dir: Output[Dataset], data_docs: Output[HTML], metrics: Output[Metrics]):
    """Run the great-expectations suites; keep the Data Docs either way; fail the run on bad data."""
    import shutil
    from pathlib import Path

    from components.shared.reporting import report, user_errors
    from components.validate.validate import ValidateConfig, validate

    out, result = Path(report_dir.path), {"validate/success": 0.0}
    try:
        with user_errors("validate"):
            result = validate(Path(cleaned.path), out, ValidateConfig.from_params(config, "validate"))
    finally:  # pass or fail, the Data Docs reach the KFP UI (one HTML file) and MLflow
        if (out / "data_docs" / "index.html").is_file():
            shutil.copy(out / "data_docs" / "index.html", data_docs.path)
        report("validate", run_name, result, metrics, config, files=[out / "validation.json", out / "data_docs"])
