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
    import shutil
    from pathlib import Path

    from components.evaluate.evaluate import EvaluateConfig, evaluate
    from components.shared.artifacts import read_json
    from components.shared.reporting import report, user_errors

    with user_errors("evaluate"):
        result = evaluate(Path(cleaned.path), Path(mlm.path), Path(classifier.path), Path(evaluation.path), EvaluateConfig.from_params(config, "evaluate"))
    out = Path(evaluation.path)
    scores = read_json(out / "eval.json")
    confusion.log_confusion_matrix([str(x) for x in scores["labels"]], scores["confusion_matrix"])
    shutil.copy(out / "report.html", report_html.path)
    report("evaluate", run_name, result, metrics, config, files=[out / "eval.json", out / "confusion_matrix.png", out / "report.html"])
