"""Heuristic document-quality rules for the pretraining corpus, of the kind public pipelines use.

Each rule looks at one cleaned document and names itself when the document fails it; `cleaning.py`
counts the removals per rule (clean_report.json, the console, validate's Data Docs). The bounds
follow Gopher (Rae et al. 2021, appendix A: symbol-to-word ratio <= 0.1, mean word length 3-10
characters, duplicate-line fraction <= 0.3) and C4 / RefinedWeb (lines should end in terminal
punctuation; C4 drops each line that does not, here a document needs a minimum share of them,
since headings and list items legitimately do not). `rules` lists the rules that apply (a list
rather than null bounds: a preset's null values never reach the stage, see PipelineConfig.section).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

RULES = ("symbol_ratio", "mean_word_len", "duplicate_lines", "punctuated_lines")
SYMBOLS = ("#", "...", "\u2026")  # Gopher counts hash marks and ellipses
TERMINAL = (".", "!", "?", '"', "'", "\u201d", "\u2019", ":", ";", ")")  # a line that ends a sentence


class QualityConfig(BaseModel):
    """Document-level quality rules for corpus documents."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(False, description="apply the quality rules to corpus documents (never to labeled texts)")
    rules: list[Literal[RULES]] = Field(list(RULES), description=f"the rules that apply, of {', '.join(RULES)}")
    max_symbol_word_ratio: float = Field(0.1, ge=0, description="most '#' and ellipses per word (Gopher: 0.1)")
    min_mean_word_len: float = Field(3.0, ge=0, description="shortest mean word length in characters (Gopher: 3)")
    max_mean_word_len: float = Field(10.0, ge=0, description="longest mean word length in characters (Gopher: 10)")
    max_duplicate_line_frac: float = Field(0.3, ge=0, le=1, description="largest share of non-empty lines that repeat an earlier line (Gopher: 0.3)")
    min_punctuated_line_frac: float = Field(0.1, ge=0, le=1, description="smallest share of non-empty lines ending in terminal punctuation (C4 keeps only such lines)")


def failed_rule(text: str, config: QualityConfig) -> str | None:
    """The first rule (in RULES order) that `text` fails, or None."""
    words = text.split()
    if not words:
        return None  # the "empty" rule removes these before quality rules are asked
    on = config.rules
    if "symbol_ratio" in on:
        symbols = sum(text.count(s) for s in SYMBOLS)
        if symbols / len(words) > config.max_symbol_word_ratio:
            return "symbol_ratio"
    mean = sum(map(len, words)) / len(words)  # characters per whitespace-separated word
    if "mean_word_len" in on and not config.min_mean_word_len <= mean <= config.max_mean_word_len:
        return "mean_word_len"
    lines = [line for line in text.split("\n") if line.strip()]
    if "duplicate_lines" in on and len(lines) > 1:
        if 1 - len(set(lines)) / len(lines) > config.max_duplicate_line_frac:
            return "duplicate_lines"
    if "punctuated_lines" in on:
        ending = sum(line.rstrip().endswith(TERMINAL) for line in lines)
        if ending / len(lines) < config.min_punctuated_line_frac:
            return "punctuated_lines"
    return None
