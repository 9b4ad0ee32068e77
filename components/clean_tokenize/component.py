"""KFP component for clean_tokenize: a shim that maps artifacts to paths and calls `clean_tokenize`."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from components.shared.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def clean_tokenize_op(config: dict, run_name: str, raw: Input[Dataset], cleaned: Output[Dataset], metrics: Output[Metrics]):
    """Clean the text, train the WordPiece tokenizer, pack the corpus and tokenize the labeled set."""
    from pathlib import Path

    from components.clean_tokenize.clean_tokenize import CleanTokenizeConfig, clean_tokenize
    from components.shared import artifacts
    from components.shared.reporting import stage_task

    out = Path(cleaned.path)
    with stage_task("clean_tokenize", run_name, metrics, config, files=[out / artifacts.CLEAN_REPORT, out / artifacts.TOKENIZER_DIR]) as task:
        task.metrics = clean_tokenize(raw_dir=Path(raw.path), out_dir=out, config=CleanTokenizeConfig.from_params(config, "clean_tokenize"))
