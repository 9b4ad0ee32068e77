"""KFP component for finetune: a shim that maps artifacts to paths and calls `finetune`."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.shared.images import GPU_IMAGE


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def finetune_op(config: dict, run_name: str, cleaned: Input[Dataset], mlm: Input[Model], classifier: Output[Model], metrics: Output[Metrics]):
    """Fine-tune a sequence classifier initialised from the pretrained encoder."""
    from pathlib import Path

    from components.finetune.finetune import FinetuneConfig, finetune
    from components.shared.reporting import report, user_errors

    with user_errors("finetune"):
        result = finetune(Path(cleaned.path), Path(mlm.path), Path(classifier.path), FinetuneConfig.from_params(config, "finetune"))
    out = Path(classifier.path)
    report("finetune", run_name, result, metrics, config, files=[out / "loss_curve.png", out / "history.json"], history=out / "history.json")
