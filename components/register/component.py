"""KFP component for register: a shim that maps artifacts to paths and calls `register`."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from components.shared.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def register_op(
    config: dict, run_name: str, lineage: dict, raw: Input[Dataset], cleaned: Input[Dataset], validation: Input[Dataset],
    classifier: Input[Model], evaluation: Input[Dataset], registration: Output[Artifact], metrics: Output[Metrics],
) -> str:
    """Log the classifier to MLflow, register a version with its lineage tags, set the alias."""
    from pathlib import Path

    from components.register.register import RegisterConfig, register
    from components.shared.artifacts import read_json
    from components.shared.reporting import report, user_errors

    with user_errors("register"):
        paths = [Path(a.path) for a in (classifier, evaluation, raw, cleaned, validation, registration)]
        result = register(*paths, RegisterConfig.from_params(config, "register"), run_name, lineage)
    report("register", run_name, result, metrics, config)
    return read_json(Path(registration.path) / "registration.json")["uri"]
