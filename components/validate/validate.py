"""Validate the cleaned data with great-expectations suites before any training spends time on it.

`validate(cleaned_dir, out_dir, config)` runs four suites over the clean_tokenize output:

- corpus: the cleaned Wikipedia documents (ids, non-empty and de-duplicated text);
- labeled: the labeled sentences (ids, lengths, labels, splits, class balance, token ids);
- labeled_splits: one row per distinct (text, split) pair, so "text unique" means no sentence
  leaks from one split into another;
- tokens: a one-row frame of the tokenizer statistics from clean_report.json.

It writes `data_docs/` (a static great-expectations Data Docs site, `index.html` at its root) and
`validation.json` (per suite: success, counts, failed expectations), returns flat metrics, and, when
a suite fails and `fail_on_error` is set, raises `DataValidationError` after both are written.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import Field

from components.shared import artifacts
from components.shared.config import StageConfig
from components.shared.errors import UserError
from components.shared.splits import SPLITS

SUITES = ("corpus", "labeled", "labeled_splits", "tokens")
TOKEN_STATS = ("vocab_size", "unk_rate", "n_blocks_train", "n_blocks_heldout")
MIN_VOCAB = 100  # below this the tokenizer was trained on next to nothing


class ValidateConfig(StageConfig):
    """Thresholds for the data validation suites."""

    min_chars: int = Field(1, ge=0, description="Shortest labeled sentence allowed, in characters.")
    max_chars: int = Field(
        2000, ge=1, description="Longest labeled sentence allowed, in characters."
    )
    min_doc_chars: int = Field(
        200, ge=0, description="Shortest corpus document allowed, in characters (stubs are noise)."
    )
    labels: list[int] = Field([0, 1], min_length=2, description="The label values allowed.")
    min_class_fraction: float = Field(
        0.3,
        ge=0.0,
        le=0.5,
        description="Class balance: the share of label 1 in train must lie in [f, 1 - f].",
    )
    max_unk_rate: float = Field(
        0.01, ge=0.0, le=1.0, description="Largest allowed fraction of [UNK] tokens in the corpus."
    )
    min_blocks: int = Field(1, ge=1, description="Fewest packed training blocks allowed.")
    fail_on_error: bool = Field(
        True, description="Raise DataValidationError when a suite fails (else only report it)."
    )


class DataValidationError(UserError):
    """One or more suites failed; the message lists the failures and points at the Data Docs."""


def validate(cleaned_dir: Path, out_dir: Path, config: ValidateConfig, docs_page: Path | None = None) -> dict[str, float]:
    """Run the suites; write out_dir/data_docs/ (HTML, index.html) and out_dir/validation.json.

    `docs_page`, when given (a KFP HTML artifact), receives a copy of the Data Docs index page.
    Returns flat metrics ("validate/success", "validate/<suite>_failed", ...). When a suite fails
    and `config.fail_on_error` is set, raises DataValidationError after both outputs are written.
    """
    cleaned_dir, out_dir = Path(cleaned_dir), Path(out_dir)
    frames = load_frames(cleaned_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    docs = out_dir / artifacts.DATA_DOCS_DIR
    # The site is built straight into a staging folder and moved into place once complete.
    with artifacts.staged_dir(docs) as site:
        results = run_suites(frames, build_suites(config), site)
    report = {name: summarise(result) for name, result in results.items()}
    artifacts.write_json(out_dir / artifacts.VALIDATION, report)
    if docs_page:
        shutil.copyfile(docs / "index.html", docs_page)

    metrics = {"validate/success": float(all(r["success"] for r in report.values()))}
    for name, r in report.items():
        metrics[f"validate/{name}_failed"] = float(len(r["failed"]))
        metrics[f"validate/{name}_evaluated"] = float(r["evaluated"])
    if config.fail_on_error and not metrics["validate/success"]:
        problems = "; ".join(
            f"{name}: {_label(f)} {f['observed']}"
            for name, r in report.items()
            for f in r["failed"]
        )
        raise DataValidationError(
            f"data validation failed: {problems} — see the Data Docs at {docs / 'index.html'}"
        )
    return metrics


def load_frames(cleaned_dir: Path) -> dict[str, pd.DataFrame]:
    """Read the clean_tokenize outputs into one DataFrame per suite."""
    for name in (artifacts.CORPUS, artifacts.LABELED, artifacts.CLEAN_REPORT):
        if not (cleaned_dir / name).is_file():
            raise UserError(
                f"{cleaned_dir / name} not found: "
                "run clean_tokenize first and pass its output directory"
            )
    corpus = pd.read_parquet(cleaned_dir / artifacts.CORPUS)
    labeled = pd.read_parquet(cleaned_dir / artifacts.LABELED)
    stats = artifacts.read_json(cleaned_dir / artifacts.CLEAN_REPORT).get("tokens", {})
    missing = [k for k in TOKEN_STATS if k not in stats]
    if missing:
        raise UserError(
            f"{cleaned_dir / artifacts.CLEAN_REPORT} lacks tokens.{', tokens.'.join(missing)}: "
            "rerun clean_tokenize with this version of LMForge"
        )
    if "input_ids" in labeled:
        # GX measures value lengths with pandas' .str.len(), which gives NaN for the numpy arrays
        # parquet returns, and NaN counts as "missing", so an empty list would pass unseen.
        labeled = labeled.assign(n_input_ids=labeled["input_ids"].map(_length))
    # GX has no cross-row "disjoint groups" expectation; one row per distinct (text, split) turns
    # "no text in two splits" into "text is unique", and the docs then list the leaked sentences.
    # (ExpectCompoundColumnsToBeUnique(["text", "split"]) only forbids duplicates within a split.)
    pairs = labeled.reindex(columns=["text", "split"]).drop_duplicates().reset_index(drop=True)
    return {
        "corpus": corpus,
        "labeled": labeled,
        "labeled_splits": pairs,
        "tokens": pd.DataFrame([{k: stats[k] for k in TOKEN_STATS}]),
    }


def _length(ids: Any) -> int | None:
    return None if ids is None else len(ids)


def build_suites(config: ValidateConfig) -> dict[str, list]:
    """The expectations of each suite, as great-expectations Expectation objects."""
    import great_expectations.expectations as gxe
    from great_expectations.expectations.row_conditions import Column

    def not_null(*columns: str) -> list:
        return [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in columns]

    corpus = [
        gxe.ExpectTableColumnsToMatchSet(column_set=["doc_id", "title", "text"], exact_match=False),
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        *not_null("doc_id", "text"),
        gxe.ExpectColumnValuesToBeUnique(column="doc_id"),
        gxe.ExpectColumnValuesToBeUnique(column="text"),  # exact duplicates are removed upstream
        gxe.ExpectColumnValueLengthsToBeBetween(column="text", min_value=config.min_doc_chars),
    ]
    labeled = [
        gxe.ExpectTableColumnsToMatchSet(
            column_set=["id", "text", "label", "split", "input_ids"], exact_match=False
        ),
        *not_null("id", "text", "label", "split"),
        gxe.ExpectColumnValuesToBeUnique(column="id"),
        gxe.ExpectColumnValueLengthsToBeBetween(
            column="text", min_value=config.min_chars, max_value=config.max_chars
        ),
        gxe.ExpectColumnValuesToBeInSet(column="label", value_set=list(config.labels)),
        gxe.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS)),
        # Every split present means every split is non-empty.
        gxe.ExpectColumnDistinctValuesToContainSet(column="split", value_set=list(SPLITS)),
        # The mean of a 0/1 label on the train rows is the share of positives.
        gxe.ExpectColumnMeanToBeBetween(
            column="label",
            min_value=config.min_class_fraction,
            max_value=1.0 - config.min_class_fraction,
            row_condition=Column("split") == "train",
        ),
        gxe.ExpectColumnValuesToNotBeNull(column="n_input_ids"),
        gxe.ExpectColumnValuesToBeBetween(column="n_input_ids", min_value=1),
    ]
    labeled_splits = [gxe.ExpectColumnValuesToBeUnique(column="text")]
    tokens = [
        gxe.ExpectColumnValuesToBeBetween(
            column="unk_rate", min_value=0.0, max_value=config.max_unk_rate
        ),
        gxe.ExpectColumnValuesToBeBetween(column="n_blocks_train", min_value=config.min_blocks),
        gxe.ExpectColumnValuesToBeBetween(column="n_blocks_heldout", min_value=1),
        gxe.ExpectColumnValuesToBeBetween(column="vocab_size", min_value=MIN_VOCAB),
    ]
    return {
        "corpus": corpus,
        "labeled": labeled,
        "labeled_splits": labeled_splits,
        "tokens": tokens,
    }


def run_suites(
    frames: dict[str, pd.DataFrame], suites: dict[str, list], site: Path
) -> dict[str, Any]:
    """Validate each frame against its suite and build the Data Docs site under `site`.

    Returns suite name -> ExpectationSuiteValidationResult.
    """
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    project = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        analytics_enabled=False,  # no usage statistics from an offline pipeline step
        # tqdm bars ("Calculating Metrics") would otherwise fill the task log on stderr.
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
        # A local site instead of the ephemeral context's default one under a random temp dir.
        data_docs_sites={
            "lmforge": {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(site),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }
        },
    )
    context = gx.get_context(mode="ephemeral", project_config=project)
    source = context.data_sources.add_pandas("lmforge")
    results = {}
    for name, expectations in suites.items():
        batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
        suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=name, data=batch, suite=suite)
        )
        # One checkpoint per suite: a checkpoint passes the same batch_parameters (the in-memory
        # DataFrame) to all its validation definitions, and each suite has its own frame.
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name=name,
                validation_definitions=[definition],
                actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")],
                result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5},
            )
        )
        run = checkpoint.run(batch_parameters={"dataframe": frames[name]})
        results[name] = next(iter(run.run_results.values()))
    return results


def summarise(result: Any) -> dict[str, Any]:
    """The JSON-able summary of one suite's validation result."""
    failed = [
        {
            "expectation": r.expectation_config.type,
            "column": r.expectation_config.kwargs.get("column"),
            "observed": observed(r),
        }
        for r in result.results
        if not r.success
    ]
    stats = result.statistics
    return {
        "success": bool(result.success),
        "evaluated": int(stats["evaluated_expectations"]),
        "successful": int(stats["successful_expectations"]),
        "failed": failed,
    }


def observed(r: Any) -> str:
    """Why one expectation failed, briefly: unexpected count and examples, or the value seen."""
    # exception_info is one {"raised_exception", "exception_message", ...} dict, or (when a metric
    # failed to compute, e.g. a missing column) a dict of those keyed by metric id.
    info = r.exception_info or {}
    for exc in [info, *(v for v in info.values() if isinstance(v, dict))]:
        if exc.get("raised_exception"):
            return "error: " + str(exc.get("exception_message")).splitlines()[0][:200]
    res = r.result or {}
    missing = ((res.get("details") or {}).get("mismatched") or {}).get("missing")
    if missing:  # ExpectTableColumnsToMatchSet
        return f"missing columns {missing}"
    if "unexpected_count" in res:
        examples = ", ".join(_short(v) for v in (res.get("partial_unexpected_list") or [])[:3])
        return f"{res['unexpected_count']} unexpected" + (f" (e.g. {examples})" if examples else "")
    return f"observed {_short(res.get('observed_value'))}"


def _label(failure: dict[str, Any]) -> str:
    column = failure["column"]
    return failure["expectation"] + (f"({column})" if column else "")


def _short(value: Any, limit: int = 60) -> str:
    if hasattr(value, "item"):  # numpy scalars print as np.float64(...)
        value = value.item()
    if isinstance(value, float):
        value = round(value, 4)
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
