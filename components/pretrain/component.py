"""KFP component for pretrain: a shim that maps artifacts to paths and calls `pretrain`."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.shared.images import GPU_IMAGE


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def pretrain_op(config: dict, run_name: str, cleaned: Input[Dataset], mlm: Output[Model], metrics: Output[Metrics]):
    """Masked-LM pretraining of a BERT-style encoder on the packed blocks."""
    from pathlib import Path

    from components.pretrain.pretrain import PretrainConfig, pretrain
    from components.shared.reporting import report, user_errors

    with user_errors("pretrain"):
        result = pretrain(Path(cleaned.path), Path(mlm.path), PretrainConfig.from_params(config, "pretrain"))
    out = Path(mlm.path)
    report("pretrain", run_name, result, metrics, config, files=[out / "loss_curve.png", out / "history.json"], history=out / "history.json")
