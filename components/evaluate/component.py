"""KFP component for evaluate: a shim that maps artifacts to paths and calls `evaluate`."""

from kfp import dsl
from kfp.dsl import HTML, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from components.shared.images import GPU_IMAGE


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def evaluate_op(
    config: dict, run_name: str, cleaned: Input[Dataset], mlm: Input[Model], classifier: Input[Model],
    evaluation: Output[Dataset], metrics: Output[Metrics], confusion: Output[ClassificationMetrics], report_html: Output[HTML],
):
    """Test accuracy, macro-F1, confusion matrix, held-out perplexity and the majority baseline."""
    from pathlib import Path

    from components.evaluate.evaluate import EvaluateConfig, evaluate
    from components.shared import artifacts
    from components.shared.reporting import log_confusion_matrix, stage_task

    out = Path(evaluation.path)
    files = [out / artifacts.EVAL_REPORT, out / artifacts.CONFUSION_PNG, out / artifacts.EVAL_HTML]
    with stage_task("evaluate", run_name, metrics, config, files=files) as task:
        cfg = EvaluateConfig.from_params(config, "evaluate")
        task.metrics = evaluate(Path(cleaned.path), Path(mlm.path), Path(classifier.path), out, cfg, html_page=Path(report_html.path))
    log_confusion_matrix(confusion, out / artifacts.EVAL_REPORT)
