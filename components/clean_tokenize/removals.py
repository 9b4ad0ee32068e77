"""What the cleaning rules removed, said on the console, and a stop when one rule removes too much.

A rule that quietly removes most of a dataset (a length limit set for sentences meeting news
articles) produces a model trained on what is left, and nothing says so. Each rule's count is
printed and kept in clean_report.json; a rule that removes more than the configured share of the
labeled rows (`max_labeled_removed`) or of the corpus documents (`max_corpus_removed`) stops the
run with one line naming the rule and the setting that drives it.
"""

from __future__ import annotations

from components.shared.errors import UserError

# The setting behind each rule, per table (None: no setting; the data itself must change).
RULE_SETTINGS = {
    "corpus": {
        "too_short": "clean_tokenize.min_doc_chars",
        "contaminated": "clean_tokenize.decontaminate_ngram",
        # quality.py's rules and near_dup.py's: each removal is counted and limited like the others
        "symbol_ratio": "clean_tokenize.quality.max_symbol_word_ratio",
        "mean_word_len": "clean_tokenize.quality.min_mean_word_len/max_mean_word_len",
        "duplicate_lines": "clean_tokenize.quality.max_duplicate_line_frac",
        "punctuated_lines": "clean_tokenize.quality.min_punctuated_line_frac",
        "near_duplicate": "clean_tokenize.near_dup.threshold",
    },
    "labeled": {"too_short": "clean_tokenize.min_chars"},
}
RULE_MEANING = {
    "empty": "empty after cleaning",
    "duplicate": "exact duplicates (labeled: within one split)",
    "too_short": "shorter than the minimum length",
    "contaminated": "sharing an n-gram with a validation/test text",
    "symbol_ratio": "too many '#' and ellipses per word",
    "mean_word_len": "mean word length outside the bounds",
    "duplicate_lines": "too many repeated lines",
    "punctuated_lines": "too few lines ending in punctuation",
    "near_duplicate": "a MinHash near-copy of an earlier document",
}
WHAT = {"corpus": "corpus documents", "labeled": "labeled rows"}


def removal_line(table: str, removed: dict[str, int], total: int) -> str:
    """`removed from the labeled rows (of 2,225): empty 0, duplicate 3, too_short 0`."""
    counts = ", ".join(f"{rule} {n:,}" for rule, n in removed.items())
    return f"removed from the {WHAT[table]} (of {total:,}): {counts or 'nothing'}"


def check_removals(table: str, removed: dict[str, int], total: int, limit: float, limit_key: str) -> None:
    """Raise UserError when one rule removed more than `limit` of the `total` rows of `table`."""
    for rule, n in removed.items():
        if total and n / total > limit:
            setting = RULE_SETTINGS.get(table, {}).get(rule)
            fix = f"check {setting}" if setting else "fix the data"
            raise UserError(
                f"clean_tokenize rule {rule!r} ({RULE_MEANING.get(rule, rule)}) removed {n:,} of {total:,} {WHAT[table]} "
                f"({n / total:.1%}), more than {limit_key} ({limit:.0%}): {fix}, or raise {limit_key} if that is intended"
            )
