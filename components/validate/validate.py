"""Validate the cleaned data with great-expectations suites before any training spends time on it.

`validate(cleaned_dir, out_dir, config)` runs these suites over the clean_tokenize output:

- corpus: the cleaned pretraining documents (ids, non-empty, non-blank text, lengths), on a
  bounded sample;
- corpus_stats: one row of exact counts over every corpus document, read as a stream (missing
  ids or texts, blank texts, duplicate ids and texts, short texts: all must be 0), beside the rows
  each clean_tokenize rule removed (shown, not enforced); see corpus_scan.py for why two ways;
- labeled: the labeled sentences (ids, blank texts, lengths, labels, splits, token ids), with
  bounds from the train split's profile (profile.py): its classes, each class's share of
  validation and test within a tolerance of its train share, length percentiles within a factor;
- labeled_splits: one row per distinct (text, split) pair, so "text unique" means no sentence
  leaks from one split into another;
- tokens: a one-row frame of the tokenizer statistics from clean_report.json;
- decontamination: pretraining texts (the sampled corpus documents, and every corpus or
  task-adaptive text that shares one) with the number of word n-grams it shares with a
  validation or test text (shared/decontamination.py, the n clean_tokenize used): all must be 0.

It writes `data_docs/` (a static great-expectations Data Docs site, `index.html` at its root) and
`validation.json` (per suite: success, counts, failed expectations), returns flat metrics, and, when
a suite fails and `fail_on_error` is set, raises `DataValidationError` after both are written.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import Field, model_validator

from components import tasks
from components.shared import artifacts
from components.shared.config import StageConfig
from components.shared.decontamination import DEFAULT_NGRAM, MIN_WORDS, EvalIndex
from components.shared.errors import UserError
from components.shared.splits import SPLITS
from components.validate.corpus_scan import CorpusScan
from components.validate.gx_run import label, run_suites, summarise
from components.validate.profile import EVAL_SPLITS, labeled_profile, share_bounds, share_column

SUITES = ("corpus", "corpus_stats", "labeled", "labeled_splits", "tokens", "decontamination")
EXACT = ("null_doc_ids", "null_texts", "blank_texts", "duplicate_doc_ids", "duplicate_texts", "short_texts")  # must be 0
TOKEN_STATS = ("vocab_size", "unk_rate", "n_blocks_train", "n_blocks_heldout")
MIN_VOCAB = 100  # below this the tokenizer was trained on next to nothing


class ValidateConfig(StageConfig):
    """Thresholds for the data validation suites."""

    task: tasks.TaskName = Field(tasks.DEFAULT, description="The downstream task, whose label checks run: filled from finetune.task (name it there, once).")
    min_chars: int = Field(1, ge=0, description="Shortest labeled sentence allowed, in characters.")
    max_chars: int | None = Field(
        None,
        ge=1,
        description="Longest labeled text allowed, in characters; None: no bound (clean_tokenize keeps long texts and truncates their tokens, which the token-length check bounds).",
    )
    min_doc_chars: int = Field(200, ge=0, description="Shortest corpus document allowed, in characters (stubs are noise).")
    labels: list[int] | None = Field(None, min_length=2, description="The label ids allowed (classification); None: the ids of finetune.label_names (filled in when the preset loads).")
    class_share_tolerance: float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description="Each class's share of the validation and test rows may differ from its share of train by this much "
        "(or by 4 standard errors of the split's size, if wider: small splits vary by chance).",
    )
    length_ratio: float = Field(
        4.0,
        ge=1.0,
        description="Text lengths (characters) of validation and test against train's: the median within this factor "
        "of train's, and 90% of the rows within train's 5th-95th percentiles widened by it.",
    )
    max_split_overlap: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Share of the (text, split) rows whose exact text also sits in another split that is tolerated; "
        "0 (the default): train, validation and test strictly disjoint. The demo presets allow the demo source's "
        "2 sentences that it lists in two splits.",
    )
    max_unk_rate: float = Field(0.01, ge=0.0, le=1.0, description="Largest allowed fraction of [UNK] tokens in the corpus.")
    min_blocks: int = Field(1, ge=1, description="Fewest packed training blocks allowed.")
    sample_docs: int = Field(1000, ge=1, description="Corpus documents (chosen by doc_id hash) the per-row corpus expectations run on; the exact counts cover every document.")
    fail_on_error: bool = Field(True, description="Raise DataValidationError when a suite fails (else only report it).")

    @model_validator(mode="before")
    @classmethod
    def _renamed_keys(cls, data):
        if isinstance(data, dict) and "min_class_fraction" in data:
            raise ValueError("validate.min_class_fraction is gone: class shares are now checked against the train split's, within validate.class_share_tolerance; remove the key")
        return data


class DataValidationError(UserError):
    """One or more suites failed; the message lists the failures and points at the Data Docs."""


def validate(cleaned_dir: Path, out_dir: Path, config: ValidateConfig, docs_page: Path | None = None) -> dict[str, float]:
    """Run the suites; write out_dir/data_docs/ (HTML, index.html) and out_dir/validation.json.

    `docs_page`, when given (a KFP HTML artifact), receives a copy of the Data Docs index page.
    Returns flat metrics ("validate/success", "validate/<suite>_failed", ...). When a suite fails
    and `config.fail_on_error` is set, raises DataValidationError after both outputs are written.
    """
    cleaned_dir, out_dir = Path(cleaned_dir), Path(out_dir)
    frames = load_frames(cleaned_dir, config)
    out_dir.mkdir(parents=True, exist_ok=True)
    docs = out_dir / artifacts.DATA_DOCS_DIR
    # The site is built straight into a staging folder and moved into place once complete.
    with artifacts.staged_dir(docs) as site:
        profile = labeled_profile(frames["labeled"], tasks.get(config.task))
        suites = build_suites(config, facts(cleaned_dir), profile, stats_columns=list(frames["corpus_stats"].columns))
        results = run_suites(frames, suites, site)
    report = {name: summarise(result) for name, result in results.items()}
    report["corpus_stats"]["counts"] = {k: int(v) for k, v in frames["corpus_stats"].iloc[0].items()}
    artifacts.write_json(out_dir / artifacts.VALIDATION, report)
    if docs_page:
        shutil.copyfile(docs / "index.html", docs_page)

    metrics = {"validate/success": float(all(r["success"] for r in report.values()))}
    for name, r in report.items():
        metrics[f"validate/{name}_failed"] = float(len(r["failed"]))
        metrics[f"validate/{name}_evaluated"] = float(r["evaluated"])
    metrics.update({f"validate/corpus_{k}": float(v) for k, v in report["corpus_stats"]["counts"].items() if "_removed_" not in k})
    if config.fail_on_error and not metrics["validate/success"]:
        problems = "; ".join(f"{name}: {label(f)} {f['observed']}" for name, r in report.items() for f in r["failed"])
        raise DataValidationError(f"data validation failed: {problems} — see the Data Docs at {docs / 'index.html'}")
    return metrics


def load_frames(cleaned_dir: Path, config: ValidateConfig | None = None) -> dict[str, pd.DataFrame]:
    """Read the clean_tokenize outputs into one DataFrame per suite (the corpus streamed)."""
    config = config or ValidateConfig()
    for name in (artifacts.CORPUS, artifacts.LABELED, artifacts.CLEAN_REPORT):
        if not (cleaned_dir / name).is_file():
            raise UserError(f"{cleaned_dir / name} not found: run clean_tokenize first and pass its output directory")
    labeled = pd.read_parquet(cleaned_dir / artifacts.LABELED)
    report = artifacts.read_json(cleaned_dir / artifacts.CLEAN_REPORT)
    stats = report.get("tokens", {})
    missing = [k for k in TOKEN_STATS if k not in stats]
    if missing:
        raise UserError(f"{cleaned_dir / artifacts.CLEAN_REPORT} lacks tokens.{', tokens.'.join(missing)}: rerun clean_tokenize with this version of LMForge")
    labeled = labeled.assign(n_chars=labeled["text"].str.len(), **tasks.get(config.task).label_columns(labeled))
    if "input_ids" in labeled:
        # GX measures value lengths with pandas' .str.len(), which gives NaN for the numpy arrays
        # parquet returns, and NaN counts as "missing", so an empty list would pass unseen.
        labeled = labeled.assign(n_input_ids=labeled["input_ids"].map(_length))
    # GX has no cross-row "disjoint groups" expectation; one row per distinct (text, split) turns
    # "no text in two splits" into "text is unique", and the docs then list the leaked sentences.
    # (ExpectCompoundColumnsToBeUnique(["text", "split"]) only forbids duplicates within a split.)
    pairs = labeled.reindex(columns=["text", "split"]).drop_duplicates().reset_index(drop=True)
    scan = scan_corpus(cleaned_dir, labeled, config)
    return {
        "corpus": scan.sample(),
        "corpus_stats": pd.DataFrame([{**scan.stats(), **removed_counts(report)}]),
        "labeled": labeled,
        "labeled_splits": pairs,
        "tokens": pd.DataFrame([{k: stats[k] for k in TOKEN_STATS}]),
        "decontamination": scan.overlap_frame(),
    }


def scan_corpus(cleaned_dir: Path, labeled: pd.DataFrame, config: ValidateConfig) -> CorpusScan:
    """The corpus (and task-adaptive texts) streamed once: exact counts, a sample, the overlaps."""
    known = facts(cleaned_dir)
    evals = labeled.loc[labeled["split"].isin(["validation", "test"]), "text"]
    index = EvalIndex.of(evals, n=known["ngram"] or DEFAULT_NGRAM, min_words=known["min_words"])
    scan = CorpusScan(config.min_doc_chars, index, config.sample_docs)
    scan.add_file(cleaned_dir / artifacts.CORPUS, "corpus")
    if (cleaned_dir / artifacts.TASK_ADAPTIVE).is_file():
        scan.add_file(cleaned_dir / artifacts.TASK_ADAPTIVE, "task_adaptive", count=False)
    return scan


def removed_counts(report: dict) -> dict[str, int]:
    """clean_report's rows removed per rule, as `<table>_removed_<rule>` columns (Data Docs show them)."""
    removed = report.get("removed", {})
    return {f"{table}_removed_{rule}": int(n) for table, rules in removed.items() for rule, n in rules.items()}


def facts(cleaned_dir: Path) -> dict[str, Any]:
    """What clean_tokenize recorded that the suites depend on: its n-gram length (None: off;
    absent in reports from before decontamination: the default) and the chosen max_seq_len."""
    report = artifacts.read_json(cleaned_dir / artifacts.CLEAN_REPORT)
    decon = report.get("decontamination", {"ngram": DEFAULT_NGRAM})
    return {
        "ngram": decon.get("ngram"),
        "min_words": decon.get("min_words", MIN_WORDS),
        "max_seq_len": report.get("tokens", {}).get("max_seq_len"),
    }


def _length(ids: Any) -> int | None:
    return None if ids is None else len(ids)


def build_suites(config: ValidateConfig, known: dict[str, Any] | None = None, profile: dict | None = None, stats_columns: list[str] = ()) -> dict[str, list]:
    """The expectations of each suite, as great-expectations Expectation objects.

    `known` is `facts(cleaned_dir)`: the chosen max_seq_len bounds the token ids, and with
    decontamination off (ngram None) the overlaps are measured and shown but not required to be 0.
    `profile` is `labeled_profile(...)` of the labeled rows: the classes, class shares and text
    lengths of train, which the validation and test rows are held to.
    `stats_columns` are the corpus_stats frame's columns: the removal counts among them are shown.
    """
    known = {"ngram": DEFAULT_NGRAM, "max_seq_len": None, **(known or {})}
    profile = profile or {"labels": [], "shares": {}, "length_quantiles": [], "rows": {}}
    import great_expectations.expectations as gxe
    from great_expectations.expectations.row_conditions import Column

    def not_null(*columns: str) -> list:
        return [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in columns]

    blank = r"^\s*$"
    corpus = [
        gxe.ExpectTableColumnsToMatchSet(column_set=["doc_id", "title", "text"], exact_match=False),
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        *not_null("doc_id", "text"),
        gxe.ExpectColumnValuesToNotMatchRegex(column="text", regex=blank, description="no empty or blank document"),
        gxe.ExpectColumnValueLengthsToBeBetween(column="text", min_value=config.min_doc_chars),
    ]  # uniqueness needs every row: corpus_stats counts duplicates (and blanks) exactly
    corpus_stats = [
        gxe.ExpectColumnValuesToBeBetween(column="rows", min_value=1),
        *(gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0, max_value=0) for c in EXACT),
        # Shown, not enforced: the Data Docs print each rule's observed count (and the overlap,
        # which the decontamination suite enforces per document).
        *(gxe.ExpectColumnMaxToBeBetween(column=c, min_value=0) for c in stats_columns if "_removed_" in c),
        gxe.ExpectColumnMaxToBeBetween(column="docs_sharing_eval_ngrams", min_value=0),
    ]
    labeled = [
        gxe.ExpectTableColumnsToMatchSet(column_set=["id", "text", "label", "split", "input_ids"], exact_match=False),
        *not_null("id", "text", "label", "split"),
        gxe.ExpectColumnValuesToBeUnique(column="id"),
        gxe.ExpectColumnValuesToNotMatchRegex(column="text", regex=blank, description="no empty or blank text"),
        gxe.ExpectColumnValueLengthsToBeBetween(column="text", min_value=config.min_chars, max_value=config.max_chars),
        *tasks.get(config.task).label_expectations(config.labels, profile, gxe, Column),  # known class ids / numeric targets
        gxe.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS)),
        # Every split present means every split is non-empty.
        gxe.ExpectColumnDistinctValuesToContainSet(column="split", value_set=list(SPLITS)),
        *_eval_split_expectations(config, profile, gxe, Column),
        gxe.ExpectColumnValuesToNotBeNull(column="n_input_ids"),
        gxe.ExpectColumnValuesToBeBetween(column="n_input_ids", min_value=1, max_value=known["max_seq_len"]),
    ]
    # One row per distinct (text, split): a text in two splits is a repeated text here.
    labeled_splits = [gxe.ExpectColumnValuesToBeUnique(column="text", mostly=1.0 - config.max_split_overlap, description="no text in two of train/validation/test (validate.max_split_overlap)")]
    tokens = [
        gxe.ExpectColumnValuesToBeBetween(column="unk_rate", min_value=0.0, max_value=config.max_unk_rate),
        gxe.ExpectColumnValuesToBeBetween(column="n_blocks_train", min_value=config.min_blocks),
        gxe.ExpectColumnValuesToBeBetween(column="n_blocks_heldout", min_value=1),
        gxe.ExpectColumnValuesToBeBetween(column="vocab_size", min_value=MIN_VOCAB),
    ]
    overlap = "eval_ngrams_shared"
    decontamination = [
        gxe.ExpectColumnValuesToBeInSet(column=overlap, value_set=[0]) if known["ngram"] else gxe.ExpectColumnValuesToNotBeNull(column=overlap)  # off: shown, not enforced
    ]
    return {
        "corpus": corpus,
        "corpus_stats": corpus_stats,
        "labeled": labeled,
        "labeled_splits": labeled_splits,
        "tokens": tokens,
        "decontamination": decontamination,
    }


def _eval_split_expectations(config: ValidateConfig, profile: dict, gxe, Column) -> list:
    """Validation and test held to train: each class's share within its tolerance, and the
    text-length percentiles within `length_ratio` of train's."""
    out = []
    for split in EVAL_SPLITS:
        rows, where = profile["rows"].get(split, 0), Column("split") == split
        if not rows:
            continue  # the split-present expectation reports it
        for cls, share in profile["shares"].items():
            low, high = share_bounds(share, rows, config.class_share_tolerance)
            out.append(
                gxe.ExpectColumnMeanToBeBetween(
                    column=share_column(cls),
                    min_value=low,
                    max_value=high,
                    row_condition=where,
                    description=f"share of label {cls} in {split} near its train share {share:.3f} (validate.class_share_tolerance)",
                )
            )
        if profile["length_quantiles"]:
            # (GX 1.x's ExpectColumnQuantileValuesToBeBetween cannot store its own result: numpy
            # bools in it break the JSON store; a median and a ranged check with `mostly` say as much.)
            ratio, (p5, p50, p95) = config.length_ratio, profile["length_quantiles"]
            out.append(
                gxe.ExpectColumnMedianToBeBetween(
                    column="n_chars",
                    min_value=p50 / ratio,
                    max_value=p50 * ratio,
                    row_condition=where,
                    description=f"{split} median text length within x{ratio:g} of train's {p50:g} characters (validate.length_ratio)",
                )
            )
            out.append(
                gxe.ExpectColumnValuesToBeBetween(
                    column="n_chars",
                    min_value=p5 / ratio,
                    max_value=p95 * ratio,
                    mostly=0.9,
                    row_condition=where,
                    description=f"90% of {split} text lengths within train's 5th-95th percentiles ({p5:g}-{p95:g} characters) widened x{ratio:g} (validate.length_ratio)",
                )
            )
    return out
