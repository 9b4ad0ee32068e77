"""KFP component for pretrain: a shim that maps artifacts to paths and calls `pretrain`."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.shared.images import GPU_IMAGE


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def pretrain_op(config: dict, run_name: str, cleaned: Input[Dataset], pretrained: Output[Model], metrics: Output[Metrics]):
    """Masked-LM pretraining of a BERT-style encoder on the packed blocks."""
    from pathlib import Path

    from components.pretrain.pretrain import PretrainConfig, pretrain
    from components.shared import artifacts
    from components.shared.reporting import stage_task

    out = Path(pretrained.path)
    with stage_task("pretrain", run_name, metrics, config, files=[out / artifacts.LOSS_CURVE, out / artifacts.HISTORY], history=out / artifacts.HISTORY) as task:
        task.metrics = pretrain(cleaned_dir=Path(cleaned.path), out_dir=out, config=PretrainConfig.from_params(config, "pretrain"))
