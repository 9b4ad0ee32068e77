"""KFP component for clean_tokenize: a shim that maps artifacts to paths and calls `clean_tokenize`."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from components.shared.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def clean_tokenize_op(config: dict, run_name: str, raw: Input[Dataset], cleaned: Output[Dataset], metrics: Output[Metrics]):
    """Clean the text, train the WordPiece tokenizer, pack the corpus and tokenize the labeled set."""
    from pathlib import Path

    from components.clean_tokenize.clean_tokenize import CleanTokenizeConfig, clean_tokenize
    from components.shared.reporting import report, user_errors

    with user_errors("clean_tokenize"):
        result = clean_tokenize(Path(raw.path), Path(cleaned.path), CleanTokenizeConfig.from_params(config, "clean_tokenize"))
    report("clean_tokenize", run_name, result, metrics, config, files=[Path(cleaned.path) / "clean_report.json", Path(cleaned.path) / "tokenizer"])
