"""KFP component for evaluate: a shim that maps artifacts to paths and calls `evaluate`."""

from kfp import dsl
from kfp.dsl import HTML, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from components.shared.images import GPU_IMAGE


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def evaluate_op(
    config: dict,
    register_config: dict,
    run_name: str,
    cleaned: Input[Dataset],
    pretrained: Input[Model],
    classifier: Input[Model],
    evaluation: Output[Dataset],
    metrics: Output[Metrics],
    confusion: Output[ClassificationMetrics],
    report_html: Output[HTML],
):
    """The task's test metrics and picture (a confusion matrix, or a scatter plot of predicted against
    true), held-out perplexity, baselines, and the gate against the champion of the model that
    register will add a version to."""
    from pathlib import Path

    from components.evaluate.evaluate import EvaluateConfig, evaluate
    from components.shared import artifacts
    from components.shared.reporting import log_confusion_matrix, stage_task

    out = Path(evaluation.path)
    files = [out / name for name in (artifacts.EVAL_REPORT, artifacts.CONFUSION_PNG, artifacts.SCATTER_PNG, artifacts.EVAL_HTML, artifacts.GATE_MD, artifacts.GATE_PNG, artifacts.GATE_REPORT)]
    with stage_task("evaluate", run_name, metrics, config, files=files) as task:
        cfg = EvaluateConfig.from_params(config, "evaluate")
        model_name = register_config.get("model_name")  # register validated it; the section always holds it
        task.metrics = evaluate(
            cleaned_dir=Path(cleaned.path),
            pretrained_dir=Path(pretrained.path),
            classifier_dir=Path(classifier.path),
            out_dir=out,
            config=cfg,
            html_page=Path(report_html.path),
            model_name=model_name,
        )
    log_confusion_matrix(confusion, out / artifacts.EVAL_REPORT)
