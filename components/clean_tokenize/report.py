"""clean_tokenize's report: clean_report.json completed with the block counts, its MLflow/KFP
metrics, and the progress lines of the task log. The same from one task or from shards (sharded.py)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from components.shared.errors import UserError

if TYPE_CHECKING:
    from components.clean_tokenize.clean_tokenize import CleanTokenizeConfig


class Clock:
    """One progress line per phase on stdout (the KFP task log): a 1 GB corpus takes minutes."""

    def __init__(self):
        self.last = time.perf_counter()

    def say(self, what: str, rate: int = 0, timed: bool = True) -> None:
        if not timed:  # a fact about the phase just timed, not a phase of its own
            print(f"[clean_tokenize] {what}", flush=True)
            return
        now = time.perf_counter()
        speed = f", {rate / max(now - self.last, 1e-9):,.0f} tokens/s" if rate else ""
        print(f"[clean_tokenize] {what} in {now - self.last:.1f} s{speed}", flush=True)
        self.last = now


def finish_report(partial: dict, train: dict, heldout: dict, config: CleanTokenizeConfig) -> dict:
    """`prepare`'s report completed with the packed splits' counts (the same from one task or shards)."""
    if train["n_blocks"] == 0 or heldout["n_blocks"] == 0:
        raise UserError(f"corpus too small for one block of {config.block_size} tokens: lower clean_tokenize.block_size or add text")
    tokens = partial["tokens"]
    return {
        **partial,
        "task_adaptive": {**partial["task_adaptive"], "tokens": train["extra_tokens"]},
        "tokens": {
            "vocab_size": tokens["vocab_size"],
            "tokenizer_train_chars": tokens["tokenizer_train_chars"],
            "corpus_tokens": train["tokens"],
            "heldout_tokens": heldout["tokens"],
            "unk_rate": train["unk"] / max(train["tokens"], 1),
            "block_size": config.block_size,
            "n_blocks_train": train["n_blocks"],
            "n_blocks_heldout": heldout["n_blocks"],
            **{k: v for k, v in tokens.items() if k not in ("vocab_size", "tokenizer_train_chars")},
        },
    }


def bounds_line(bounds: dict, config: CleanTokenizeConfig) -> str:
    """What the length bounds cut (bounds.py), for the task log."""
    corpus, labeled = bounds["corpus"].counts, bounds["labeled"].counts
    return (
        f"bounds: {corpus.words_split + labeled.words_split:,} words over {config.max_word_chars:,} characters cut into pieces "
        f"({labeled.words_split:,} in labeled texts), {corpus.docs_split:,} documents over {config.max_doc_chars:,} characters split into {corpus.doc_pieces:,}"
    )


def decontamination_section(index, corpus: dict, adaptive_removed: int, clock: Clock) -> dict:
    """The clean_report section (and one console line) saying what decontamination did."""
    if index is None:
        clock.say("decontamination off (clean_tokenize.decontaminate_ngram is null)", timed=False)
        return {"ngram": None}
    docs = corpus["removed"]["contaminated"]
    stats = {**index.stats(), "docs_removed": docs, "task_adaptive_removed": adaptive_removed}
    clock.say(
        f"decontaminated: {docs:,} corpus documents (and {adaptive_removed:,} task-adaptive texts) removed for sharing a {index.n}-gram "
        f"with {index.indexed:,} of {index.texts:,} validation/test texts ({len(index):,} n-grams indexed)",
        timed=False,
    )
    return stats


def metrics(report: dict) -> dict:
    removed = {f"clean/{t}_removed_{rule}": n for t, rules in report["removed"].items() for rule, n in rules.items()}
    tokens = {f"clean/{k}": v for k, v in report["tokens"].items() if isinstance(v, (int, float))}
    probe = report["tokens"].get("truncation_probe")  # truncation auto's validation score of each cut, when it probed
    tokens |= {f"clean/truncation_probe_{cut}": score for cut, score in probe.items()} if isinstance(probe, dict) else {}
    bounds = {f"clean/corpus_{n}": v for n, v in report["bounds"]["corpus"].items()} | {"clean/labeled_words_split": report["bounds"]["labeled"]["words_split"]}
    adaptive = {"clean/task_adaptive_texts": report["task_adaptive"]["texts"], "clean/task_adaptive_tokens": report["task_adaptive"]["tokens"]}
    return {
        **removed,
        **tokens,
        **adaptive,
        **bounds,
        "clean/eval_ngrams": report["decontamination"].get("eval_ngrams", 0),
        "clean/corpus_docs": report["rows"]["corpus"],
        "clean/labeled_rows": report["rows"]["labeled"],
    }
