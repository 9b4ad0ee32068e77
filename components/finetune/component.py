"""KFP component for finetune: a shim that maps artifacts to paths and calls `finetune`."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.shared.images import GPU_IMAGE


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def finetune_op(config: dict, run_name: str, cleaned: Input[Dataset], pretrained: Input[Model], classifier: Output[Model], metrics: Output[Metrics]):
    """Fine-tune a sequence classifier initialised from the pretrained encoder."""
    from pathlib import Path

    from components.finetune.finetune import SEARCH, FinetuneConfig, finetune
    from components.shared import artifacts
    from components.shared.reporting import stage_task

    out = Path(classifier.path)
    with stage_task("finetune", run_name, metrics, config, files=[out / artifacts.LOSS_CURVE, out / artifacts.HISTORY, out / SEARCH], history=out / artifacts.HISTORY) as task:
        task.metrics = finetune(cleaned_dir=Path(cleaned.path), pretrained_dir=Path(pretrained.path), out_dir=out, config=FinetuneConfig.from_params(config, "finetune"))
