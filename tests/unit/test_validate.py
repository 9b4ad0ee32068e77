"""The validate stage on tiny real clean_tokenize outputs: real GX runs, real Data Docs.

Each case runs GX once (module-scoped fixtures); the tests then read what that run left behind.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from components.shared import artifacts
from components.shared.errors import UserError
from components.validate.validate import SUITES, DataValidationError, ValidateConfig, validate

TOKENS = {
    "vocab_size": 512,
    "unk_rate": 0.002,
    "n_blocks_train": 4,
    "n_blocks_heldout": 1,
    "block_size": 16,
    "corpus_tokens": 80,
}


def labeled_rows() -> list[dict[str, Any]]:
    """Eight sentences: train 2 positive / 2 negative, two each in validation and test."""
    rows = [
        ("a great film", 1, "train"),
        ("a dull film", 0, "train"),
        ("warm and funny", 1, "train"),
        ("tedious and long", 0, "train"),
        ("lovely acting", 1, "validation"),
        ("flat acting", 0, "validation"),
        # Eleven words: indexed for decontamination, and in no corpus text, so the corpus passes.
        ("a joy to watch from the first minute to the last", 1, "test"),
        ("a chore to watch", 0, "test"),
    ]
    return [{"id": f"s{i}", "text": t, "label": y, "split": s, "input_ids": [5 + i, 6 + i]} for i, (t, y, s) in enumerate(rows)]


def write_cleaned(
    root: Path,
    mutate: Callable[[list[dict]], None] | None = None,
    tokens: dict | None = None,
    adaptive: list[str] | None = None,
    report: dict | None = None,
) -> Path:
    """A clean_tokenize output directory; `mutate` edits the labeled rows in place first,
    `adaptive` are task-adaptive texts, `report` more clean_report sections."""
    root.mkdir(parents=True, exist_ok=True)
    corpus = pd.DataFrame(
        {
            "doc_id": ["d1", "d2", "d3"],
            "title": ["Alpha", "Beta", "Gamma"],
            "text": [f"{name} is a topic. " * 20 for name in ("Alpha", "Beta", "Gamma")],
        }
    )
    corpus.to_parquet(root / artifacts.CORPUS)
    rows = labeled_rows()
    if mutate:
        mutate(rows)
    pd.DataFrame(rows).to_parquet(root / artifacts.LABELED)
    if adaptive is not None:
        pd.DataFrame({"doc_id": [f"a{i}" for i in range(len(adaptive))], "title": "", "text": adaptive}).to_parquet(root / artifacts.TASK_ADAPTIVE)
    clean_report = {"tokens": {**TOKENS, **(tokens or {})}, **(report or {})}
    artifacts.write_json(root / artifacts.CLEAN_REPORT, clean_report)
    return root


def run_case(tmp_path_factory, name: str, **kwargs) -> dict[str, Any]:
    """Run validate once on a case and record its outcome: metrics or the error, and the outputs."""
    base = tmp_path_factory.mktemp(name)
    config = kwargs.pop("config", ValidateConfig())
    cleaned = write_cleaned(base / "cleaned", **kwargs)
    out = base / "validated"
    outcome: dict[str, Any] = {"out": out, "metrics": None, "error": None}
    try:
        outcome["metrics"] = validate(cleaned, out, config)
    except DataValidationError as exc:
        outcome["error"] = exc
    report = out / artifacts.VALIDATION
    outcome["report"] = json.loads(report.read_text()) if report.exists() else None
    return outcome


def _duplicate_id(rows):
    rows[1]["id"] = rows[0]["id"]


def _label_two(rows):
    rows[7]["label"] = 2  # in test, so the train class balance is untouched


def _leak_train_into_test(rows):
    rows[7]["text"] = rows[0]["text"]


def _test_unlike_train(rows):
    """Forty more test rows, all positive: train is half positive, so test's share is far off."""
    rows += [{"id": f"t{i}", "text": f"a fine film number {i}", "label": 1, "split": "test", "input_ids": [5, 6]} for i in range(40)]


def _test_text_in_corpus(rows):
    rows[6]["text"] = "Beta is a topic. Beta is a topic."  # 8 words, repeated inside corpus doc d2


# A train text quoting the eleven-word test sentence (task-adaptive texts are checked too).
QUOTE = "As my friend said, a joy to watch from the first minute to the last."

# case -> (how to break the data, suite that must fail, expectation that must fail, column)
BAD = {
    "duplicate_id": (dict(mutate=_duplicate_id), "labeled", "expect_column_values_to_be_unique", "id"),
    "label_two": (dict(mutate=_label_two), "labeled", "expect_column_values_to_be_in_set", "label"),
    "split_leak": (
        dict(mutate=_leak_train_into_test),
        "labeled_splits",
        "expect_column_values_to_be_unique",
        "text",
    ),
    "test_unlike_train": (dict(mutate=_test_unlike_train), "labeled", "expect_column_mean_to_be_between", "label=0"),
    "contaminated_corpus": (
        dict(mutate=_test_text_in_corpus),
        "decontamination",
        "expect_column_values_to_be_in_set",
        "eval_ngrams_shared",
    ),
    "contaminated_adaptive": (
        dict(adaptive=["A fine film about nothing much.", QUOTE]),
        "decontamination",
        "expect_column_values_to_be_in_set",
        "eval_ngrams_shared",
    ),
    "long_input_ids": (
        dict(tokens={"max_seq_len": 1}),
        "labeled",
        "expect_column_values_to_be_between",
        "n_input_ids",
    ),
    "high_unk": (dict(tokens={"unk_rate": 0.2}), "tokens", "expect_column_values_to_be_between", "unk_rate"),
}


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return run_case(tmp_path_factory, "good")


@pytest.fixture(scope="module", params=sorted(BAD))
def bad(request, tmp_path_factory):
    kwargs, suite, expectation, column = BAD[request.param]
    return run_case(tmp_path_factory, request.param, **kwargs), suite, expectation, column


def test_clean_data_passes_and_builds_the_docs(good):
    assert good["error"] is None
    assert good["metrics"]["validate/success"] == 1.0
    assert all(good["metrics"][f"validate/{s}_failed"] == 0.0 for s in SUITES)
    assert set(good["report"]) == set(SUITES)
    for r in good["report"].values():
        assert r["success"] and r["failed"] == [] and r["evaluated"] == r["successful"] > 0
    index = good["out"] / artifacts.DATA_DOCS_DIR / "index.html"
    html = index.read_text()
    assert all(suite in html for suite in SUITES)
    # the per-suite validation pages the index links to are there too
    validations = good["out"] / artifacts.DATA_DOCS_DIR / "validations"
    pages = {p.stem for p in validations.rglob("*.html")}
    assert pages == {f"lmforge-{s}" for s in SUITES}


def test_bad_data_fails_the_right_suite(bad):
    outcome, suite, expectation, column = bad
    failing = {name for name, r in outcome["report"].items() if not r["success"]}
    assert failing == {suite}
    failed = outcome["report"][suite]["failed"]
    pairs = [(f["expectation"], f["column"]) for f in failed]
    # Only the expectation broken fails (a two-class share check fails for both classes at once).
    assert (expectation, column) in pairs and {e for e, _ in pairs} == {expectation}, pairs


def test_failure_message_names_the_expectation_and_docs_were_written(bad):
    outcome, suite, expectation, column = bad
    message = str(outcome["error"])
    assert message.startswith("data validation failed:")
    assert f"{suite}: {expectation}({column})" in message
    assert "\n" not in message
    index = outcome["out"] / artifacts.DATA_DOCS_DIR / "index.html"
    assert index.is_file() and str(index) in message


def test_fail_on_error_false_reports_without_raising(tmp_path_factory):
    outcome = run_case(
        tmp_path_factory,
        "report_only",
        mutate=_duplicate_id,
        config=ValidateConfig.from_params({"fail_on_error": False}, "validate"),
    )
    assert outcome["error"] is None
    assert outcome["metrics"]["validate/success"] == 0.0
    assert outcome["metrics"]["validate/labeled_failed"] == 1.0
    assert outcome["report"]["labeled"]["success"] is False


def test_decontamination_counts_are_shown_but_not_enforced_when_it_was_off(tmp_path_factory):
    outcome = run_case(tmp_path_factory, "decontamination_off", mutate=_test_text_in_corpus, report={"decontamination": {"ngram": None}})
    assert outcome["error"] is None and outcome["report"]["decontamination"]["success"]


def test_long_texts_pass_unless_validate_max_chars_is_set(tmp_path_factory):
    def long_text(rows):
        rows[0]["text"] = "a great film " * 500

    assert run_case(tmp_path_factory, "long_text", mutate=long_text)["error"] is None
    bounded = run_case(tmp_path_factory, "long_text_bounded", mutate=long_text, config=ValidateConfig(max_chars=2000))
    assert "labeled: expect_column_value_lengths_to_be_between(text)" in str(bounded["error"])


def test_missing_input_names_the_file_and_the_fix(tmp_path):
    cleaned = write_cleaned(tmp_path / "cleaned")
    (cleaned / artifacts.LABELED).unlink()
    with pytest.raises(UserError, match=r"labeled\.parquet.*run clean_tokenize first"):
        validate(cleaned, tmp_path / "out", ValidateConfig())
    assert not (tmp_path / "out").exists()


def test_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(UserError, match="validate.min_class_fractoin"):
        ValidateConfig.from_params({"min_class_fractoin": 0.2}, "validate")
    with pytest.raises(UserError, match="validate.class_share_tolerance"):
        ValidateConfig.from_params({"class_share_tolerance": 1.5}, "validate")
    with pytest.raises(UserError, match="min_class_fraction is gone"):
        ValidateConfig.from_params({"min_class_fraction": 0.3}, "validate")
    assert ValidateConfig.from_params({}, "validate").labels is None  # the train split's classes


def test_split_leak_is_one_line_naming_the_disjointness_expectation(tmp_path_factory):
    outcome = run_case(tmp_path_factory, "leak_named", mutate=_leak_train_into_test)
    message = str(outcome["error"])
    assert "labeled_splits: expect_column_values_to_be_unique(text) [no text in two of train/validation/test" in message
    assert "a great film" in message and "\n" not in message  # the leaked text is shown


def test_a_five_class_set_with_uneven_shares_validates(tmp_path_factory):
    """Nothing in the suites is the demo's: five classes (shares 40/20/20/10/10 in every split) pass."""

    def five_classes(rows):
        shares = [0] * 8 + [1] * 4 + [2] * 4 + [3] * 2 + [4] * 2
        rows[:] = [
            {"id": f"{split}{i}", "text": f"{split} review number {i} about topic {label}", "label": label, "split": split, "input_ids": [5, 6]}
            for split, times in (("train", 4), ("validation", 1), ("test", 1))
            for i, label in enumerate(shares * times)
        ]

    outcome = run_case(tmp_path_factory, "five_classes", mutate=five_classes, config=ValidateConfig(labels=[0, 1, 2, 3, 4]))
    assert outcome["error"] is None, outcome["error"]
    assert outcome["report"]["labeled"]["evaluated"] >= 20  # 5 shares x 2 splits among them


def test_one_test_text_from_train_among_thousands_fails_by_default(tmp_path_factory):
    """Disjointness is strict unless a preset says otherwise: one copied text in 2,000 rows is a leak."""

    def many_rows_one_leak(rows):
        rows[:] = [
            {"id": f"{split}{i}", "text": f"{split} review number {i}", "label": i % 2, "split": split, "input_ids": [5, 6]}
            for split, n in (("train", 1600), ("validation", 200), ("test", 200))
            for i in range(n)
        ]
        rows[-1]["text"] = rows[0]["text"]

    strict = run_case(tmp_path_factory, "one_leak", mutate=many_rows_one_leak)
    assert "no text in two of train/validation/test" in str(strict["error"]), strict["error"]
    tolerant = run_case(tmp_path_factory, "one_leak_tolerated", mutate=many_rows_one_leak, config=ValidateConfig(max_split_overlap=0.002))  # 2 of the 2,000 rows
    assert tolerant["error"] is None, tolerant["error"]
