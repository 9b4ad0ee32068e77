"""KFP component for register: a shim that maps artifacts to paths and calls `register`."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from components.shared.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def register_op(
    config: dict,
    run_name: str,
    lineage: dict,
    kfp_run_id: str,
    raw: Input[Dataset],
    cleaned: Input[Dataset],
    validation: Input[Dataset],
    classifier: Input[Model],
    evaluation: Input[Dataset],
    registration: Output[Artifact],
    metrics: Output[Metrics],
) -> str:
    """Log the classifier to MLflow, register a version with its lineage tags and model card, set
    the aliases (champion too when the preset asks and the gate passed)."""
    from pathlib import Path

    from components.register.register import RegisterConfig, register
    from components.shared.reporting import registered_uri, stage_task

    with stage_task("register", run_name, metrics, config) as task:
        task.metrics = register(
            classifier_dir=Path(classifier.path),
            eval_dir=Path(evaluation.path),
            raw_dir=Path(raw.path),
            cleaned_dir=Path(cleaned.path),
            validation_dir=Path(validation.path),
            out_dir=Path(registration.path),
            config=RegisterConfig.from_params(config, "register"),
            run_name=run_name,
            lineage=lineage,
            kfp_run_id=kfp_run_id,
        )
    return registered_uri(Path(registration.path))
